"""The rule, over generated calls: every outcome is a documented status that the log agrees with.

Hypothesis drives one real bridge (over real sockets) with generated calls:
request bytes (valid requests, invalid ones, garbage), metadata (any bytes, at
the HTTP/2 frame level through `raw_grpc`, so also what grpc's own client
refuses to send) and upstream answers (`RawUpstream`: any status 100-599, any
headers, with extreme Retry-After values, odd content types and encodings,
JSON, event streams whole, truncated or garbled, bytes that are no HTTP at
all, and now and then a silence past every timeout). For every call it asserts:

* the code is one the README's status table lists, never UNKNOWN;
* INTERNAL only where the upstream said so or the bridge itself is at fault
  by its ErrorInfo reason, never the generic reason of a bug in the bridge;
* the x-request-id is in the answer's metadata, the caller's own when usable;
* the call's one log line carries that id and the status the caller got, and
  ``bridge_rpcs_total`` counted that code once;
* nothing was logged at ERROR and no traceback (a caller's or an upstream's
  mistake is no error of the bridge);

and after all of them the bridge still serves a normal call. Bounded for
`make test` (derandomized, no example database: CI sees the same calls each
run); `make soak` runs it longer (BRIDGE_PROPERTY_EXAMPLES).
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import raw_grpc
from google.rpc import error_details_pb2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.config import BridgeConfig, Secret
from myrouter.chat.v1 import chat_pb2
from support import SERVICE_KEY, status_table_tokens

EXAMPLES = int(os.environ.get("BRIDGE_PROPERTY_EXAMPLES", "300"))
pytestmark = pytest.mark.timeout(max(600, EXAMPLES // 5))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DOCUMENTED = {grpc.StatusCode.OK} | {
    code for code in grpc.StatusCode if code.name in status_table_tokens()
}
CODES = {code.value[0]: code for code in grpc.StatusCode}
INTERNAL_BY_REASON = {"UPSTREAM_HTTP_ERROR", "UPSTREAM_REPORTED_ERROR", "SERVICE_KEY_REJECTED"}
"""INTERNAL that is not the bridge's bug: the upstream's 500 / server_error, the operator's key."""
METHODS = (
    "CreateChatCompletion",
    "StreamChatCompletion",
    "StreamChatCompletionBatches",
    "ListModels",
)


class Recorder(logging.Handler):
    """Every record of the bridge's loggers and grpc's, kept for the assertions."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self._lock:
            records, self.records = self.records, []
        return records


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    loggers = [logging.getLogger(name) for name in ("bridge", "grpc", "asyncio", "aiohttp")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("bridge.rpc").setLevel(logging.INFO)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def hostile_bridge(make_bridge, raw_upstream):
    return make_bridge(
        upstream_url=raw_upstream.base_url,
        api_key=Secret(SERVICE_KEY),
        request_timeout=1.0,
        stream_idle_timeout=0.4,
        max_response_bytes=4096,
        max_event_bytes=1024,
        connect_retries=0,
        opentelemetry="off",
    )


# -- the caller's side: request bytes and metadata

TEXT = st.text(max_size=12)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
EXTRA_KEYS = st.sampled_from(["stream", "model", "content", "role", "foo", "provider", "text"])


def often(draw: st.DrawFn, percent: int) -> bool:
    """True about `percent` % of the time (a sampled_from favours its first items)."""
    return draw(st.integers(0, 99)) >= 100 - percent


def plain_request() -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        model="myrouter/echo", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
    )


@st.composite
def chat_requests(draw: st.DrawFn) -> bytes:
    if not often(draw, 50):
        return plain_request().SerializeToString()
    request = chat_pb2.ChatCompletionRequest(
        model=draw(st.sampled_from(["myrouter/echo", "myrouter/echo", "", " "]) | TEXT)
    )
    for _ in range(draw(st.sampled_from([1, 1, 0, 2, 3]))):
        message = request.messages.add(role=draw(st.sampled_from(["user", "user", ""]) | TEXT))
        if draw(st.booleans()):
            message.content = draw(TEXT)
        if draw(st.integers(0, 4)) == 0:
            message.content_parts.add(type="text", text=draw(TEXT))
        if draw(st.integers(0, 4)) == 0:
            message.extra.update({draw(EXTRA_KEYS): draw(JSON_SCALARS)})
    if draw(st.booleans()):
        request.temperature = draw(st.floats(width=32))
    if draw(st.integers(0, 3)) == 0:
        request.max_tokens = draw(st.integers(-(2**31), 2**31 - 1))
    if draw(st.integers(0, 3)) == 0:
        request.extra.update(draw(st.dictionaries(EXTRA_KEYS, JSON, max_size=2)))
    return request.SerializeToString()


@st.composite
def request_bytes(draw: st.DrawFn, method: str) -> bytes:
    if method == "ListModels":
        valid = chat_pb2.ListModelsRequest().SerializeToString()
    elif method == "StreamChatCompletionBatches":
        batches = chat_pb2.StreamChatCompletionBatchesRequest()
        batches.request.ParseFromString(draw(chat_requests()))
        if draw(st.booleans()):  # any wait, the refused ones (negative, bad nanos) included
            batches.max_delay.seconds = draw(st.integers(-(2**40), 2**40))
            batches.max_delay.nanos = draw(st.integers(-(2**31), 2**31 - 1))
        valid = batches.SerializeToString()
    else:
        valid = draw(chat_requests())
    if often(draw, 10):
        return draw(st.binary(max_size=48))
    if often(draw, 10) and valid:
        return valid[: draw(st.integers(0, len(valid) - 1))]
    return valid


HEADER_BYTES = st.binary(max_size=24) | st.text(max_size=24).map(str.encode)
METADATA_KEYS = st.sampled_from(
    [b"authorization", b"x-request-id", b"traceparent", b"baggage", b"b3", b"x-other"]
)
HOSTILE_METADATA = st.lists(
    st.tuples(METADATA_KEYS, HEADER_BYTES | st.sampled_from([b"Bearer tok-1", b" ", b""])),
    max_size=3,
)


@st.composite
def metadata_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    if often(draw, 40):
        return draw(HOSTILE_METADATA)
    clean = [(b"authorization", b"Bearer tok-1")] if draw(st.booleans()) else []
    if draw(st.booleans()):
        clean.append((b"x-request-id", b"prop-%d" % draw(st.integers(0, 10**9))))
    return clean


# -- the upstream's side: one answer, as bytes


def dumps(value: Any) -> bytes:
    """JSON as a sloppy server writes it: integers of any size, NaN and Infinity as is."""
    return json.dumps(value).encode()


def sse(events: list[bytes]) -> bytes:
    return b"".join(b"data: " + event + b"\n\n" for event in events)


CHUNK = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "created": 1}
CHUNKS_OK = dumps({**CHUNK, "choices": [{"index": 0, "delta": {"content": "hi"}}]})
CHUNKS = st.sampled_from(
    [
        dumps({**CHUNK, "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
        dumps({**CHUNK, "choices": [], "usage": {"input_tokens": 1, "output_tokens": 2}}),
        dumps({"error": {"code": 429, "message": "slow"}}),
        dumps({"error": "just a string"}),
        dumps({**CHUNK, "choices": "not a list"}),
        dumps({**CHUNK, "created": 10**40}),
        b"[DONE]",
        b"not json",
        b"[1, 2]",
        b"x" * 1500,
    ]
) | JSON.map(dumps)
COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "model": "m",
    "created": 1,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}
JSON_BODIES = st.sampled_from(
    [
        COMPLETION,
        {"data": [{"id": "m1"}]},
        {"error": {"code": 500, "message": "boom"}},
        {"error": {"code": "rate_limit_exceeded", "message": "slow", "metadata": {"a": 1}}},
        {"error": {"code": 10**30, "message": 5}},
        {"error": None},
        {**COMPLETION, "usage": {"input_tokens": -1, "output_tokens": 2**70}},
    ]
) | st.dictionaries(st.sampled_from(["error", "choices", "data", "id", "usage"]), JSON)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "sse", "sse_truncated", "binary", "empty", "big"]))
    if kind == "json":
        return dumps(draw(JSON_BODIES))
    if kind in ("sse", "sse_truncated"):
        stream = sse(draw(st.lists(CHUNKS, max_size=4)))
        if draw(st.booleans()):
            stream = b": MYROUTER PROCESSING\n\n" + stream
        if kind == "sse":
            return stream + b"data: [DONE]\n\n"
        return stream[: draw(st.integers(0, max(0, len(stream) - 1)))]
    if kind == "binary":
        return draw(st.binary(max_size=64))
    if kind == "big":
        return b'{"error": {"message": "' + b"x" * 5000 + b'"}}'
    return b""


RETRY_AFTER = st.sampled_from(
    [
        "1e300",
        str(2**63),
        "-1",
        "nan",
        "inf",
        "0",
        "3",
        "99999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        email.utils.formatdate(usegmt=True),
        "soon",
        "",
    ]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "text/html",
        "application/octet-stream",
        "",
        "text/event-stream; charset=latin-1",
        "multipart/mixed; boundary=x",
    ]
)
EXTREME_HEADERS = st.sampled_from(
    [
        ("x-big", "a" * 10_000),
        ("content-length", "9" * 30),
        ("content-length", "-1"),
        ("retry-after", "9" * 400),
        ("content-type", "text/event-stream; " + "x=y; " * 2000),
    ]
)
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


def plausible_body(method: str, draw: st.DrawFn) -> tuple[str, bytes]:
    """The content type and body a working API would answer `method` with."""
    if method in ("StreamChatCompletion", "StreamChatCompletionBatches"):
        events = draw(st.lists(CHUNKS, max_size=3)) if often(draw, 30) else [CHUNKS_OK]
        return "text/event-stream", sse(events) + b"data: [DONE]\n\n"
    if method == "ListModels":
        return "application/json", dumps({"object": "list", "data": [{"id": "m1"}]})
    return "application/json", dumps(COMPLETION)


@st.composite
def answers(draw: st.DrawFn, method: str) -> bytes:
    """One upstream answer: mostly HTTP (often what a working API would say), or not HTTP."""
    if often(draw, 8):
        return draw(st.binary(max_size=80))
    headers: list[tuple[str, str]] = []
    if often(draw, 45):
        status = 200
        content_type, body = plausible_body(method, draw)
        headers.append(("content-type", content_type))
    else:
        status = draw(st.sampled_from([200, 429, 500, 204, 302]) | st.integers(100, 599))
        body = draw(bodies())
        if draw(st.booleans()):
            headers.append(("content-type", draw(CONTENT_TYPES)))
    if draw(st.integers(0, 2)) == 0:
        headers.append(("retry-after", draw(RETRY_AFTER)))
    encoding = draw(st.sampled_from([None, None, "gzip", "deflate", "br", "identity", "x-odd"]))
    if encoding is not None:
        headers.append(("content-encoding", encoding))
        if encoding == "gzip" and draw(st.booleans()):
            body = gzip.compress(body)
        elif encoding == "deflate" and draw(st.booleans()):
            body = zlib.compress(body)
    framing = draw(st.sampled_from(["length", "length", "chunked", "close", "short", "long"]))
    if framing == "chunked":
        headers.append(("transfer-encoding", "chunked"))
        body = (b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
        if draw(st.integers(0, 3)) == 0:
            body = body[: draw(st.integers(0, len(body)))]
    elif framing == "length":
        headers.append(("content-length", str(len(body))))
    elif framing in ("short", "long"):
        headers.append(("content-length", str(len(body) + (5 if framing == "long" else -1))))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["x-odd", "set-cookie", "retry-after", "content-type"]))
        headers.append((name, draw(HEADER_VALUES)))
    if often(draw, 5):  # extreme values: over aiohttp's header limit, absurd numbers
        headers.append(draw(EXTREME_HEADERS))
    headers.append(("connection", "close"))
    status_text = (
        str(status) if not often(draw, 3) else draw(st.sampled_from(["999", "abc", "2OO"]))
    )
    head = f"HTTP/1.1 {status_text} {draw(st.sampled_from(['OK', 'Whatever', '']))}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode() + b"\r\n" + body


# -- the property


def error_info(reply: raw_grpc.RawReply) -> error_details_pb2.ErrorInfo | None:
    status = reply.status
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def rpcs_counted(bridge: Any, method: str, code: str) -> float:
    value = bridge.server.metrics.registry.get_sample_value(
        "bridge_rpcs_total", {"method": method, "code": code}
    )
    return value or 0.0


def rpc_lines(records: list[logging.LogRecord], request_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in records
        if r.name == "bridge.rpc" and getattr(r, "request_id", None) == request_id
    ]


@PROPERTY
@given(data=st.data())
def test_every_outcome_is_documented_and_logged_as_the_caller_saw_it(
    hostile_bridge, raw_upstream, recorder, data
):
    method = data.draw(st.sampled_from(METHODS), label="method")
    request = data.draw(request_bytes(method), label="request")
    metadata = data.draw(metadata_lists(), label="metadata")
    raw_upstream.answer = data.draw(answers(method), label="answer")
    # Silent past every timeout now and then (each stall costs the 1 s budget).
    # (chosen by the answer's checksum: hypothesis's integers favour the ends of a range)
    stalls = zlib.crc32(raw_upstream.answer) % 40 == 0
    raw_upstream.stall = 1.2 if stalls else 0.0
    if stalls:
        event("stalled")
    raw_upstream.stall_bytes = min(len(raw_upstream.answer), 20)
    counts = {
        code.name: rpcs_counted(hostile_bridge, method, code.name) for code in grpc.StatusCode
    }
    recorder.take()

    reply = raw_grpc.call(hostile_bridge.target, method, request, metadata, timeout=15)

    assert reply.reset is None, f"stream reset ({reply.reset}) instead of a status"
    assert reply.grpc_status is not None, "no grpc-status"
    code = CODES[reply.grpc_status]
    event(code.name)
    assert code is not grpc.StatusCode.UNKNOWN, reply.grpc_message
    assert code in DOCUMENTED, f"{code.name} is not in README.md's status table"
    info = error_info(reply)
    if code is not grpc.StatusCode.OK:
        assert info is not None, f"{code.name} without ErrorInfo: {reply.grpc_message}"
        assert info.reason != "INTERNAL", f"a bug in the bridge: {reply.grpc_message}"
    if code is grpc.StatusCode.INTERNAL:
        assert info is not None and info.reason in INTERNAL_BY_REASON, info
    sent_id = next((value for key, value in metadata if key == b"x-request-id"), None)
    request_id = reply.metadata(b"x-request-id")
    assert request_id, "no x-request-id in the answer's metadata"
    if sent_id and len(sent_id) <= 256 and sent_id.isascii() and sent_id.decode().isprintable():
        assert request_id == sent_id  # the caller's own, when usable
    if info is not None:
        assert info.metadata["request_id"] == request_id.decode()

    records: list[logging.LogRecord] = []
    for _ in range(300):  # an aborted call's status can reach the caller just before its line
        records += recorder.take()
        if rpc_lines(records, request_id.decode()):
            break
        threading.Event().wait(0.01)
    [line] = rpc_lines(records, request_id.decode())
    assert line.status == code.name  # type: ignore[attr-defined]
    assert rpcs_counted(hostile_bridge, method, code.name) == counts[code.name] + 1
    errors = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def test_the_bridge_still_serves_after_the_hostile_calls(hostile_bridge, raw_upstream):
    """Runs after the property (same module, file order): the process is alive and answers."""
    raw_upstream.stall = 0.0
    completion = dumps(COMPLETION)
    raw_upstream.answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(completion) + completion
    )
    request = chat_pb2.ChatCompletionRequest(
        model="m", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
    )
    reply = raw_grpc.call(
        hostile_bridge.target, "CreateChatCompletion", request.SerializeToString()
    )
    assert reply.grpc_status == 0, reply.grpc_message
    [message] = reply.messages
    assert chat_pb2.ChatCompletion.FromString(message).choices[0].message.content == "hi"
    assert isinstance(hostile_bridge.config, BridgeConfig)
