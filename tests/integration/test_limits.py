"""Limits against overload and hostile input: each is configurable, each refuses cleanly.

Every test sets a small limit on its own bridge, shows the call over it fails
with the documented status before (or without) costing anything upstream, and
that the same bridge then serves an ordinary call.
"""

from __future__ import annotations

import logging
import re
import time

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2
from support import (
    CALLER_METADATA,
    chat_request,
    details_of,
    metadata_dict,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)

FOREVER = 3600


def _serves_an_ordinary_call(stub) -> None:
    chunks = list(stub.StreamChatCompletion(chat_request("still here"), metadata=CALLER_METADATA))
    assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == (
        "You said: still here"
    )


def test_calls_over_max_concurrent_rpcs_fail_at_once_without_queueing(make_bridge, upstream):
    bridge = make_bridge(max_concurrent_rpcs=2)
    channel, stub = stub_for(bridge.target)
    with channel:
        stalled = [
            stub.StreamChatCompletion(
                with_scenario(chat_request("a b c"), stall_after=1, stall=FOREVER),
                metadata=CALLER_METADATA,
            )
            for _ in range(2)
        ]
        for call in stalled:
            assert next(call).choices  # both are in progress, holding the two slots
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.StreamChatCompletion(chat_request("third"), metadata=CALLER_METADATA))
        assert time.monotonic() - started < 2  # refused at once, not queued
        error = caught.value
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_concurrent_rpcs" in error.details()
        assert details_of(error)["ErrorInfo"].reason == "BRIDGE_OVERLOADED"
        assert len(upstream.requests()) == 2  # the refused call never reached the upstream
        with pytest.raises(grpc.RpcError) as unary:
            stub.CreateChatCompletion(chat_request("unary"), metadata=CALLER_METADATA)
        assert unary.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

        stalled[0].cancel()  # a slot frees up: the bridge serves again
        deadline = time.monotonic() + 5
        while True:
            try:
                _serves_an_ordinary_call(stub)
                break
            except grpc.RpcError as exc:
                code = exc.code()
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() < deadline, "the cancelled call never freed its slot"
            time.sleep(0.02)
        stalled[1].cancel()


SMALL_REQUESTS = 64 * 1024
"""The request limit of `small_requests`; grpc's own receive limit is then twice it."""


@pytest.fixture(scope="module")
def small_requests(make_bridge):
    bridge = make_bridge(max_request_bytes=SMALL_REQUESTS)
    channel, stub = stub_for(bridge.target)
    with channel:
        yield bridge, stub


def request_of_size(size: int) -> chat_pb2.ChatCompletionRequest:
    """A chat request whose serialized message is exactly `size` bytes."""
    request = chat_request("")
    request.messages[0].content = "x" * (size - request.ByteSize())
    while request.ByteSize() > size:  # the content's length prefix grew by a byte or two
        request.messages[0].content = request.messages[0].content[:-1]
    assert request.ByteSize() == size
    return request


def _counted(bridge, method: str, code: str) -> float:
    value = bridge.server.metrics.registry.get_sample_value(
        "bridge_rpcs_total", {"method": method, "code": code}
    )
    return value or 0.0


@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_request_just_over_max_request_bytes_is_the_bridges_refusal(
    small_requests, upstream, rpc_lines, caplog, rpc
):
    bridge, stub = small_requests
    method = "CreateChatCompletion" if rpc == "unary" else "StreamChatCompletion"
    request_id = f"too-large-{rpc}"
    metadata = (*CALLER_METADATA, ("x-request-id", request_id))
    before = _counted(bridge, method, "RESOURCE_EXHAUSTED")
    with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as caught:
        if rpc == "unary":
            stub.CreateChatCompletion(request_of_size(SMALL_REQUESTS + 1), metadata=metadata)
        else:
            list(stub.StreamChatCompletion(request_of_size(SMALL_REQUESTS + 1), metadata=metadata))
    error = caught.value
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "(--max-request-bytes, BRIDGE_MAX_REQUEST_BYTES)" in error.details()
    assert f"{SMALL_REQUESTS + 1} bytes" in error.details()
    info = details_of(error)["ErrorInfo"]
    assert info.reason == "REQUEST_TOO_LARGE"
    assert dict(info.metadata) == {
        "size_bytes": str(SMALL_REQUESTS + 1),
        "limit_bytes": str(SMALL_REQUESTS),
        "request_id": request_id,
    }
    assert metadata_dict(error.trailing_metadata())["x-request-id"] == request_id
    [warning] = [r for r in caplog.records if request_id in r.getMessage()]
    assert warning.levelno == logging.WARNING and "x" * 100 not in warning.getMessage()
    for _ in range(200):  # the log line and the count follow the status by a moment
        lines = [line for line in rpc_lines() if line.get("request_id") == request_id]
        if lines and _counted(bridge, method, "RESOURCE_EXHAUSTED") == before + 1:
            break
        time.sleep(0.01)
    [line] = lines
    assert line["status"] == "RESOURCE_EXHAUSTED"
    assert _counted(bridge, method, "RESOURCE_EXHAUSTED") == before + 1
    assert upstream.requests() == []


def test_request_at_max_request_bytes_is_served(small_requests, upstream):
    _, stub = small_requests
    request = request_of_size(SMALL_REQUESTS)
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    assert completion.choices[0].message.content == "You said: " + request.messages[0].content


def test_request_up_to_grpcs_raised_limit_is_still_the_bridges_refusal(small_requests, upstream):
    _, stub = small_requests
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request_of_size(2 * SMALL_REQUESTS), metadata=CALLER_METADATA)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details_of(caught.value)["ErrorInfo"].reason == "REQUEST_TOO_LARGE"
    assert upstream.requests() == []


def test_request_beyond_grpcs_raised_limit_gets_grpcs_own_refusal(small_requests, upstream):
    _, stub = small_requests
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request_of_size(2 * SMALL_REQUESTS + 1), metadata=CALLER_METADATA)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # grpc's own words, before any handler (docs/status-codes.md): its limit is the raised one
    assert re.fullmatch(
        rf"SERVER: Received message larger than max \(\d+ vs\. {2 * SMALL_REQUESTS}\)",
        caught.value.details(),
    ), caught.value.details()
    assert "ErrorInfo" not in details_of(caught.value)
    assert upstream.requests() == []
    completion = stub.CreateChatCompletion(chat_request("y" * 1000), metadata=CALLER_METADATA)
    assert completion.choices[0].message.content == "You said: " + "y" * 1000


def test_request_over_max_messages_is_invalid(make_bridge, upstream):
    bridge = make_bridge(max_messages=3)
    channel, stub = stub_for(bridge.target)
    too_many = chat_pb2.ChatCompletionRequest(
        model="myrouter/echo",
        messages=[chat_pb2.ChatMessage(role="user", content=f"m{i}") for i in range(4)],
    )
    with channel:
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.StreamChatCompletion(too_many, metadata=CALLER_METADATA))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 3 messages" in caught.value.details()
        [violation] = details_of(caught.value)["BadRequest"].field_violations
        assert violation.field == "messages"
        assert upstream.requests() == []
        del too_many.messages[3]
        assert list(stub.StreamChatCompletion(too_many, metadata=CALLER_METADATA))


def test_unary_answer_over_max_response_bytes_is_refused_and_closed(make_bridge, upstream):
    bridge = make_bridge(max_response_bytes=64 * 1024)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request(), kind="oversized", size=16 * 1024 * 1024)
    with channel:
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "65536-byte limit" in caught.value.details()
        assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_RESPONSE_TOO_LARGE"
        # (the upstream hands a whole unary body to its socket at once, so unlike the
        # stream case below its record cannot show that the bridge stopped reading)
        upstream.clear()
        assert stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA).choices


def test_events_under_max_event_bytes_pass(make_bridge):
    bridge = make_bridge(max_event_bytes=64 * 1024)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request(), kind="oversized", size=60 * 1024)
    with channel:
        chunks = list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA))
    assert chunks[1].choices[0].delta.content == "x" * 60 * 1024
