"""Trace and request headers: which caller metadata keys may go upstream, and how."""

from __future__ import annotations

import pytest

from bridge.config import BridgeConfig, ConfigError
from bridge.propagation import (
    TRACE_HEADERS,
    check_header_name,
    propagated_headers,
    propagated_keys,
)

pytestmark = pytest.mark.timeout(30)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_copies_only_the_chosen_keys_and_joins_repeats():
    keys = propagated_keys(["x-tenant"])
    metadata: list[tuple[str, str | bytes]] = [
        ("traceparent", TRACEPARENT),
        ("x-tenant", "a"),
        ("x-tenant", "b"),
        ("x-other", "no"),
        ("authorization", "Bearer secret"),
        ("trace-bin", b"\x00\x01"),
    ]
    assert propagated_headers(metadata, keys) == {"traceparent": TRACEPARENT, "x-tenant": "a, b"}
    assert propagated_headers(None, keys) == {}


def test_the_default_set_has_w3c_and_b3():
    assert {"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-sampled"} <= TRACE_HEADERS


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "x-request-id",
        "host",
        "grpc-timeout",
        "trace-bin",
        "Upper",
        "a b",
        "x-bridge-retry",
        "x-bridge-attempt",
    ],
)
def test_names_that_cannot_be_propagated(name):
    assert check_header_name(name) is not None
    with pytest.raises(ConfigError, match="BRIDGE_PROPAGATE_HEADERS"):
        BridgeConfig(propagate_headers=(name,))


def test_a_plain_name_is_accepted():
    assert check_header_name("x-tenant-id") is None


def test_identity_and_reserved_headers_never_leave_whatever_the_keys_say():
    keys = propagated_keys(
        ["x-forwarded-client-cert", "authorization", "l5d-client-id", "x-tenant"],
        withheld=["l5d-client-id"],
    )
    assert keys == TRACE_HEADERS | {"x-tenant"}
    metadata = [("x-forwarded-client-cert", "URI=spiffe://x/y"), ("l5d-client-id", "a.b")]
    assert propagated_headers(metadata, keys) == {}
    assert "never forwarded" in (check_header_name("x-forwarded-client-cert") or "")
