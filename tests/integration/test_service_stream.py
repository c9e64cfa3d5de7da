"""StreamChatCompletion end to end: one message per SSE data event, honest endings."""

from __future__ import annotations

import grpc
import orjson
import pytest

from myrouter.chat.v1 import chat_pb2
from support import (
    CALLER_METADATA,
    chat_request,
    details_of,
    metadata_dict,
    read_batches,
    read_stream,
    with_scenario,
)

pytestmark = pytest.mark.timeout(30)


def test_stream_relays_every_event_in_order(stub, upstream):
    chunks, error, call = read_stream(stub, chat_request("hello big world"))

    assert error is None
    assert call.code() is grpc.StatusCode.OK
    # role chunk, 5 token chunks ("You ", "said: ", "hello ", "big ", "world"), finish, usage
    assert len(chunks) == 8
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content for c in chunks if c.choices)
    assert text == "You said: hello big world"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage_chunk = chunks[-1]
    assert not usage_chunk.choices
    assert usage_chunk.usage.input_tokens == 3
    assert usage_chunk.usage.output_tokens == 5
    assert usage_chunk.usage.total_tokens == 8
    [recorded] = upstream.requests()
    assert recorded.body["stream"] is True
    assert recorded.headers["accept"] == "text/event-stream"


def test_stream_distinguishes_empty_content_from_absent(stub):
    chunks, error, _ = read_stream(stub, chat_request("hi"))
    assert error is None
    assert chunks[0].choices[0].delta.HasField("content")  # the first delta sends ""
    assert not chunks[-2].choices[0].delta.HasField("content")  # the finish delta is {}


def test_stream_tool_call_deltas(stub):
    request = chat_request(
        "weather in Oslo",
        tools=[
            chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="weather"))
        ],
    )
    chunks, error, _ = read_stream(stub, request)

    assert error is None
    deltas = [tc for c in chunks for ch in c.choices for tc in ch.delta.tool_calls]
    assert len(deltas) >= 3
    assert deltas[0].index == 0
    assert deltas[0].id == "call_0"
    assert deltas[0].type == "function"
    assert deltas[0].function.name == "weather"
    arguments = "".join(d.function.arguments for d in deltas)
    assert orjson.loads(arguments) == {"query": "weather in Oslo"}
    finish = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finish == ["tool_calls"]
    assert chunks[-1].HasField("usage")


def test_stream_reasoning_deltas(stub):
    chunks, error, _ = read_stream(stub, with_scenario(chat_request("hm"), reasoning=True))
    assert error is None
    reasoning = "".join(
        c.choices[0].delta.reasoning for c in chunks if c.choices and c.choices[0].delta.reasoning
    )
    assert reasoning
    details = [d for c in chunks for ch in c.choices for d in ch.delta.reasoning_details]
    assert details and details[0].type == "reasoning.text"


def test_keepalive_comments_are_skipped(stub):
    plain, _, _ = read_stream(stub, chat_request("a b"))
    with_comments, error, _ = read_stream(stub, with_scenario(chat_request("a b"), keepalive=1))
    assert error is None
    assert len(with_comments) == len(plain)


def test_request_id_is_forwarded_and_returned(stub, upstream):
    metadata = (*CALLER_METADATA, ("x-request-id", "trace-me-42"))
    _chunks, error, call = read_stream(stub, chat_request("x"), metadata)
    assert error is None
    assert metadata_dict(call.initial_metadata())["x-request-id"] == "trace-me-42"
    assert upstream.requests()[0].headers["x-request-id"] == "trace-me-42"


def test_request_id_is_generated_when_absent(stub, upstream):
    _chunks, _error, call = read_stream(stub, chat_request("x"))
    generated = metadata_dict(call.initial_metadata())["x-request-id"]
    assert len(generated) >= 16
    assert upstream.requests()[0].headers["x-request-id"] == generated


def _batched(max_delay: float | None):
    """`read_stream` over StreamChatCompletionBatches: the chunks of all its messages."""

    def read(stub, request):
        messages, error, call = read_batches(stub, request, max_delay)
        return [chunk for message in messages for chunk in message.chunks], error, call

    return read


@pytest.mark.parametrize(
    "read",
    [read_stream, _batched(None), _batched(1.0)],
    ids=["per_event", "batches", "batches_max_delay_1s"],
)
def test_midstream_error_after_chunks_ends_with_its_status(stub, read):
    request = with_scenario(
        chat_request("one two three four"),
        kind="midstream_error",
        after=2,
        error_code="rate_limit_exceeded",
        message="slow down",
        chunk_delay=0.01,  # paced, so a bounded wait may gather events into one message
    )
    chunks, error, _call = read(stub, request)

    assert error is not None
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "slow down" in error.details()
    # role chunk + 2 content chunks, then the error event itself as a message
    assert len(chunks) == 4
    assert [chunk.HasField("error") for chunk in chunks] == [False, False, False, True]
    assert chunks[-1].error.code == "rate_limit_exceeded"
    assert chunks[-1].error.message == "slow down"
    assert chunks[-1].choices[0].finish_reason == "error"
    info = details_of(error)["ErrorInfo"]
    assert info.reason == "UPSTREAM_REPORTED_ERROR"
    assert info.metadata["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("error_code", "expected"),
    [
        ("server_error", grpc.StatusCode.INTERNAL),
        ("invalid_request_error", grpc.StatusCode.INVALID_ARGUMENT),
        ("something_new", grpc.StatusCode.UNAVAILABLE),
        (502, grpc.StatusCode.UNAVAILABLE),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (402, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_midstream_error_codes_map_to_the_nearest_status(stub, error_code, expected):
    request = with_scenario(
        chat_request("a b c"), kind="midstream_error", after=1, error_code=error_code
    )
    chunks, error, _ = read_stream(stub, request)
    assert error is not None and error.code() is expected
    if isinstance(error_code, int):
        assert chunks[-1].error.http_status == error_code
        assert details_of(error)["ErrorInfo"].metadata["http_status"] == str(error_code)


def test_error_as_first_event_fails_without_any_message(stub):
    request = with_scenario(chat_request("a b"), kind="midstream_error", after=0)
    chunks, error, call = read_stream(stub, request)
    assert error is not None
    assert error.code() is grpc.StatusCode.INTERNAL  # "server_error"
    assert chunks == []  # status only: the call failed before any message, so it can be retried
    assert "x-request-id" in metadata_dict(call.trailing_metadata())


def test_truncated_stream_ends_with_unavailable_not_ok(stub):
    request = with_scenario(chat_request("one two three four"), kind="truncate", after=2)
    chunks, error, _ = read_stream(stub, request)
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "[DONE]" in error.details()
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_STREAM_TRUNCATED"
    assert len(chunks) == 3  # role chunk + the 2 content chunks sent before the cut


def test_aborted_connection_mid_stream_is_unavailable(stub):
    request = with_scenario(
        chat_request("one two three four"), kind="truncate", after=2, abort=True
    )
    chunks, error, _ = read_stream(stub, request)
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert chunks  # what came before the cut was relayed


def test_malformed_event_ends_the_stream_with_an_error(stub):
    request = with_scenario(chat_request("one two three"), kind="malformed", after=1)
    chunks, error, _ = read_stream(stub, request)
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_MALFORMED_EVENT"
    assert len(chunks) == 2


@pytest.mark.parametrize("read", [read_stream, read_batches], ids=["per_event", "batches"])
def test_non_event_stream_answer_is_an_error(stub, read):
    chunks, error, _ = read(stub, with_scenario(chat_request("x"), kind="non_sse"))
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_NOT_AN_EVENT_STREAM"
    assert chunks == []


def test_many_chunks_arrive_complete_and_in_order(stub):
    chunks, error, _ = read_stream(stub, with_scenario(chat_request("x"), chunks=500, batch=7))
    assert error is None
    tokens = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert tokens == [f"tok{i} " for i in range(500)] or tokens == [
        f"tok{i}" + (" " if i < 499 else "") for i in range(500)
    ]
