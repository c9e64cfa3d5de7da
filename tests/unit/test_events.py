"""bridge.events: every rule of a valid upstream answer, over an httpx MockTransport.

Each answer is scripted byte by byte (split into network reads as given), so
each rule can be broken on its own: framing, sizes, ``[DONE]``, JSON objects,
in-band errors and transport failures, for a stream and for a whole body. The
same rules against the real embedded upstream are in test_service_*.py and
test_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import httpx
import pytest

from bridge import errors
from bridge.config import BridgeConfig
from bridge.events import (
    READING_BODY,
    READING_STREAM,
    SENDING,
    TransportFailures,
    error_object,
    transport_failure,
)
from bridge.upstream import UpstreamClient
from bridge.upstream_call import UpstreamCall

pytestmark = pytest.mark.timeout(30)

TOKEN = "caller-secret-token-42"
CALL = UpstreamCall(
    authorization=f"Bearer {TOKEN}", request_id="r-1", using_service_key=False, timeout=10
)
SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}


class Body(httpx.AsyncByteStream):
    """A response body delivered as the given reads, then optionally a failure.

    A float among the reads is a pause of that many seconds (a paced upstream).
    """

    def __init__(self, reads: Sequence[bytes | float], fail: Exception | None = None) -> None:
        self.reads = list(reads)
        self.fail = fail
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            if isinstance(read, float):
                await asyncio.sleep(read)
            else:
                yield read
        if self.fail is not None:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


def client_for(status: int, headers: dict[str, str], body: Body, **settings: Any) -> UpstreamClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=body)

    config = BridgeConfig(upstream_url="http://upstream.test/api/v1", **settings)
    return UpstreamClient(config, transport=httpx.MockTransport(handler))


def relay(
    client: UpstreamClient, call: UpstreamCall, collect: Callable[[Any], Awaitable[None]]
) -> BaseException | None:
    """Open `client`'s stream, hand it to `collect`, close the client: the exception it ended
    with (None when it ended well)."""

    async def main() -> BaseException | None:
        try:
            async with await client.stream_chat_completion(b"{}", call) as answer:
                await collect(answer)
        except Exception as exc:
            return exc
        finally:
            await client.aclose()
        return None

    return asyncio.run(main())


def stream(
    reads: Sequence[bytes | float],
    *,
    status: int = 200,
    headers: dict[str, str] = SSE,
    fail: Exception | None = None,
    call: UpstreamCall = CALL,
    **settings: Any,
) -> tuple[list[dict[str, Any]], BaseException | None, Body]:
    """Relay a scripted stream: the events it gave, the exception it ended with, its body."""
    body = Body(reads, fail)
    client = client_for(status, headers, body, **settings)
    events: list[dict[str, Any]] = []

    async def collect(answer: AsyncIterator[dict[str, Any]]) -> None:
        async for event in answer:
            events.append(event)

    return events, relay(client, call, collect), body


def unary(
    content: bytes, *, status: int = 200, models: bool = False, **settings: Any
) -> tuple[dict[str, Any] | BaseException, Body]:
    body = Body([content])
    client = client_for(status, JSON, body, **settings)

    async def main() -> dict[str, Any] | BaseException:
        try:
            if models:
                return await client.list_models(CALL)
            return await client.create_chat_completion(b"{}", CALL)
        except Exception as exc:
            return exc
        finally:
            await client.aclose()

    return asyncio.run(main()), body


# --------------------------------------------------------------------------- #
# Streams
# --------------------------------------------------------------------------- #


def test_events_are_parsed_objects_up_to_done_and_nothing_after():
    events, error, body = stream(
        [b'data: {"id": "a"}\n\ndata: {"id"', b': "b"}\n\n', b"data: [DONE]\n\ndata: {}\n\n"]
    )
    assert events == [{"id": "a"}, {"id": "b"}]
    assert error is None
    assert body.closed


def test_keepalive_comments_are_not_events():
    events, error, _ = stream([b": PROCESSING\n\n", b'data: {"id": "a"}\n\n', b"data: [DONE]\n\n"])
    assert (events, error) == ([{"id": "a"}], None)


def test_a_stream_without_done_is_truncated_never_finished():
    events, error, body = stream([b'data: {"id": "a"}\n\n'])
    assert events == [{"id": "a"}]
    assert isinstance(error, errors.UpstreamProtocolError)
    assert error.reason == "UPSTREAM_STREAM_TRUNCATED"
    assert body.closed


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'"text"', b"null"])
def test_an_event_that_is_not_a_json_object_is_malformed(data):
    events, error, body = stream([b'data: {"id": "a"}\n\n', b"data: " + data + b"\n\n"])
    assert events == [{"id": "a"}]
    assert isinstance(error, errors.UpstreamProtocolError)
    assert error.reason == "UPSTREAM_MALFORMED_EVENT"
    assert body.closed


def test_an_event_over_the_cap_is_refused_whole_or_unfinished():
    big = b'data: {"pad": "' + b"x" * 2000 + b'"}\n\n'
    _, whole, _ = stream([big], max_event_bytes=1024)
    _, unfinished, body = stream([big[:700], big[700:1400]], max_event_bytes=1024)
    for error in (whole, unfinished):
        assert isinstance(error, errors.UpstreamTooLarge)
        assert error.reason == "UPSTREAM_EVENT_TOO_LARGE"
        assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert body.closed


def test_an_in_band_error_raises_itself_carrying_its_event():
    failing = (
        b'{"id": "b", "error": {"code": 502, "message": "Provider down",'
        b' "metadata": {"provider_name": "Acme"}}}'
    )
    events, error, body = stream([b'data: {"id": "a"}\n\n', b"data: " + failing + b"\n\n"])
    assert events == [{"id": "a"}]
    assert isinstance(error, errors.UpstreamReportedError)
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.message == "Provider down"
    assert error.metadata["code"] == error.metadata["http_status"] == "502"
    assert error.metadata["provider_name"] == "Acme"
    assert error.event["id"] == "b"
    assert error.event["error"]["message"] == "Provider down"
    assert body.closed


def test_a_string_error_is_its_own_message_and_a_null_error_is_none():
    events, error, _ = stream(
        [b'data: {"id": "a", "error": null}\n\n', b'data: {"error": "rate limited"}\n\n']
    )
    assert events == [{"id": "a", "error": None}]
    assert isinstance(error, errors.UpstreamReportedError)
    assert error.message == "rate limited"


def test_credentials_never_reach_an_in_band_error_message():
    data = b'data: {"error": {"message": "bad key ' + TOKEN.encode() + b'"}}\n\n'
    _, error, _ = stream([data])
    assert isinstance(error, errors.UpstreamReportedError)
    assert TOKEN not in error.message


def test_an_error_status_becomes_an_http_error_with_its_details():
    body = b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}'
    events, error, closed = stream(
        [body], status=429, headers={"content-type": "application/json", "retry-after": "3"}
    )
    assert events == []
    assert isinstance(error, errors.UpstreamHTTPError)
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.message == "slow down"
    assert error.metadata["code"] == "rate_limit_exceeded"
    assert error.retry_after == 3
    assert closed.closed


def test_the_service_key_refused_is_the_operators_problem():
    service = UpstreamCall(
        authorization="Bearer k", request_id="r", using_service_key=True, timeout=10
    )
    _, error, _ = stream([b'{"error": "no"}'], status=401, headers=JSON, call=service)
    assert isinstance(error, errors.ServiceKeyRejected)


def test_a_json_error_instead_of_events_is_reported():
    _, error, _ = stream([b'{"error": {"code": 404, "message": "no such model"}}'], headers=JSON)
    assert isinstance(error, errors.UpstreamReportedError)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.message == "no such model"


def test_anything_else_instead_of_events_is_not_an_event_stream():
    _, error, body = stream([b"<html>hi</html>"], headers={"content-type": "text/html"})
    assert isinstance(error, errors.UpstreamProtocolError)
    assert error.reason == "UPSTREAM_NOT_AN_EVENT_STREAM"
    assert body.closed


@pytest.mark.parametrize(
    ("failure", "expected", "words"),
    [
        (httpx.ReadTimeout("quiet"), errors.UpstreamTimeout, "silent for 7 s"),
        (httpx.ReadError("reset"), errors.UpstreamUnavailable, "broke mid-stream (ReadError)"),
        (httpx.RemoteProtocolError("eof"), errors.UpstreamUnavailable, "mid-stream"),
    ],
)
def test_a_transport_failure_mid_stream_becomes_the_bridges(failure, expected, words):
    events, error, body = stream([b'data: {"id": "a"}\n\n'], fail=failure, stream_idle_timeout=7)
    assert events == [{"id": "a"}]
    assert type(error) is expected
    assert words in str(error)
    assert body.closed


def test_a_stream_left_early_is_closed():
    body = Body([b'data: {"id": "a"}\n\ndata: {"id": "b"}\n\n'])
    client = client_for(200, SSE, body)

    async def main() -> None:
        async with await client.stream_chat_completion(b"{}", CALL) as answer:
            async for _ in answer:
                break
        await client.aclose()

    asyncio.run(main())
    assert body.closed


def batched(
    reads: Sequence[bytes | float], max_delay: float = 0.0, **settings: Any
) -> tuple[list[list[dict[str, Any]]], BaseException | None, Body]:
    """`stream`, iterated by `EventStream.batches`: the lists it gave, its end, its body."""
    body = Body(reads)
    client = client_for(200, SSE, body, **settings)
    batches: list[list[dict[str, Any]]] = []

    async def collect(answer: Any) -> None:
        async for batch in answer.batches(max_delay):
            batches.append(list(batch))

    return batches, relay(client, CALL, collect), body


def _event(n: int) -> bytes:
    return b'data: {"n": %d}\n\n' % n


SCRIPTS = {
    "done": [_event(0) + _event(1), _event(2), b"data: [DONE]\n\n" + _event(9)],
    "truncated": [_event(0), _event(1) + _event(2)],
    "malformed": [_event(0) + b"data: [1]\n\n" + _event(9)],
    "error": [_event(0), _event(1) + b'data: {"error": {"code": 429}}\n\n'],
    "error first": [b'data: {"error": "down"}\n\n'],
    "too large": [_event(0), b'data: {"pad": "' + b"x" * 2000],
}


@pytest.mark.parametrize("max_delay", [0.0, 0.05])
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_batches_keep_every_rule_of_the_stream(script, max_delay):
    events, error, _ = stream(SCRIPTS[script], max_event_bytes=1024)
    batches, batched_error, body = batched(SCRIPTS[script], max_delay, max_event_bytes=1024)
    assert [event for batch in batches for event in batch] == events
    assert all(batches)  # never an empty list
    assert type(batched_error) is type(error)
    assert getattr(batched_error, "reason", None) == getattr(error, "reason", None)
    assert body.closed


def test_without_a_wait_each_read_is_one_list():
    batches, error, _ = batched(
        [_event(0) + _event(1), b": keepalive\n\n", _event(2), b"data: [DONE]\n\n"]
    )
    assert error is None
    assert batches == [[{"n": 0}, {"n": 1}], [{"n": 2}]]


def test_with_a_wait_a_list_gathers_the_reads_within_it():
    paced: list[bytes | float] = [
        _event(0),
        0.01,
        _event(1),
        0.01,
        _event(2),
        0.6,
        _event(3),
        b"data: [DONE]\n\n",
    ]
    batches, error, _ = batched(paced, max_delay=0.3)
    assert error is None
    # 0-2 arrive within 0.3 s of the first; 3 comes after the wait, with [DONE] at once.
    assert batches == [[{"n": 0}, {"n": 1}, {"n": 2}], [{"n": 3}]]


def test_with_a_wait_an_end_sends_what_is_gathered_at_once():
    paced: list[bytes | float] = [_event(0), 0.01, _event(1), b'data: {"error": "late"}\n\n']
    batches, error, body = batched(paced, max_delay=5.0)  # the test's timeout would catch a wait
    assert batches == [[{"n": 0}, {"n": 1}]]
    assert isinstance(error, errors.UpstreamReportedError)
    assert body.closed


def test_a_batched_stream_left_during_a_wait_is_closed():
    body = Body([_event(0), 0.01, _event(1), 30.0, _event(2)])
    client = client_for(200, SSE, body)

    async def main() -> list[dict[str, Any]]:
        async with await client.stream_chat_completion(b"{}", CALL) as answer:
            first = await anext(answer.batches(0.05))
        await client.aclose()
        return first

    assert asyncio.run(main()) == [{"n": 0}, {"n": 1}]
    assert body.closed


# --------------------------------------------------------------------------- #
# Whole bodies
# --------------------------------------------------------------------------- #


def test_a_completion_is_its_json_object():
    answer, body = unary(b'{"id": "x", "choices": []}')
    assert answer == {"id": "x", "choices": []}
    assert body.closed


def test_an_error_answer_without_choices_is_reported_with_the_answer():
    answer, _ = unary(b'{"error": {"code": "server_error", "message": "boom"}, "usage": {}}')
    assert isinstance(answer, errors.UpstreamReportedError)
    assert answer.code is grpc.StatusCode.INTERNAL
    assert answer.event["usage"] == {}


def test_an_error_beside_choices_is_part_of_the_answer():
    answer, _ = unary(b'{"error": "partial", "choices": [{"index": 0}]}')
    assert answer == {"error": "partial", "choices": [{"index": 0}]}


def test_a_model_list_has_no_in_band_errors():
    answer, _ = unary(b'{"error": "odd", "data": []}', models=True)
    assert answer == {"error": "odd", "data": []}


@pytest.mark.parametrize("content", [b"not json", b"[1]"])
def test_a_body_that_is_not_a_json_object_is_malformed(content):
    answer, body = unary(content)
    assert isinstance(answer, errors.UpstreamProtocolError)
    assert answer.reason == "UPSTREAM_MALFORMED_BODY"
    assert body.closed


def test_a_body_over_the_cap_is_too_large():
    answer, body = unary(b'{"pad": "' + b"x" * 2000 + b'"}', max_response_bytes=1024)
    assert isinstance(answer, errors.UpstreamTooLarge)
    assert answer.reason == "UPSTREAM_RESPONSE_TOO_LARGE"
    assert body.closed


def test_an_error_status_of_a_whole_body_keeps_the_upstreams_words():
    answer, body = unary(b"<b>Bad gateway</b>", status=502)
    assert isinstance(answer, errors.UpstreamHTTPError)
    assert answer.code is grpc.StatusCode.UNAVAILABLE
    assert answer.message == "<b>Bad gateway</b>"
    assert body.closed


@pytest.mark.parametrize(
    ("error", "normalised"),
    [
        ({"message": "m", "code": 1}, {"message": "m", "code": 1}),
        ("text", {"message": "text"}),
        (42, {"message": "42"}),
    ],
)
def test_error_object_normalises_every_shape_once(error, normalised):
    assert error_object(error) == normalised


# --------------------------------------------------------------------------- #
# Transport failures -> the bridge's exceptions
# --------------------------------------------------------------------------- #

CONFIG = BridgeConfig(connect_timeout=2.5, stream_idle_timeout=9)


def translated(failure: Exception, rules: Any, call: UpstreamCall | None = None) -> Exception:
    try:
        with TransportFailures(rules, CONFIG, call):
            raise failure
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize(
    ("failure", "expected", "message"),
    [
        (httpx.ConnectTimeout("slow"), errors.UpstreamUnavailable, "within 2.5 s"),
        (httpx.PoolTimeout("busy"), errors.UpstreamTimeout, "did not answer in time"),
        (httpx.ReadTimeout("quiet"), errors.UpstreamTimeout, "did not answer in time"),
        (httpx.ConnectError("refused"), errors.UpstreamUnavailable, "(ConnectError: refused)"),
        (httpx.WriteError("pipe"), errors.UpstreamUnavailable, "(WriteError: pipe)"),
    ],
)
@pytest.mark.parametrize("order", ["as written", "reversed"])
def test_the_most_specific_rule_wins_whatever_the_order(failure, expected, message, order):
    rules = SENDING if order == "as written" else dict(reversed(list(SENDING.items())))
    error = translated(failure, rules)
    assert type(error) is expected
    assert message in str(error)
    assert error.__suppress_context__  # the httpx text does not ride along


def test_a_quoted_transport_error_is_redacted():
    error = translated(httpx.ConnectError(f"no route for {TOKEN}"), SENDING, CALL)
    assert TOKEN not in str(error)


def test_other_exceptions_pass_untouched():
    failure = ValueError("ours")
    assert translated(failure, READING_STREAM) is failure
    assert translated(errors.UpstreamTooLarge("big"), READING_STREAM).args == ("big",)


@pytest.mark.parametrize("rules", [SENDING, READING_BODY, READING_STREAM])
def test_every_table_has_a_rule_for_any_transport_failure(rules):
    assert httpx.TransportError in rules

    class Novel(httpx.TransportError):
        """A transport failure no table names."""

    assert isinstance(transport_failure(Novel("new"), rules, CONFIG), errors.UpstreamUnavailable)
