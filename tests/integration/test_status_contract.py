"""Every failure is a documented status, with its request id and a log line that agrees.

Each test here is a path that once ended in a status the README's table does
not promise (UNKNOWN, or INTERNAL for the caller's mistake), or was recorded
as OK while the caller got an error. Calls that grpc's own client refuses to
make (bytes it will not put in metadata) go through `raw_grpc`, at the HTTP/2
frame level.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import raw_grpc

from myrouter.chat.v1 import chat_pb2_grpc
from support import (
    CALLER_METADATA,
    chat_request,
    details_of,
    metadata_dict,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    """Records at ERROR or with a traceback, from any logger, while the test runs."""
    found: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR or record.exc_info:
                found.append(record)

    handler = Collect(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield found
    root.removeHandler(handler)


def _failed_call(stub: Any, rpc: str, request: Any, metadata: Any) -> grpc.RpcError:
    """Call `rpc` ("unary" or a stream read to its end), which must fail; its error."""
    with pytest.raises(grpc.RpcError) as caught:
        if rpc == "unary":
            stub.CreateChatCompletion(request, metadata=metadata, timeout=10)
        else:
            list(stub.StreamChatCompletion(request, metadata=metadata, timeout=10))
    return caught.value


def line_for(rpc_lines: Lines, request_id: str) -> dict[str, Any]:
    """The one log line of the call with `request_id` (it may follow the status by a moment)."""
    for _ in range(200):
        lines = [entry for entry in rpc_lines() if entry.get("request_id") == request_id]
        if lines:
            [line] = lines
            return line
        threading.Event().wait(0.01)
    raise AssertionError(f"no log line for {request_id}")


def rpcs_counted(bridge: Any, method: str, code: str) -> float:
    value = bridge.server.metrics.registry.get_sample_value(
        "bridge_rpcs_total", {"method": method, "code": code}
    )
    return value or 0.0


# 1. an extreme Retry-After


@pytest.mark.parametrize("retry_after", ["1e300", str(2**63), "99999999999"])
@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_extreme_retry_after_is_capped_not_unknown(bridge, stub, rpc_lines, retry_after, rpc):
    request_id = f"retry-{rpc}-{len(retry_after)}"
    method = "CreateChatCompletion" if rpc == "unary" else "StreamChatCompletion"
    before = rpcs_counted(bridge, method, "RESOURCE_EXHAUSTED")
    request = with_scenario(
        chat_request(), kind="status", status=429, retry_after=retry_after, message="slow down"
    )
    metadata = (*CALLER_METADATA, ("x-request-id", request_id))
    error = _failed_call(stub, rpc, request, metadata)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "slow down"
    assert metadata_dict(error.trailing_metadata())["x-request-id"] == request_id
    retry = details_of(error)["RetryInfo"]
    assert retry.retry_delay.seconds == 24 * 3600  # errors.MAX_RETRY_DELAY_SECONDS
    assert line_for(rpc_lines, request_id)["status"] == "RESOURCE_EXHAUSTED"
    assert rpcs_counted(bridge, method, "RESOURCE_EXHAUSTED") == before + 1


# 2. bad bytes in the caller's metadata

BAD_VALUES = [
    pytest.param(b"Bearer tok\r\nx-evil: 1", id="crlf"),
    pytest.param(b"Bearer tok\x01en", id="control"),
    pytest.param(b"Bearer t\xc3\xa9st", id="utf8"),
    pytest.param(b"Bearer \xff\xfe", id="not-utf8"),
]


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("header", [b"authorization", b"traceparent", b"baggage"])
@pytest.mark.parametrize("method", ["CreateChatCompletion", "StreamChatCompletion"])
def test_bad_metadata_bytes_are_invalid_argument_naming_the_header(
    bridge, upstream, rpc_lines, tracebacks, header, value, method
):
    request_id = f"bad-md-{header.decode()}-{value.hex()}-{method}"[:200]
    reply = raw_grpc.call(
        bridge.target,
        method,
        chat_request().SerializeToString(),
        [(header, value), (b"x-request-id", request_id.encode())],
    )
    assert reply.grpc_status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert header.decode() in reply.grpc_message
    status = reply.status
    assert status is not None
    assert value not in status.SerializeToString()
    assert value.decode("latin-1") not in reply.grpc_message
    assert reply.metadata(b"x-request-id") == request_id.encode()
    assert upstream.requests() == []  # refused before any upstream call
    assert line_for(rpc_lines, request_id)["status"] == "INVALID_ARGUMENT"
    assert tracebacks == []


@pytest.mark.parametrize("value", ["", " ", "   ", "Bearer", "Bearer   "])
def test_authorization_without_a_credential_is_refused(stub, upstream, value):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(chat_request(), metadata=(("authorization", value),), timeout=10)
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    [violation] = details_of(error)["BadRequest"].field_violations
    assert violation.field == "authorization"
    assert upstream.requests() == []


# 3. request bytes that are not a ChatCompletionRequest


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xff\xff\xff", id="garbage"),
        pytest.param(b"\x0a\x05ab", id="truncated-field"),
        pytest.param(b"\x12\x03\x0a\x01", id="truncated-message"),
    ],
)
@pytest.mark.parametrize("method", ["CreateChatCompletion", "StreamChatCompletion", "ListModels"])
def test_undecodable_request_is_invalid_argument_with_one_warning(
    bridge, upstream, rpc_lines, tracebacks, caplog, payload, method
):
    request_id = f"undecodable-{method}-{payload.hex()}"
    with caplog.at_level(logging.INFO):
        reply = raw_grpc.call(
            bridge.target, method, payload, [(b"x-request-id", request_id.encode())]
        )
    assert reply.grpc_status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reply.metadata(b"x-request-id") == request_id.encode()
    assert "not a valid" in reply.grpc_message
    assert line_for(rpc_lines, request_id)["status"] == "INVALID_ARGUMENT"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    [warning] = [r for r in warnings if request_id in r.getMessage()]
    assert payload.hex() not in warning.getMessage().replace(request_id, "")
    assert tracebacks == []
    assert upstream.requests() == []


def test_undecodable_request_counts_in_the_metrics(bridge):
    before = rpcs_counted(bridge, "CreateChatCompletion", "INVALID_ARGUMENT")
    reply = raw_grpc.call(bridge.target, "CreateChatCompletion", b"\xff\xff")
    assert reply.grpc_status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for _ in range(200):
        if rpcs_counted(bridge, "CreateChatCompletion", "INVALID_ARGUMENT") == before + 1:
            break
        threading.Event().wait(0.01)
    assert rpcs_counted(bridge, "CreateChatCompletion", "INVALID_ARGUMENT") == before + 1


# 4. a request over --max-request-bytes, below grpc's raised receive limit

SMALL_REQUESTS = 1024


@pytest.fixture(scope="module")
def small_requests(make_bridge) -> Any:
    return make_bridge(max_request_bytes=SMALL_REQUESTS)


@pytest.mark.parametrize("method", ["CreateChatCompletion", "StreamChatCompletion", "ListModels"])
def test_request_over_the_limit_is_resource_exhausted_with_one_warning(
    small_requests, upstream, rpc_lines, tracebacks, caplog, method
):
    """Bytes that would not even decode: too large is told first, and they are never parsed."""
    request_id = f"too-large-{method}"
    before = rpcs_counted(small_requests, method, "RESOURCE_EXHAUSTED")
    with caplog.at_level(logging.INFO):
        reply = raw_grpc.call(
            small_requests.target,
            method,
            b"\xff" * (SMALL_REQUESTS + 1),
            [(b"x-request-id", request_id.encode())],
        )
    assert reply.grpc_status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert reply.metadata(b"x-request-id") == request_id.encode()
    assert "--max-request-bytes" in reply.grpc_message
    status = reply.status
    assert status is not None
    assert b"REQUEST_TOO_LARGE" in status.SerializeToString()
    assert line_for(rpc_lines, request_id)["status"] == "RESOURCE_EXHAUSTED"
    [warning] = [r for r in caplog.records if request_id in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert tracebacks == []
    assert upstream.requests() == []
    for _ in range(200):
        if rpcs_counted(small_requests, method, "RESOURCE_EXHAUSTED") == before + 1:
            break
        threading.Event().wait(0.01)
    assert rpcs_counted(small_requests, method, "RESOURCE_EXHAUSTED") == before + 1


# Also: statuses the table did not cover, and `extra` below the top level


@pytest.fixture(scope="module")
def raw_stub(make_bridge, raw_upstream) -> Iterator[chat_pb2_grpc.ChatServiceStub]:
    channel, stub = stub_for(make_bridge(upstream_url=raw_upstream.base_url).target)
    with channel:
        yield stub


@pytest.mark.parametrize("http_status", [204, 301, 302, 304, 307, 308])
@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_redirect_and_no_content_answers_are_unavailable(raw_stub, raw_upstream, http_status, rpc):
    raw_upstream.answer = (
        f"HTTP/1.1 {http_status} Whatever\r\nlocation: http://elsewhere.test/\r\n"
        "content-length: 0\r\n\r\n"
    ).encode()
    request = chat_request()
    stub = raw_stub
    error = _failed_call(stub, rpc, request, CALLER_METADATA)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    info = details_of(error)["ErrorInfo"]
    assert info.reason == "UPSTREAM_HTTP_ERROR"
    assert info.metadata["http_status"] == str(http_status)


def test_nested_extra_may_not_name_a_modelled_field(stub, upstream):
    request = chat_request()
    request.messages[0].extra.update({"content": "smuggled", "name": "x", "cache": True})
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA, timeout=10)
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in details_of(error)["BadRequest"].field_violations}
    assert fields == {"messages[0].extra.content", "messages[0].extra.name"}
    assert upstream.requests() == []


def test_a_stream_with_no_event_still_names_its_request_id(make_bridge, raw_upstream, rpc_lines):
    # found by test_status_properties: [DONE] first gave OK with no x-request-id anywhere
    raw_upstream.answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 14\r\n"
        b"connection: close\r\n\r\ndata: [DONE]\n\n"
    )
    channel, stub = stub_for(make_bridge(upstream_url=raw_upstream.base_url).target)
    with channel:
        call = stub.StreamChatCompletion(chat_request(), timeout=10)
        assert list(call) == []
        assert call.code() is grpc.StatusCode.OK
        request_id = metadata_dict(call.trailing_metadata())["x-request-id"]
    assert line_for(rpc_lines, request_id)["status"] == "OK"
