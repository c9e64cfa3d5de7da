"""bridge.upstream_call on its own: how an RPC's metadata and deadline become its upstream call.

A stand-in for the servicer context carries the metadata and the time left;
the same rules through a real bridge are in test_service_auth.py,
test_service_deadlines.py, test_service_validation.py and test_propagation.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import BridgeConfig, Secret
from bridge.errors import InvalidRequest, MissingCredentials, UpstreamTimeout
from bridge.upstream_call import MAX_REQUEST_ID_LENGTH, CallPolicy, request_id


class Context:
    """The two things a policy reads of a grpc.aio.ServicerContext."""

    def __init__(self, *metadata: tuple[str, str], remaining: float | None = None) -> None:
        self.metadata = metadata
        self.remaining = remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def time_remaining(self) -> float | None:
        return self.remaining


def policy(**settings: Any) -> CallPolicy:
    return CallPolicy(BridgeConfig(opentelemetry="off", **settings))


def test_the_callers_token_is_sent_as_a_bearer_credential():
    for sent in ("tok-1", "  tok-1 ", "Bearer tok-1"):
        call = policy().call_for(Context(("authorization", sent)), "r")
        assert call.authorization == "Bearer tok-1"
        assert not call.using_service_key


def test_the_service_key_serves_a_caller_without_credentials_and_none_is_refused():
    call = policy(api_key=Secret("svc-key-123")).call_for(Context(), "r")
    assert call.authorization == "Bearer svc-key-123"
    assert call.using_service_key
    with pytest.raises(
        MissingCredentials, match=r"give the bridge MYROUTER_API_KEY \(or --api-key-file\)"
    ):
        policy().call_for(Context(), "r")


def test_the_time_budget_is_the_cap_or_the_deadline_less_the_margin():
    config = {"request_timeout": 30.0, "api_key": Secret("svc-key-123")}
    assert policy(**config).call_for(Context(), "r").timeout == 30.0
    near = policy(**config).call_for(Context(remaining=2.0), "r")
    assert near.timeout == pytest.approx(2.0 - BridgeConfig().deadline_margin)
    with pytest.raises(UpstreamTimeout):
        policy(**config).call_for(Context(remaining=0.01), "r")


def test_trace_headers_and_configured_keys_ride_along_and_nothing_else():
    context = Context(
        ("authorization", "tok"),
        ("traceparent", "00-abc-def-01"),
        ("x-tenant", "t1"),
        ("x-other", "no"),
    )
    call = policy(propagate_headers=("x-tenant",)).call_for(context, "r")
    assert dict(call.extra_headers) == {"traceparent": "00-abc-def-01", "x-tenant": "t1"}
    assert call.headers()["x-request-id"] == "r"


def test_the_callers_request_id_is_kept_when_usable_and_refused_when_not():
    assert request_id(Context(("x-request-id", "abc-1"))) == "abc-1"
    for unusable in ("", "x" * (MAX_REQUEST_ID_LENGTH + 1), "caf\u00e9", "a\nb"):
        context = Context(("authorization", "tok"), ("x-request-id", unusable))
        fresh = request_id(context)
        assert fresh != unusable and len(fresh) == 32  # a refused call still names an id
        with pytest.raises(InvalidRequest, match="x-request-id"):
            policy().call_for(context, fresh)


def test_a_bad_request_id_is_refused_before_missing_credentials():
    with pytest.raises(InvalidRequest):
        policy().call_for(Context(("x-request-id", "")), "r")


@pytest.mark.parametrize("key", ["authorization", "traceparent", "baggage", "x-tenant"])
@pytest.mark.parametrize("value", ["tok\r\nx-evil: 1", "tok\x00", "tok\x7f", "t\u00e9", "tok\tx"])
def test_a_forwarded_header_that_is_not_printable_ascii_is_refused_by_name(key, value):
    credentials = () if key == "authorization" else (("authorization", "tok"),)
    context = Context(*credentials, (key, value))
    with pytest.raises(InvalidRequest) as caught:
        policy(propagate_headers=("x-tenant",)).call_for(context, "r")
    assert caught.value.violations[0][0] == key
    assert value not in caught.value.message


@pytest.mark.parametrize("value", ["", " ", "   ", "Bearer", "bearer  ", "Basic"])
def test_an_authorization_without_a_credential_is_refused_not_taken_as_absent(value):
    with pytest.raises(InvalidRequest, match="authorization"):
        policy(api_key=Secret("svc-key-123")).call_for(Context(("authorization", value)), "r")


def test_bytes_metadata_is_never_forwarded_nor_checked():
    context = Context(("authorization", "tok"), ("traceparent-bin", b"\x00\xff"))  # type: ignore[arg-type]
    assert dict(policy().call_for(context, "r").extra_headers) == {}


@pytest.mark.parametrize(("sent", "retry"), [(None, True), ("on", True), ("OFF", False)])
def test_a_caller_opts_out_of_retries_by_metadata_which_is_never_forwarded(sent, retry):
    metadata = () if sent is None else (("x-bridge-retry", sent),)
    call = policy(api_key=Secret("k")).call_for(Context(*metadata), "r", "a/model")
    assert (call.retry, call.model) == (retry, "a/model")
    assert "x-bridge-retry" not in call.headers()


def test_an_unknown_opt_out_value_is_refused_by_name():
    with pytest.raises(InvalidRequest, match="x-bridge-retry"):
        policy(api_key=Secret("k")).call_for(Context(("x-bridge-retry", "sometimes")), "r")
