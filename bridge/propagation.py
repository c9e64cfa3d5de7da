"""Which incoming gRPC metadata travels on to the upstream HTTP request.

Istio, Envoy and Linkerd can only join a request's spans into one trace when
the application copies the tracing headers from its inbound request to its
outbound ones; nothing else in the mesh can do it. The W3C and B3 headers (and
the other headers Istio's documentation lists) are copied by default, plus any
keys the operator adds. Binary (`-bin`) metadata cannot become an HTTP header,
headers the bridge sets itself are never taken from the caller, and headers that
tell the bridge who is calling (`x-forwarded-client-cert`, and any header the
operator names as an identity source, bridge/callers.py) never leave it: the
configuration refuses them in ``--propagate-headers``, and `propagated_keys`
drops them should a caller of this module ask anyway. Nor is the bridge's
own control metadata (``x-bridge-*``, such as ``x-bridge-retry``) ever taken.

Pure and cheap: one pass over the metadata with a set lookup per item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "IDENTITY_HEADERS",
    "RESERVED_HEADERS",
    "TRACE_HEADERS",
    "XFCC_HEADER",
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

XFCC_HEADER = "x-forwarded-client-cert"
"""What an Envoy or Istio sidecar says about the caller's client certificate."""

IDENTITY_HEADERS: frozenset[str] = frozenset({XFCC_HEADER})
"""The mesh's word about the caller, for the bridge alone: never forwarded, whether or not
the bridge reads it (an identity source's own header is refused by the configuration)."""

_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def check_header_name(name: str) -> str | None:
    """Why `name` cannot be propagated, or None if it can (for config validation)."""
    if not _HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a lower-case HTTP header name"
    if name in IDENTITY_HEADERS:
        return f"{name!r} tells the bridge who is calling and is never forwarded upstream"
    if name.endswith("-bin"):
        return f"{name!r} is binary metadata, which cannot be sent as an HTTP header"
    if name in RESERVED_HEADERS or name.startswith(("grpc-", ":", "x-bridge-")):
        return f"{name!r} is set by the bridge itself and cannot be propagated"
    return None


def propagated_keys(extra: Iterable[str], withheld: Iterable[str] = ()) -> frozenset[str]:
    """The full set of metadata keys to copy: the trace headers plus `extra`, less `withheld`
    (the identity sources' headers) and the headers that never leave (`IDENTITY_HEADERS`,
    `RESERVED_HEADERS`), whatever `extra` says."""
    return (
        (TRACE_HEADERS | frozenset(extra))
        - IDENTITY_HEADERS
        - RESERVED_HEADERS
        - frozenset(withheld)
    )


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
