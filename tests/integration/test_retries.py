"""Retries, fallback models and the breaker, through the real bridge (issue 19).

The embedded upstream fails a request's first attempts (``times``, counted per
x-request-id) or only some models (``models``); the caller uses a generated
stub, and the upstream's record shows every attempt that reached it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import grpc_code_for_http_status
from myrouter_upstream import Scenario
from support import (
    CALLER_METADATA,
    chat_request,
    details_of,
    log_line_for,
    metadata_dict,
    read_stream,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)

FALLBACKS = {"myrouter/echo": ("myrouter/echo-large",)}
_ids = itertools.count()


@pytest.fixture(scope="module")
def retrying(make_bridge: Callable[..., Any]) -> Any:
    """A bridge with the default retry settings (fast backoff, and a budget this module's
    deliberate failures never spend) and one fallback chain; its breakers are off, so
    the module's failures never open one."""
    return make_bridge(
        retry_attempts=3,
        retry_backoff=0.01,
        retry_budget_floor=1000,
        fallback_models=FALLBACKS,
        breaker_failures=0,
        breaker_failure_rate=0.0,
    )


@pytest.fixture(scope="module")
def stub(retrying: Any) -> Any:
    channel, stub = stub_for(retrying.target)
    yield stub
    channel.close()


def _metadata(request_id: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (*CALLER_METADATA, ("x-request-id", request_id), *extra)


def _attempts(upstream: Any, request_id: str) -> list[dict[str, str]]:
    """The upstream's record of each attempt of a call: its model and attempt header."""
    return [
        {"model": r.body["model"], "attempt": r.headers.get("x-bridge-attempt", "")}
        for r in upstream.requests()
        if r.headers.get("x-request-id") == request_id
    ]


def _counted(bridge: Any, name: str, labels: dict[str, str]) -> float:
    return bridge.server.metrics.registry.get_sample_value(name, labels) or 0.0


def _large_echo_stream(
    stub: Any, request_id: str, words: str, **scenario: Any
) -> tuple[list[Any], grpc.RpcError | None]:
    """The chunks of `words` from myrouter/echo-large under `scenario`, read to the end of the
    stream under `request_id`, and the error it ended with (None: OK)."""
    request = with_scenario(chat_request(words, model="myrouter/echo-large"), **scenario)
    chunks, error, _ = read_stream(stub, request, _metadata(request_id), timeout=10)
    return chunks, error


@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_a_503_then_an_answer_is_retried_under_one_request_id(
    retrying, stub, upstream, rpc_lines, rpc
):
    request_id = f"r503-{rpc}-{next(_ids)}"
    before = _counted(retrying, "bridge_upstream_retries_total", {"reason": "http_503"})
    request = with_scenario(chat_request("one two"), kind="status", status=503, times=1)
    if rpc == "unary":
        answer = stub.CreateChatCompletion(request, metadata=_metadata(request_id), timeout=10)
        assert answer.choices[0].message.content
    else:
        chunks, error, _ = read_stream(stub, request, _metadata(request_id), timeout=10)
        assert error is None
        assert "".join(c.choices[0].delta.content for c in chunks if c.choices).strip()
    assert _attempts(upstream, request_id) == [
        {"model": "myrouter/echo", "attempt": "1"},
        {"model": "myrouter/echo", "attempt": "2"},
    ]
    after = _counted(retrying, "bridge_upstream_retries_total", {"reason": "http_503"})
    assert after == before + 1
    line = log_line_for(rpc_lines, request_id)
    assert line["status"] == "OK"
    assert line["attempts"] == [
        {"model": "myrouter/echo", "outcome": "http_503"},
        {"model": "myrouter/echo", "outcome": "ok"},
    ]


def test_a_429_whose_retry_after_fits_is_retried_after_it(stub, upstream):
    request_id = f"r429-short-{next(_ids)}"
    request = with_scenario(chat_request(), kind="status", status=429, retry_after="0.3", times=1)
    started = time.monotonic()
    stub.CreateChatCompletion(request, metadata=_metadata(request_id), timeout=10)
    assert time.monotonic() - started >= 0.3
    assert len(_attempts(upstream, request_id)) == 2


def test_a_429_whose_retry_after_does_not_fit_fails_at_once(stub, upstream):
    request_id = f"r429-long-{next(_ids)}"
    request = with_scenario(
        chat_request(model="myrouter/echo-large"),
        kind="status",
        status=429,
        retry_after="30",
        message="slow down",
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=_metadata(request_id), timeout=5)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details_of(caught.value)["RetryInfo"].retry_delay.seconds == 30
    assert len(_attempts(upstream, request_id)) == 1


def test_an_overloaded_first_event_is_retried_and_the_caller_sees_one_whole_answer(stub, upstream):
    request_id = f"overloaded-{next(_ids)}"
    chunks, error = _large_echo_stream(
        stub, request_id, "a b c", kind="midstream_error", after=0, error_code="overloaded", times=2
    )
    assert error is None
    assert not any(c.HasField("error") for c in chunks)
    clean, _, _ = read_stream(stub, chat_request("a b c", model="myrouter/echo-large"))
    assert [c.choices[0].delta.content for c in chunks if c.choices] == [
        c.choices[0].delta.content for c in clean if c.choices
    ]
    assert len(_attempts(upstream, request_id)) == 3


def test_an_error_after_chunks_is_never_retried(stub, upstream):
    request_id = f"after-chunks-{next(_ids)}"
    chunks, error = _large_echo_stream(
        stub, request_id, "a b c d", kind="midstream_error", after=2, error_code=503
    )
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
    assert chunks[-1].HasField("error")
    assert len(_attempts(upstream, request_id)) == 1


@pytest.mark.parametrize(("after", "tries"), [(0, 2), (2, 1)], ids=["before", "after-chunks"])
def test_a_cut_stream_is_retried_only_before_its_first_event(stub, upstream, after, tries):
    request_id = f"cut-{after}-{next(_ids)}"
    chunks, error = _large_echo_stream(
        stub, request_id, "a b c d", kind="truncate", after=after, abort=True, times=1
    )
    if tries == 2:
        assert error is None and chunks
    else:
        assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        assert chunks  # what came before the cut, once
    assert len(_attempts(upstream, request_id)) == tries


@pytest.mark.parametrize("status", [400, 500])
def test_other_statuses_are_not_retried(stub, upstream, status):
    request_id = f"no-retry-{status}-{next(_ids)}"
    request = with_scenario(chat_request(), kind="status", status=status)
    with pytest.raises(grpc.RpcError):
        stub.CreateChatCompletion(request, metadata=_metadata(request_id), timeout=5)
    assert len(_attempts(upstream, request_id)) == 1


def test_a_caller_can_opt_out_and_the_control_metadata_stays_here(stub, upstream):
    request_id = f"opt-out-{next(_ids)}"
    request = with_scenario(chat_request(), kind="status", status=503, times=1)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            request, metadata=_metadata(request_id, ("x-bridge-retry", "off")), timeout=5
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    [record] = [r for r in upstream.requests() if r.headers.get("x-request-id") == request_id]
    assert "x-bridge-retry" not in record.headers


def test_an_unknown_opt_out_value_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            chat_request(), metadata=_metadata("bad-opt", ("x-bridge-retry", "maybe")), timeout=5
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "x-bridge-retry" in caught.value.details()


@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_a_primary_that_is_down_falls_back_and_the_answer_names_who_served(
    retrying, stub, upstream, rpc_lines, rpc
):
    request_id = f"fallback-{rpc}-{next(_ids)}"
    before = _counted(retrying, "bridge_upstream_fallbacks_total", {"reason": "http_503"})
    request = with_scenario(
        chat_request("x y"), kind="status", status=503, models=["myrouter/echo"]
    )
    if rpc == "unary":
        answer = stub.CreateChatCompletion(request, metadata=_metadata(request_id), timeout=10)
        served = answer.model
    else:
        chunks, error, _ = read_stream(stub, request, _metadata(request_id), timeout=10)
        assert error is None
        served = chunks[0].model
    assert served == "myrouter/echo-large"
    assert [a["model"] for a in _attempts(upstream, request_id)] == [
        "myrouter/echo",
        "myrouter/echo",
        "myrouter/echo",
        "myrouter/echo-large",
    ]
    after = _counted(retrying, "bridge_upstream_fallbacks_total", {"reason": "http_503"})
    assert after == before + 1
    outcomes = [a["outcome"] for a in log_line_for(rpc_lines, request_id)["attempts"]]
    assert outcomes == ["http_503", "http_503", "http_503", "ok"]


# The breaker: a bridge of its own, and a server-wide outage.


def _health(target: str) -> int:
    channel = grpc.insecure_channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        status: int = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        return status
    finally:
        channel.close()


def test_an_outage_opens_the_breaker_then_it_recovers(make_bridge, upstream):
    bridge = make_bridge(
        retry_attempts=1,
        breaker_failures=3,
        breaker_failure_rate=0.0,
        breaker_cooldown=0.5,
        breaker_probes=1,
    )
    channel, stub = stub_for(bridge.target)
    state = {"model": "myrouter/echo"}

    def call(request_id: str) -> grpc.RpcError | None:
        try:
            stub.CreateChatCompletion(chat_request(), metadata=_metadata(request_id), timeout=5)
        except grpc.RpcError as error:
            return error
        return None

    try:
        upstream.set_scenario(Scenario(kind="status", status=503))
        for n in range(3):
            error = call(f"outage-{n}")
            assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        gauge = "bridge_upstream_breaker_state"
        assert _counted(bridge, gauge, state) == 2  # open
        error = call("outage-open")
        assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE
        info = details_of(error)
        assert info["ErrorInfo"].reason == "UPSTREAM_CIRCUIT_OPEN"
        assert 0 < info["RetryInfo"].retry_delay.ToTimedelta().total_seconds() <= 0.5
        assert metadata_dict(error.trailing_metadata())["x-request-id"] == "outage-open"
        assert _attempts(upstream, "outage-open") == []  # failed fast: nothing sent
        assert _health(bridge.target) == health_pb2.HealthCheckResponse.SERVING
        upstream.reset_scenario()
        time.sleep(0.6)
        assert call("outage-probe") is None  # the probe closes it
        assert _counted(bridge, gauge, state) == 0
        assert call("outage-after") is None
    finally:
        upstream.reset_scenario()
        channel.close()


# The status contract, whatever the retries did: a smaller real-socket property.


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    status=st.sampled_from([400, 500, 502, 503, 504]),
    times=st.integers(0, 3),
    rpc=st.sampled_from(["unary", "stream"]),
)
def test_every_outcome_keeps_the_status_contract(retrying, stub, upstream, rpc_lines, status,
                                                 times, rpc):  # fmt: skip
    request_id = f"contract-{status}-{times}-{rpc}-{next(_ids)}"
    method = "CreateChatCompletion" if rpc == "unary" else "StreamChatCompletion"
    retried = status in (502, 503, 504)
    served = times == 0 or (retried and times < 3)
    code = "OK" if served else grpc_code_for_http_status(status).name
    before = _counted(retrying, "bridge_rpcs_total", {"method": method, "code": code})
    request = with_scenario(
        chat_request(model="myrouter/echo-large"), kind="status", status=status, times=times
    )
    metadata = _metadata(request_id)
    if rpc == "unary":
        try:
            _, call = stub.CreateChatCompletion.with_call(request, metadata=metadata, timeout=10)
            error, sent = None, call.initial_metadata()
        except grpc.RpcError as failed:
            error, sent = failed, failed.trailing_metadata()
    else:
        _, error, call = read_stream(stub, request, metadata, timeout=10)
        sent = call.initial_metadata() if error is None else error.trailing_metadata()
    assert (error is None) is served
    if error is not None:
        assert error.code().name == code
    assert metadata_dict(sent)["x-request-id"] == request_id
    assert log_line_for(rpc_lines, request_id)["status"] == code
    made = 1 if times == 0 or not retried else min(times + 1, 3)
    assert len(_attempts(upstream, request_id)) == made
    after = _counted(retrying, "bridge_rpcs_total", {"method": method, "code": code})
    assert after == before + 1
