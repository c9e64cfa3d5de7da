"""bridge.failures: transport failures, error statuses and in-band errors as the bridge's
exceptions, by one table and one normalised error object."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from scripted import (
    CALL,
    JSON,
    TOKEN,
    stream,
)

from bridge import errors
from bridge.config import BridgeConfig
from bridge.failures import (
    READING_BODY,
    READING_STREAM,
    SENDING,
    TransportFailures,
    error_object,
    transport_failure,
)
from bridge.upstream_call import UpstreamCall

pytestmark = pytest.mark.timeout(30)


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
        (httpx.ConnectTimeout("slow"), errors.UpstreamUnreachable, "within 2.5 s"),
        (httpx.PoolTimeout("busy"), errors.UpstreamTimeout, "did not answer in time"),
        (httpx.ReadTimeout("quiet"), errors.UpstreamTimeout, "did not answer in time"),
        (httpx.ConnectError("refused"), errors.UpstreamUnreachable, "(ConnectError: refused)"),
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
