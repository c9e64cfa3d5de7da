"""StreamChatCompletionBatches end to end: the per-event relay's chunks, several per message.

Every test reads the messages themselves (how many, how many chunks each), never
the clock: a lone event leaving alone shows as one chunk per message against a
paced upstream, a bounded wait as fewer messages than chunks.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2

from myrouter.chat.v1 import chat_pb2
from support import (
    CALLER_METADATA,
    batches_request,
    cancel_closes_the_upstream,
    chat_request,
    details_of,
    metadata_dict,
    read_batches,
    read_stream,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(30)

FOREVER = 3600


def collect(stub, request, max_delay=None, metadata=CALLER_METADATA):
    """Read the batched stream to its end; return (messages, error or None, call)."""
    return read_batches(stub, request, max_delay, metadata)


def chunks_of(messages):
    return [chunk for message in messages for chunk in message.chunks]


def per_event(stub, request):
    """What StreamChatCompletion sends for `request`: (chunks, error or None)."""
    chunks, error, _ = read_stream(stub, request)
    return chunks, error


def without_ids(chunks):
    """The chunks with the completion id cleared: the upstream numbers each answer."""
    out = []
    for chunk in chunks:
        copy = chat_pb2.ChatCompletionChunk()
        copy.CopyFrom(chunk)
        copy.ClearField("id")
        out.append(copy)
    return out


def _ended(upstream):
    return upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)


SAME_ANSWERS = {
    "plain": lambda: chat_request("hello big world"),
    "tool calls": lambda: chat_request(
        "weather in Oslo",
        tools=[
            chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="weather"))
        ],
    ),
    "reasoning": lambda: with_scenario(chat_request("hm"), reasoning=True),
    "openai usage": lambda: with_scenario(chat_request("a b"), dialect="openai"),
    "keepalives": lambda: with_scenario(chat_request("a b"), keepalive=1),
    "many in few writes": lambda: with_scenario(chat_request("x"), chunks=500, batch=7),
}


@pytest.mark.parametrize("max_delay", [None, 0.1])
@pytest.mark.parametrize("answer", sorted(SAME_ANSWERS))
def test_batches_hold_exactly_the_per_event_chunks(stub, answer, max_delay):
    expected, expected_error = per_event(stub, SAME_ANSWERS[answer]())
    messages, error, call = collect(stub, SAME_ANSWERS[answer](), max_delay)

    assert expected_error is None and error is None
    assert call.code() is grpc.StatusCode.OK
    assert all(message.chunks for message in messages)  # never an empty message
    assert without_ids(chunks_of(messages)) == without_ids(expected)
    assert len({chunk.id for chunk in chunks_of(messages)}) == 1


def test_events_written_together_leave_together(stub):
    # 500 events in writes of 50: reads hold many events, and each read is one message.
    messages, error, _ = collect(stub, with_scenario(chat_request("x"), chunks=500, batch=50))
    assert error is None
    assert len(chunks_of(messages)) == 503
    assert max(len(message.chunks) for message in messages) > 1
    assert len(messages) < 503 / 2


def test_a_lone_event_goes_alone_without_waiting(stub):
    # 0.1 s between events and no wait asked: every event is its own message, so
    # none was held back for company.
    messages, error, _ = collect(stub, with_scenario(chat_request("a b c"), chunk_delay=0.1))
    assert error is None
    assert [len(message.chunks) for message in messages] == [1] * 8  # role, 5 tokens, finish, usage


def test_a_bounded_wait_gathers_paced_events(stub):
    # 20 ms between events, a wait of up to 1 s: what arrives within the wait shares a message.
    request = with_scenario(
        chat_request("one two three four five six seven eight"), chunk_delay=0.02
    )
    messages, error, _ = collect(stub, request, max_delay=1.0)
    assert error is None
    chunks = chunks_of(messages)
    assert len(chunks) == 13  # role, 10 tokens ("You said: ..."), finish, usage
    assert len(messages) < len(chunks) / 2
    assert chunks[-1].HasField("usage")


def test_a_wait_longer_than_the_cap_is_cut_not_refused(stub):
    request = with_scenario(chat_request("a b"), chunk_delay=0.01)
    messages, error, _ = collect(stub, request, max_delay=30.0)
    assert error is None
    assert len(chunks_of(messages)) == 7


@pytest.mark.parametrize("max_delay", [None, 1.0])
def test_error_as_first_event_is_the_status_alone(stub, max_delay):
    request = with_scenario(chat_request("a b"), kind="midstream_error", after=0)
    messages, error, call = collect(stub, request, max_delay)
    assert error is not None
    assert error.code() is grpc.StatusCode.INTERNAL  # "server_error"
    assert messages == []
    assert "x-request-id" in metadata_dict(call.trailing_metadata())


@pytest.mark.parametrize("max_delay", [None, 1.0])
@pytest.mark.parametrize("abort", [False, True])
def test_a_cut_stream_is_an_error_after_what_came_before(stub, max_delay, abort):
    request = with_scenario(
        chat_request("one two three four"), kind="truncate", after=2, abort=abort, chunk_delay=0.01
    )
    messages, error, _ = collect(stub, request, max_delay)
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    if not abort:
        assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_STREAM_TRUNCATED"
        assert len(chunks_of(messages)) == 3  # role chunk + the 2 content chunks before the cut
    else:
        assert chunks_of(messages)


@pytest.mark.parametrize("max_delay", [None, 1.0])
def test_malformed_event_ends_with_an_error_after_what_came_before(stub, max_delay):
    request = with_scenario(chat_request("one two three"), kind="malformed", after=1)
    messages, error, _ = collect(stub, request, max_delay)
    assert error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_MALFORMED_EVENT"
    assert len(chunks_of(messages)) == 2


def test_upstream_http_error_is_the_status_alone(stub):
    request = with_scenario(chat_request("x"), kind="status", status=429, retry_after="2")
    messages, error, call = collect(stub, request)
    assert error is not None
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert messages == []
    assert "x-request-id" in metadata_dict(call.trailing_metadata())


def test_request_id_is_forwarded_and_returned(stub, upstream):
    metadata = (*CALLER_METADATA, ("x-request-id", "trace-batches-7"))
    _messages, error, call = collect(stub, chat_request("x"), metadata=metadata)
    assert error is None
    assert metadata_dict(call.initial_metadata())["x-request-id"] == "trace-batches-7"
    [recorded] = upstream.requests()
    assert recorded.headers["x-request-id"] == "trace-batches-7"
    assert recorded.body["stream"] is True


def test_request_id_is_generated_when_absent(stub, upstream):
    _messages, _error, call = collect(stub, chat_request("x"))
    generated = metadata_dict(call.initial_metadata())["x-request-id"]
    assert len(generated) >= 16
    assert upstream.requests()[0].headers["x-request-id"] == generated


def test_without_credentials_the_call_is_unauthenticated(make_bridge, upstream):
    bridge = make_bridge(api_key=None)
    channel, stub = stub_for(bridge.target)
    with channel:
        messages, error, _ = collect(stub, chat_request("x"), metadata=())
    assert error is not None and error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert messages == [] and upstream.requests() == []


def test_an_invalid_request_is_refused_before_the_upstream(stub, upstream):
    request = chat_pb2.StreamChatCompletionBatchesRequest(
        request=chat_pb2.ChatCompletionRequest(model="myrouter/echo"),
        max_delay=duration_pb2.Duration(seconds=-1),
    )
    call = stub.StreamChatCompletionBatches(request, metadata=CALLER_METADATA)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in details_of(caught.value)["BadRequest"].field_violations]
    assert fields == ["request.messages", "max_delay"]
    assert upstream.requests() == []


def test_messages_stay_under_the_send_limit(make_bridge):
    bridge = make_bridge(max_send_bytes=4096)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request("x"), chunks=60, pad=300, batch=60)
    with channel:
        expected, _ = per_event(stub, request)
        messages, error, _ = collect(stub, request)
        gathered, gathered_error, _ = collect(stub, request, max_delay=0.5)
    assert error is None and gathered_error is None
    for got in (messages, gathered):
        assert without_ids(chunks_of(got)) == without_ids(expected)
        assert all(message.ByteSize() <= 4096 for message in got)
        assert max(len(message.chunks) for message in got) > 1  # split, not one per chunk
    # ~20 KiB of events in one read: at least five messages of at most 4 KiB.
    assert len(messages) >= 5


def test_a_chunk_over_the_send_limit_fails_as_it_does_per_event(make_bridge):
    bridge = make_bridge(max_send_bytes=1024)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request("x"), chunks=3, pad=2000)
    with channel:
        _chunks, per_event_error = per_event(stub, request)
        _messages, error, _ = collect(stub, request)
    assert per_event_error is not None and error is not None
    assert error.code() is per_event_error.code()


@pytest.mark.parametrize("max_delay", [None, 1.0])
def test_caller_deadline_mid_stream_closes_the_upstream(stub, upstream, max_delay):
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    call = stub.StreamChatCompletionBatches(
        batches_request(request, max_delay), metadata=CALLER_METADATA, timeout=1.5
    )
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for message in call:
            received.extend(message.chunks)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    if max_delay is None:
        assert len(received) == 3  # role + 2 tokens, each sent at once
    assert _ended(upstream).outcome == "disconnected"


@pytest.mark.parametrize("max_delay", [None, 0.2])
def test_client_cancel_closes_the_upstream_request(stub, upstream, max_delay):
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    call = stub.StreamChatCompletionBatches(
        batches_request(request, max_delay), metadata=CALLER_METADATA
    )
    first = next(call)
    assert first.chunks
    cancel_closes_the_upstream(call, upstream)


def test_stream_idle_timeout_ends_a_stalled_batched_stream(make_bridge, upstream):
    bridge = make_bridge(stream_idle_timeout=0.5)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    with channel:
        messages, error, _ = collect(stub, request, max_delay=0.1)
    assert error is not None
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(chunks_of(messages)) == 3
    assert _ended(upstream).outcome == "disconnected"
