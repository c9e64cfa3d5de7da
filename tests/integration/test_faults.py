"""The fault suite: one test per way the upstream, the network or the caller misbehaves.

Every test runs over real sockets against the embedded upstream's fault
scenarios and asserts four things: the status code and message the caller
gets, what the caller received before the fault, that the upstream request
was closed (the upstream's own record of how its request ended), and that the
same bridge then serves an ordinary request.

Timing proofs compare the upstream's recorded ``ended_at`` with a
``time.monotonic()`` taken by the test: the upstream runs in this process, so
both read the same clock.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from typing import Any

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2_grpc
from myrouter_upstream import EmbeddedUpstream, UpstreamConfig
from support import (
    CALLER_METADATA,
    CALLER_TOKEN,
    SERVICE_KEY,
    chat_request,
    details_of,
    free_port,
    metadata_dict,
    read_stream,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)

FOREVER = 3600


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content for c in chunks if c.choices)


def upstream_ended(upstream, outcome: str | None = None):
    """The (single) recorded upstream request once it has ended; checks its outcome."""
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    if outcome is not None:
        assert record.outcome == outcome, record
    return record


def serves_next(stub, upstream=None) -> None:
    """The bridge answers an ordinary streaming request after the fault."""
    if upstream is not None:
        upstream.clear()
    chunks, error, _ = read_stream(stub, chat_request("next one"), timeout=10)
    assert error is None, error
    assert text_of(chunks) == "You said: next one"


def upstream_on(port: int) -> EmbeddedUpstream:
    """An embedded upstream (not yet started) on a given port."""
    return EmbeddedUpstream(
        UpstreamConfig(host="127.0.0.1", port=port, api_keys=frozenset({CALLER_TOKEN, SERVICE_KEY}))
    )


# --------------------------------------------------------------------------- #
# connection faults and retries
# --------------------------------------------------------------------------- #


def test_upstream_refuses_connections(make_bridge):
    port = free_port()
    bridge = make_bridge(
        upstream_url=f"http://127.0.0.1:{port}/api/v1", connect_retries=1, connect_retry_backoff=0
    )
    channel, stub = stub_for(bridge.target)
    with channel:
        chunks, error, call = read_stream(stub, chat_request(), timeout=10)
        assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        assert "could not reach the upstream (ConnectError" in error.details()
        assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_UNAVAILABLE"
        assert chunks == []
        assert call.initial_metadata() == ()  # Trailers-Only: a mesh may retry it
        with upstream_on(port) as late:  # the upstream comes back: the bridge serves again
            serves_next(stub, late)


def test_connect_failure_is_retried_with_backoff_until_the_upstream_listens(make_bridge):
    port = free_port()
    bridge = make_bridge(
        upstream_url=f"http://127.0.0.1:{port}/api/v1",
        connect_retries=6,
        connect_retry_backoff=0.05,  # retries at 0.05, 0.15, 0.35, 0.75, 1.55 s ...
    )
    channel, stub = stub_for(bridge.target)
    late: list[EmbeddedUpstream] = []
    starter = threading.Timer(0.3, lambda: late.append(upstream_on(port).start()))
    starter.start()
    try:
        with channel:
            chunks, error, _ = read_stream(stub, chat_request("patience"), timeout=20)
        starter.join()
        assert error is None, error
        assert text_of(chunks) == "You said: patience"
        assert len(late[0].requests()) == 1  # sent once, when a connection finally opened
    finally:
        starter.join()
        for server in late:
            server.stop()


def test_connect_retries_zero_fails_at_once(make_bridge):
    bridge = make_bridge(upstream_url=f"http://127.0.0.1:{free_port()}/api/v1", connect_retries=0)
    channel, stub = stub_for(bridge.target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "scenario",
    [
        {"kind": "status", "status": 503, "retry_after": 1},
        {"kind": "truncate", "after": 1, "abort": True},
        {"kind": "truncate", "after": 0},
    ],
    ids=["503", "reset-mid-stream", "cut-before-any-event"],
)
def test_nothing_that_reached_the_upstream_is_retried(stub, upstream, scenario):
    request = with_scenario(chat_request("a b"), **scenario)
    _chunks, error, _ = read_stream(stub, request, timeout=10)
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    upstream_ended(upstream)
    time.sleep(0.3)  # a retry, if there were one, would have arrived by now
    assert len(upstream.requests()) == 1
    serves_next(stub, upstream)


# --------------------------------------------------------------------------- #
# an upstream that is slow or silent
# --------------------------------------------------------------------------- #


def test_upstream_accepts_and_never_answers_hits_the_deadline(stub, upstream):
    started = time.monotonic()
    request = with_scenario(chat_request(), kind="hang")
    chunks, error, _call = read_stream(stub, request, timeout=0.5)
    assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert chunks == []
    record = upstream_ended(upstream, "disconnected")
    assert record.ended_at - started < 3  # closed at the deadline, not at some later timeout
    serves_next(stub, upstream)


def test_tcp_peer_that_never_answers_is_bounded_by_the_request_timeout(make_bridge):
    """Below HTTP: a socket that accepts and never reads nor writes a byte."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        bridge = make_bridge(upstream_url=f"http://127.0.0.1:{port}/api/v1", request_timeout=0.5)
        channel, stub = stub_for(bridge.target)
        with channel:
            started = time.monotonic()
            chunks, error, _ = read_stream(stub, chat_request())
            assert time.monotonic() - started < 5
    assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_TIMEOUT"
    assert chunks == []


def test_slow_first_byte_past_the_deadline(stub, upstream):
    request = with_scenario(chat_request(), first_byte_delay=FOREVER)
    chunks, error, _ = read_stream(stub, request, timeout=0.5)
    assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "time budget" in error.details()
    assert chunks == []
    upstream_ended(upstream, "disconnected")
    serves_next(stub, upstream)


def test_slow_first_byte_within_the_deadline(stub, upstream):
    request = with_scenario(chat_request("late"), first_byte_delay=0.3)
    chunks, error, _ = read_stream(stub, request, timeout=10)
    assert error is None
    assert text_of(chunks) == "You said: late"
    upstream_ended(upstream, "completed")


@pytest.mark.parametrize("keepalive", [None, 1])
def test_stall_mid_stream_hits_the_idle_timeout(make_bridge, upstream, keepalive):
    bridge = make_bridge(stream_idle_timeout=0.3)
    channel, stub = stub_for(bridge.target)
    scenario: dict[str, Any] = {"stall_after": 2, "stall": FOREVER}
    if keepalive:
        scenario["keepalive"] = keepalive
    with channel:
        started = time.monotonic()
        chunks, error, _ = read_stream(stub, with_scenario(chat_request("a b c d"), **scenario))
        assert time.monotonic() - started < 5  # not an endless hang
        assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "silent for 0.3 s" in error.details()
        assert text_of(chunks) == "You said: "  # role chunk + the 2 chunks before the stall
        upstream_ended(upstream, "disconnected")
        serves_next(stub, upstream)


# --------------------------------------------------------------------------- #
# error answers
# --------------------------------------------------------------------------- #

ERROR_ANSWERS = [
    # id, scenario, code, message part, retry seconds or None
    ("500-json", {"status": 500, "message": "boom"}, grpc.StatusCode.INTERNAL, "boom", None),
    (
        "503-retry-after",
        {"status": 503, "message": "busy", "retry_after": 5},
        grpc.StatusCode.UNAVAILABLE,
        "busy",
        5,
    ),
    (
        "502-html",
        {"status": 502, "body": "<html><h1>502 Bad Gateway</h1></html>"},
        grpc.StatusCode.UNAVAILABLE,
        "502 Bad Gateway",
        None,
    ),
    (
        "504-empty",
        {"status": 504, "body": "", "content_type": "text/plain"},
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "HTTP 504",
        None,
    ),
    (
        "429",
        {"status": 429, "message": "slow down"},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        None,
    ),
    (
        "429-retry-after",
        {"status": 429, "message": "slow down", "retry_after": 12},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        12,
    ),
    (
        "429-retry-after-date",
        {"status": 429, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
        0,
    ),
    (
        "429-text",
        {"status": 429, "body": "Too Many Requests", "content_type": "text/plain"},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Too Many Requests",
        None,
    ),
]


@pytest.mark.parametrize(
    ("scenario", "code", "message", "retry"),
    [row[1:] for row in ERROR_ANSWERS],
    ids=[row[0] for row in ERROR_ANSWERS],
)
def test_error_status_answers(stub, upstream, scenario, code, message, retry):
    request = with_scenario(chat_request(), kind="status", **scenario)
    chunks, error, call = read_stream(stub, request)
    assert error is not None and error.code() is code
    assert message in error.details()
    details = details_of(error)
    assert details["ErrorInfo"].metadata["http_status"] == str(scenario["status"])
    if retry is None:
        assert "RetryInfo" not in details
    else:
        assert details["RetryInfo"].retry_delay.seconds == retry
    assert chunks == []
    assert call.initial_metadata() == ()  # Trailers-Only
    upstream_ended(upstream, "completed")
    serves_next(stub, upstream)


def test_200_with_a_non_sse_body(stub, upstream):
    chunks, error, _ = read_stream(stub, with_scenario(chat_request(), kind="non_sse"))
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    assert "not text/event-stream" in error.details()
    assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_NOT_AN_EVENT_STREAM"
    assert chunks == []
    upstream_ended(upstream)
    serves_next(stub, upstream)


def test_200_with_a_non_json_body(stub, upstream):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            with_scenario(chat_request(), kind="non_json"), metadata=CALLER_METADATA
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "not JSON" in caught.value.details()
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_MALFORMED_BODY"
    upstream_ended(upstream)
    serves_next(stub, upstream)


# --------------------------------------------------------------------------- #
# broken streams
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("abort", [False, True], ids=["clean-end", "reset"])
def test_truncated_stream(stub, upstream, abort):
    request = with_scenario(chat_request("one two three"), kind="truncate", after=2, abort=abort)
    chunks, error, _ = read_stream(stub, request)
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    if abort:
        assert "connection broke mid-stream" in error.details()
    else:
        assert "ended before [DONE]" in error.details()
    assert text_of(chunks) == "You said: "  # role + the 2 chunks before the cut
    upstream_ended(upstream)
    serves_next(stub, upstream)


def test_malformed_event(stub, upstream):
    request = with_scenario(chat_request("one two three"), kind="malformed", after=1)
    chunks, error, _ = read_stream(stub, request)
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    assert "not a JSON object" in error.details()
    assert text_of(chunks) == "You "
    upstream_ended(upstream)
    serves_next(stub, upstream)


def test_mid_stream_error_event(stub, upstream):
    request = with_scenario(
        chat_request("one two three"),
        kind="midstream_error",
        after=2,
        error_code=502,
        message="Provider disconnected",
    )
    chunks, error, _ = read_stream(stub, request)
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == "Provider disconnected"
    assert text_of(chunks[:-1]) == "You said: "
    assert chunks[-1].error.message == "Provider disconnected"  # relayed as the last message
    upstream_ended(upstream, "completed")
    serves_next(stub, upstream)


def test_oversized_event_hits_the_cap_not_memory(make_bridge, upstream):
    bridge = make_bridge(max_event_bytes=64 * 1024)
    channel, stub = stub_for(bridge.target)
    request = with_scenario(chat_request(), kind="oversized", size=64 * 1024 * 1024)
    with channel:
        chunks, error, _ = read_stream(stub, request)
        assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than the 65536-byte limit" in error.details()
        assert details_of(error)["ErrorInfo"].reason == "UPSTREAM_EVENT_TOO_LARGE"
        assert len(chunks) == 1  # the role chunk
        # the bridge stopped reading at the cap: the upstream never got its 64 MiB out
        upstream_ended(upstream, "disconnected")
        serves_next(stub, upstream)


# --------------------------------------------------------------------------- #
# callers that go away, run out of time, or read slowly
# --------------------------------------------------------------------------- #


def _cancel_after_first_chunks(stub, upstream) -> float:
    """Cancel a stream that is waiting on its upstream; seconds until the upstream saw it."""
    upstream.clear()
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA)
    received = [next(call), next(call), next(call)]
    assert text_of(received) == "You said: "
    cancelled_at = time.monotonic()
    call.cancel()
    record = upstream_ended(upstream, "disconnected")
    assert call.code() is grpc.StatusCode.CANCELLED
    return float(record.ended_at - cancelled_at)


def test_client_cancel_mid_stream_closes_the_upstream(stub, upstream):
    assert _cancel_after_first_chunks(stub, upstream) < 2
    serves_next(stub, upstream)


def test_client_cancel_closes_the_upstream_within_100_ms(stub, upstream):
    """The cancellation proof: five trials; the median must be under 100 ms."""
    delays = [_cancel_after_first_chunks(stub, upstream) for _ in range(5)]
    print(f"cancel -> upstream closed: {', '.join(f'{d * 1000:.1f} ms' for d in delays)}")
    assert statistics.median(delays) < 0.100, delays
    assert max(delays) < 1.0, delays  # no trial is anywhere near a timeout


def test_client_deadline_mid_stream_closes_the_upstream(stub, upstream):
    request = with_scenario(chat_request("a b c d"), stall_after=2, stall=FOREVER)
    started = time.monotonic()
    chunks, error, _ = read_stream(stub, request, timeout=1.0)
    assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert text_of(chunks) == "You said: "
    record = upstream_ended(upstream, "disconnected")
    assert record.ended_at - started < 3
    serves_next(stub, upstream)


def test_slow_reader_pauses_the_upstream_instead_of_buffering(bridge, upstream):
    """Backpressure: while the caller does not read, the bridge does not read upstream.

    32 MiB of events is far more than every buffer on the way (the caller's
    gRPC flow-control window, kept at its initial size by switching off BDP
    probing, both sockets' kernel buffers, httpx's read buffer) can hold:
    measured here, everything on the way absorbs 2 to 4 MiB, and 8 to 16 MiB
    with BDP probing on. So the upstream can only finish if the bridge keeps
    reading without the caller, that is, if it buffers chunks without bound.
    """
    count, pad = 2000, 16 * 1024
    request = with_scenario(chat_request(), chunks=count, pad=pad)
    channel = grpc.insecure_channel(bridge.target, options=[("grpc.http2.bdp_probe", 0)])
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=50)
    first = next(call)
    assert first.choices[0].delta.role == "assistant"
    upstream.wait_for(lambda r: True, timeout=5)
    time.sleep(1.5)  # the caller reads nothing for a while
    [record] = upstream.requests()
    assert record.ended_at is None, "the upstream finished although the caller read nothing"
    tokens = [c.choices[0].delta.content for c in call if c.choices and c.choices[0].delta.content]
    assert call.code() is grpc.StatusCode.OK
    assert len(tokens) == count
    assert tokens[0] == "tok0 " + "x" * pad and tokens[-1].startswith(f"tok{count - 1} ")
    upstream_ended(upstream, "completed")
    serves_next(stub, upstream)
    channel.close()


# --------------------------------------------------------------------------- #
# Trailers-Only for errors before the first message
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "case", ["invalid-request", "upstream-503", "first-event-error", "missing-credentials"]
)
def test_error_before_the_first_message_is_trailers_only(make_bridge, stub, case):
    """Envoy's retry-on-grpc-status reads headers only: no early headers, status in trailers."""
    metadata: tuple[tuple[str, str], ...] = (*CALLER_METADATA, ("x-request-id", "t-only"))
    request = chat_request()
    if case == "invalid-request":
        request = chat_request(model="")
    elif case == "upstream-503":
        request = with_scenario(request, kind="status", status=503)
    elif case == "first-event-error":
        request = with_scenario(request, kind="midstream_error", after=0)
    else:
        stub = stub_for(make_bridge(api_key=None).target)[1]
        metadata = (("x-request-id", "t-only"),)
    call = stub.StreamChatCompletion(request, metadata=metadata)
    with pytest.raises(grpc.RpcError):
        next(call)
    assert call.initial_metadata() == ()
    trailing = metadata_dict(call.trailing_metadata())
    assert trailing["x-request-id"] == "t-only"
    assert "grpc-status-details-bin" in trailing


def test_error_after_the_first_message_keeps_its_headers(stub):
    request = with_scenario(chat_request("a b c"), kind="truncate", after=1)
    call = stub.StreamChatCompletion(request, metadata=(*CALLER_METADATA, ("x-request-id", "late")))
    with pytest.raises(grpc.RpcError):
        list(call)
    assert metadata_dict(call.initial_metadata())["x-request-id"] == "late"
