"""Trace and request headers: from the caller's gRPC metadata to the upstream request."""

from __future__ import annotations

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from support import CALLER_METADATA, CALLER_TOKEN, chat_request

pytestmark = pytest.mark.timeout(30)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
B3_MULTI = (
    ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
    ("x-b3-spanid", "e457b5a2e4d86bd1"),
    ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
    ("x-b3-sampled", "1"),
)
B3_SINGLE = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"
TRACE_METADATA = (
    ("traceparent", TRACEPARENT),
    ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    *B3_MULTI,
    ("b3", B3_SINGLE),
    ("x-request-id", "req-trace-1"),
)


# --------------------------------------------------------------------------- #
# Over real sockets, to the embedded upstream (the pure functions: tests/unit)
# --------------------------------------------------------------------------- #


def _assert_trace_headers(headers):
    assert headers["traceparent"] == TRACEPARENT
    assert headers["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    for key, value in B3_MULTI:
        assert headers[key] == value
    assert headers["b3"] == B3_SINGLE
    assert headers["x-request-id"] == "req-trace-1"


def test_stream_carries_traceparent_and_b3_upstream(stub, upstream):
    metadata = (*CALLER_METADATA, *TRACE_METADATA)
    list(stub.StreamChatCompletion(chat_request(), metadata=metadata, timeout=10))
    [recorded] = upstream.requests()
    _assert_trace_headers(recorded.headers)
    assert recorded.headers["authorization"] == f"Bearer {CALLER_TOKEN}"


def test_unary_and_models_carry_them_too(stub, upstream):
    metadata = (*CALLER_METADATA, *TRACE_METADATA)
    stub.CreateChatCompletion(chat_request(), metadata=metadata, timeout=10)
    stub.ListModels(chat_pb2.ListModelsRequest(), metadata=metadata, timeout=10)
    first, second = upstream.requests()
    _assert_trace_headers(first.headers)
    _assert_trace_headers(second.headers)


def test_unlisted_metadata_stays_behind_and_configured_keys_travel(make_bridge, upstream):
    bridge = make_bridge(propagate_headers=("x-tenant",))
    with grpc.insecure_channel(bridge.target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        metadata = (*CALLER_METADATA, ("x-tenant", "acme"), ("x-secret-note", "nope"))
        stub.CreateChatCompletion(chat_request(), metadata=metadata, timeout=10)
    [recorded] = upstream.requests()
    assert recorded.headers["x-tenant"] == "acme"
    assert "x-secret-note" not in recorded.headers
    assert "traceparent" not in recorded.headers
