"""bridge.retries: what is retried, when, how often, on which model; and its properties.

The upstream is scripted per attempt (an httpx MockTransport answering each
request by the next step of a script) and time is a fake clock that only the
retries' own waits move, so deadlines and budgets are checked exactly. The
same rules through the real bridge are tests/integration/test_retries.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import Body

from bridge.config import BridgeConfig, ConfigError, parse_fallbacks
from bridge.errors import (
    BridgeError,
    UpstreamCircuitOpen,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamReportedError,
    UpstreamUnavailable,
    UpstreamUnreachable,
    to_status,
)
from bridge.metrics import Metrics
from bridge.retries import MIN_ATTEMPT_SECONDS, Retries, RetryBudget, StreamCut, retry_reason
from bridge.upstream import UpstreamClient
from bridge.upstream_call import UpstreamCall

pytestmark = pytest.mark.timeout(120)


@dataclasses.dataclass(frozen=True)
class Step:
    """What the scripted upstream does for one attempt."""

    kind: str  # ok, status, first_error, cut, error_after
    n: int = 0  # events (ok, cut, error_after) or HTTP status (status)
    code: object = None  # the error code (first_error), Retry-After (status 429)

    @property
    def retryable_before_first_event(self) -> bool:
        if self.kind == "status":
            return self.n in (408, 429, 502, 503, 504)
        if self.kind == "first_error":
            return self.code in (503, "overloaded")
        return self.kind in ("cut", "error_after") and self.n == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def _event(attempt: int, index: int) -> bytes:
    return b"data: " + orjson.dumps({"attempt": attempt, "i": index}) + b"\n\n"


def _error_event(code: object) -> bytes:
    return b"data: " + orjson.dumps({"error": {"code": code, "message": "busy"}}) + b"\n\n"


class Scripted:
    """An upstream answering request k by step k of `script` (the last step repeats)."""

    def __init__(self, script: Sequence[Step], clock: Clock) -> None:
        self.script = list(script)
        self.clock = clock
        self.requests: list[tuple[dict[str, Any], dict[str, str], float]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        attempt = len(self.requests) + 1
        self.requests.append((orjson.loads(request.content), dict(request.headers), self.clock()))
        step = self.script[min(attempt, len(self.script)) - 1]
        stream = orjson.loads(request.content).get("stream", False)
        if step.kind == "status":
            headers = {} if step.code is None else {"retry-after": str(step.code)}
            return httpx.Response(
                step.n, json={"error": {"code": step.n, "message": "busy"}}, headers=headers
            )
        if not stream:
            if step.kind == "first_error":
                return httpx.Response(200, json={"error": {"code": step.code, "message": "x"}})
            answer = {"id": f"a{attempt}", "model": request_model(request), "choices": [{}]}
            return httpx.Response(200, json=answer)
        reads = [_event(attempt, index) for index in range(step.n)]
        if step.kind == "first_error":
            reads = [_error_event(step.code)]
        elif step.kind == "error_after":
            reads.append(_error_event(503))
        elif step.kind == "ok":
            reads.append(b"data: [DONE]\n\n")
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Body(reads)
        )


def request_model(request: httpx.Request) -> str:
    model: str = orjson.loads(request.content)["model"]
    return model


def _client(
    script: Sequence[Step],
    *,
    fallbacks: dict[str, tuple[str, ...]] | None = None,
    metrics: Metrics | None = None,
    **settings: Any,
) -> tuple[UpstreamClient, Scripted, Clock]:
    clock = Clock()
    upstream = Scripted(script, clock)
    given = {"retry_backoff": 0.05, "retry_budget_floor": 10_000, **settings}
    config = BridgeConfig(upstream_url="http://upstream.test/api/v1", **given)
    client = UpstreamClient(config, transport=httpx.MockTransport(upstream))
    client.retries = Retries(config, fallbacks or {}, metrics, clock=clock, sleep=clock.sleep)
    return client, upstream, clock


def _call(timeout: float = 30.0, model: str = "m", **fields: Any) -> UpstreamCall:
    return UpstreamCall(
        authorization="Bearer t",
        request_id="r-1",
        using_service_key=False,
        timeout=timeout,
        model=model,
        **fields,
    )


async def _stream(
    client: UpstreamClient, call: UpstreamCall, upstream: Scripted
) -> tuple[list[dict[str, Any]], BaseException | None, int]:
    """Relay a stream: its events, its end, and the requests made when it was handed over."""
    body = orjson.dumps({"model": call.model, "stream": True})
    events: list[dict[str, Any]] = []
    handed = -1
    try:
        async with await client.stream_chat_completion(body, call) as answer:
            handed = len(upstream.requests)
            async for event in answer:
                events.append(event)
    except Exception as exc:
        return events, exc, handed
    finally:
        await client.aclose()
    return events, None, handed


async def _unary(client: UpstreamClient, call: UpstreamCall) -> dict[str, Any] | BaseException:
    try:
        return await client.create_chat_completion(orjson.dumps({"model": call.model}), call)
    except Exception as exc:
        return exc
    finally:
        await client.aclose()


# What is retried


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UpstreamHTTPError(503, "x"), "http_503"),
        (UpstreamHTTPError(429, "x"), "http_429"),
        (UpstreamHTTPError(408, "x"), "http_408"),
        (UpstreamHTTPError(500, "x"), None),
        (UpstreamHTTPError(400, "x"), None),
        (UpstreamHTTPError(404, "x"), None),
        (UpstreamReportedError("overloaded", "x"), "error_event"),
        (UpstreamReportedError(502, "x"), "error_event"),
        (UpstreamReportedError("server_error", "x"), None),
        (UpstreamReportedError(None, "x"), None),
        (UpstreamUnreachable("x"), "connect"),
        (UpstreamUnavailable("x"), None),  # lost after sending: may have reached the model
        (StreamCut(UpstreamUnavailable("x")), "stream_cut"),
        (UpstreamProtocolError("x"), None),
        (UpstreamCircuitOpen("m", 1.0), "circuit_open"),
        (asyncio.CancelledError(), None),
    ],
)
def test_which_failures_are_retryable(error, reason):
    assert retry_reason(error) == reason


@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_a_503_then_an_answer_is_one_call_with_one_request_id_and_numbered_attempts(rpc):
    metrics = Metrics()
    client, upstream, _ = _client([Step("status", 503), Step("ok", 2)], metrics=metrics)
    call = _call()
    if rpc == "unary":
        assert isinstance(asyncio.run(_unary(client, call)), dict)
    else:
        events, error, _ = asyncio.run(_stream(client, call, upstream))
        assert error is None and [e["attempt"] for e in events] == [2, 2]
    headers = [request[1] for request in upstream.requests]
    assert [h["x-request-id"] for h in headers] == ["r-1", "r-1"]
    assert [h["x-bridge-attempt"] for h in headers] == ["1", "2"]
    assert call.attempts == [("m", "http_503"), ("m", "ok")]
    sample = metrics.registry.get_sample_value
    assert sample("bridge_upstream_retries_total", {"reason": "http_503"}) == 1


def test_a_429_waits_its_retry_after_when_it_fits_and_fails_when_it_does_not():
    client, upstream, _ = _client([Step("status", 429, 3), Step("ok", 1)])
    assert isinstance(asyncio.run(_unary(client, _call(timeout=10))), dict)
    assert upstream.requests[1][2] - upstream.requests[0][2] == pytest.approx(3)
    client, upstream, _ = _client([Step("status", 429, 30), Step("ok", 1)])
    error = asyncio.run(_unary(client, _call(timeout=10)))
    assert isinstance(error, UpstreamHTTPError) and error.http_status == 429
    assert len(upstream.requests) == 1


def test_the_opt_out_makes_one_attempt_and_no_fallback():
    client, upstream, _ = _client([Step("status", 503), Step("ok", 1)], fallbacks={"m": ("f",)})
    error = asyncio.run(_unary(client, _call(retry=False)))
    assert isinstance(error, UpstreamHTTPError)
    assert len(upstream.requests) == 1


def test_fallbacks_are_tried_in_order_with_the_model_in_the_body_and_filtered_by_permission():
    script = [Step("status", 503)] * 2 + [Step("ok", 1)]
    client, upstream, _ = _client(script, fallbacks={"m": ("denied", "f1", "f2")}, retry_attempts=1)
    call = _call(model_allowed=lambda model: model != "denied")
    answer = asyncio.run(_unary(client, call))
    assert isinstance(answer, dict)
    assert [request[0]["model"] for request in upstream.requests] == ["m", "f1", "f2"]
    assert answer["model"] == "f2"  # the upstream's word, never overwritten
    assert call.attempts == [("m", "http_503"), ("f1", "http_503"), ("f2", "ok")]


def test_an_open_breaker_fails_fast_then_a_fallback_serves():
    metrics = Metrics()
    client, upstream, clock = _client(
        [Step("status", 503)] * 3 + [Step("ok", 1)],
        metrics=metrics,
        retry_attempts=1,
        breaker_failures=3,
        breaker_cooldown=5,
    )
    for _ in range(3):
        assert isinstance(asyncio.run(_unary(client, _call())), UpstreamHTTPError)
    error = asyncio.run(_unary(client, _call()))
    assert isinstance(error, UpstreamCircuitOpen)
    assert error.code.name == "UNAVAILABLE" and error.reason == "UPSTREAM_CIRCUIT_OPEN"
    assert 0 < error.retry_after <= 5
    assert [d.type_url.rsplit(".", 1)[-1] for d in error.details()] == ["RetryInfo"]
    assert to_status(error).code.name == "UNAVAILABLE"
    assert len(upstream.requests) == 3  # nothing sent
    gauge = metrics.registry.get_sample_value
    assert gauge("bridge_upstream_breaker_state", {"model": "m"}) == 2
    client.retries.use_fallbacks({"m": ("f",)})  # a fallback configured now (a policy reload)
    answer = asyncio.run(_unary(client, _call()))
    assert isinstance(answer, dict) and answer["model"] == "f"
    fallbacks = gauge("bridge_upstream_fallbacks_total", {"reason": "circuit_open"})
    assert fallbacks == 1
    clock.now += 5
    assert isinstance(asyncio.run(_unary(client, _call())), dict)  # probe 1 of 2
    assert isinstance(asyncio.run(_unary(client, _call())), dict)
    assert gauge("bridge_upstream_breaker_state", {"model": "m"}) == 0


def test_a_connect_failure_is_not_retried_again_on_its_model():
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request_model(request))
        raise httpx.ConnectError("refused")

    config = BridgeConfig(upstream_url="http://upstream.test/api/v1", connect_retries=1,
                          connect_retry_backoff=0, fallback_models={"m": ("f",)})  # fmt: skip
    client = UpstreamClient(config, transport=httpx.MockTransport(refuse))
    error = asyncio.run(_unary(client, _call()))
    assert isinstance(error, UpstreamUnreachable)
    assert attempts == ["m", "m", "f", "f"]  # each model: its connect retries only


def test_parse_fallbacks_refuses_what_it_cannot_read():
    assert parse_fallbacks("a=b|c, d=e") == {"a": ("b", "c"), "d": ("e",)}
    for bad in ("a", "a=", "=b", "a=b||c", "a=a", "a=b|b", "a=b,a=c"):
        with pytest.raises(ValueError, match=r"model|given twice|repeats"):
            parse_fallbacks(bad)
    with pytest.raises(ConfigError):
        BridgeConfig(retry_attempts=0)


def test_the_budget_allows_a_share_of_the_calls_plus_the_floor():
    budget = RetryBudget(0.1, 2, 10.0, clock=lambda: 5.0)
    for _ in range(30):
        budget.called(5.0)
    assert sum(budget.spend() for _ in range(100)) == 5  # 10% of 30, plus 2


# Properties

STEPS = st.one_of(
    st.builds(Step, st.just("ok"), st.integers(0, 4)),
    st.builds(Step, st.just("status"), st.sampled_from([400, 404, 500, 502, 503, 504])),
    st.builds(Step, st.just("status"), st.just(429), st.sampled_from([0, 1, 100])),
    st.builds(Step, st.just("first_error"), st.just(0), st.sampled_from([503, "overloaded", 400])),
    st.builds(Step, st.just("cut"), st.integers(0, 3)),
    st.builds(Step, st.just("error_after"), st.integers(0, 3)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(STEPS, min_size=1, max_size=6),
    attempts=st.integers(1, 4),
    chain=st.sampled_from([(), ("f",), ("f", "g")]),
    timeout=st.sampled_from([0.2, 1.0, 30.0]),
)
def test_a_stream_is_one_attempts_events_whole_and_never_retried_once_handed_over(
    script, attempts, chain, timeout
):
    client, upstream, clock = _client(
        script, fallbacks={"m": chain}, retry_attempts=attempts, breaker_failures=0,
        breaker_failure_rate=0.0,
    )  # fmt: skip
    started = clock.now
    events, error, handed = asyncio.run(_stream(client, _call(timeout), upstream))
    made = len(upstream.requests)
    assert 1 <= made <= attempts * (1 + len(chain))
    # never a retry once the stream was handed over (a message may have been written)
    assert handed in (-1, made)
    # never a duplicated or missing chunk: the events of the last attempt, in order, whole
    last = script[min(made, len(script)) - 1]
    assert events == [{"attempt": made, "i": i} for i in range(len(events))]
    if last.kind == "ok":
        assert error is None and len(events) == last.n
    else:
        assert isinstance(error, BridgeError)
        assert len(events) == (0 if last.kind in ("status", "first_error") else last.n)
    # every attempt but the last failed retryably before its first event
    for step in (script[min(k, len(script)) - 1] for k in range(1, made)):
        assert step.retryable_before_first_event
    # deadlines: no attempt started without MIN_ATTEMPT_SECONDS left
    for _, _, at in upstream.requests:
        assert at - started <= timeout - MIN_ATTEMPT_SECONDS + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    calls=st.integers(1, 60),
    ratio=st.sampled_from([0.0, 0.1, 0.5]),
    floor=st.integers(0, 5),
    chain=st.sampled_from([(), ("f",)]),
)
def test_a_sustained_outage_adds_at_most_the_budget_upstream(calls, ratio, floor, chain):
    client, upstream, _ = _client(
        [Step("status", 503)], fallbacks={"m": chain}, retry_attempts=3, retry_backoff=0.0,
        retry_budget=ratio, retry_budget_floor=floor, breaker_failures=0,
        breaker_failure_rate=0.0,
    )  # fmt: skip

    async def outage() -> None:
        for _ in range(calls):
            with contextlib.suppress(UpstreamHTTPError):
                await client.create_chat_completion(b'{"model": "m"}', _call())
        await client.aclose()

    asyncio.run(outage())
    assert len(upstream.requests) <= (1 + ratio) * calls + floor
