"""Deadlines and cancellation: the upstream request never outlives the caller's interest."""

from __future__ import annotations

import time

import grpc
import pytest

from support import (
    CALLER_METADATA,
    cancel_closes_the_upstream,
    chat_request,
    details_of,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(30)

FOREVER = 3600


def _ended(upstream):
    return upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)


def test_caller_deadline_bounds_a_unary_upstream_request(stub, upstream):
    request = with_scenario(chat_request(), kind="hang")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA, timeout=0.5)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    record = _ended(upstream)
    assert record.outcome == "disconnected"
    assert record.ended_at - started < 3  # closed at the deadline, not at some later timeout


def test_caller_deadline_mid_stream_closes_the_upstream(stub, upstream):
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=1.0)
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for chunk in call:
            received.append(chunk)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(received) >= 2
    assert _ended(upstream).outcome == "disconnected"


def test_client_cancel_closes_the_upstream_request(stub, upstream):
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA)
    first = next(call)
    assert first.choices
    cancel_closes_the_upstream(call, upstream)


def test_client_cancel_of_a_unary_call_closes_the_upstream_request(stub, upstream):
    future = stub.CreateChatCompletion.future(
        with_scenario(chat_request(), kind="hang"), metadata=CALLER_METADATA
    )
    upstream.wait_for(lambda r: True, timeout=5)
    future.cancel()
    assert _ended(upstream).outcome == "disconnected"


def test_configured_request_timeout_caps_calls_without_deadline(make_bridge, upstream):
    bridge = make_bridge(request_timeout=0.5)
    channel, stub = stub_for(bridge.target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            with_scenario(chat_request(), kind="hang"), metadata=CALLER_METADATA
        )
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_TIMEOUT"
    assert _ended(upstream).outcome == "disconnected"


def test_stream_idle_timeout_ends_a_stalled_stream(make_bridge, upstream):
    bridge = make_bridge(stream_idle_timeout=0.5)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    with channel:
        call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA)
        received = []
        with pytest.raises(grpc.RpcError) as caught:
            for chunk in call:
                received.append(chunk)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "silent" in caught.value.details()
    assert received
    assert _ended(upstream).outcome == "disconnected"


def test_slow_first_byte_within_the_deadline_succeeds(stub):
    request = with_scenario(chat_request("hi"), first_byte_delay=0.3)
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA, timeout=5)
    assert completion.choices[0].message.content == "You said: hi"
