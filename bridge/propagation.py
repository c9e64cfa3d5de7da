"""Which incoming gRPC metadata travels on to the upstream HTTP request.

Istio, Envoy and Linkerd can only join a request's spans into one trace when
the application copies the tracing headers from its inbound request to its
outbound ones; nothing else in the mesh can do it. The W3C and B3 headers (and
the other headers Istio's documentation lists) are copied by default, plus any
keys the operator adds. Binary (`-bin`) metadata cannot become an HTTP header,
and headers the bridge sets itself are never taken from the caller, nor is its own
control metadata (``x-bridge-*``, such as ``x-bridge-retry``).

Pure and cheap: one pass over the metadata with a set lookup per item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "RESERVED_HEADERS",
    "TRACE_HEADERS",
    "check_header_name",
    "propagated_headers",
    "propagated_keys",
]

TRACE_HEADERS: frozenset[str] = frozenset(
    {
        # W3C Trace Context and Baggage
        "traceparent",
        "tracestate",
        "baggage",
        # Zipkin B3, multi-header and single-header
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "b3",
        # others Istio asks applications to propagate
        "x-ot-span-context",
        "x-cloud-trace-context",
        "traceparent-ext",
        "sw8",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    }
)
"""Copied from the caller's metadata to the upstream request by default."""

RESERVED_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "x-request-id",
        "host",
        "content-type",
        "content-length",
        "accept",
        "user-agent",
        "connection",
        "transfer-encoding",
        "te",
        "keep-alive",
        "upgrade",
        "proxy-authorization",
        "cookie",
    }
)
"""Headers the bridge sets itself (or must never forward); no configuration can add them."""

_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def check_header_name(name: str) -> str | None:
    """Why `name` cannot be propagated, or None if it can (for config validation)."""
    if not _HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a lower-case HTTP header name"
    if name.endswith("-bin"):
        return f"{name!r} is binary metadata, which cannot be sent as an HTTP header"
    if name in RESERVED_HEADERS or name.startswith(("grpc-", ":", "x-bridge-")):
        return f"{name!r} is set by the bridge itself and cannot be propagated"
    return None


def propagated_keys(extra: Iterable[str]) -> frozenset[str]:
    """The full set of metadata keys to copy: the trace headers plus `extra`."""
    return TRACE_HEADERS | frozenset(extra)


def propagated_headers(
    metadata: Iterable[tuple[str, str | bytes]] | None, keys: frozenset[str]
) -> dict[str, str]:
    """The upstream headers copied from `metadata`; repeated keys are joined with ", "."""
    headers: dict[str, str] = {}
    for key, value in metadata or ():
        if key in keys and isinstance(value, str):
            previous = headers.get(key)
            headers[key] = value if previous is None else f"{previous}, {value}"
    return headers
