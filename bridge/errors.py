"""The bridge's exception hierarchy and the one place it becomes a gRPC status.

    BridgeError                      anything the bridge reports to a caller
    ├── InvalidRequest               caller must fix the request      INVALID_ARGUMENT
    ├── UndecodableRequest           request bytes do not decode      INVALID_ARGUMENT
    ├── RequestTooLarge              request over --max-request-bytes RESOURCE_EXHAUSTED
    ├── MissingCredentials           caller must authenticate         UNAUTHENTICATED
    ├── InvalidCallerIdentity        the caller's identity is malformed UNAUTHENTICATED
    ├── CallerNotAllowed             the policy refuses the caller    PERMISSION_DENIED
    ├── ServiceKeyRejected           operator must fix the key        INTERNAL
    ├── BridgeOverloaded             too many calls at once           RESOURCE_EXHAUSTED
    ├── QuotaExceeded                the caller is over its limits    RESOURCE_EXHAUSTED
    ├── LimitsUnavailable            limits store down, fail closed   UNAVAILABLE
    ├── ShuttingDown                 the bridge is draining           UNAVAILABLE
    ├── UpstreamError                the upstream failed the call
    │   ├── UpstreamHTTPError        an HTTP error status             (status table)
    │   ├── UpstreamReportedError    an "error" object in a 200 body  (code table)
    │   ├── UpstreamUnavailable      cannot connect / connection lost UNAVAILABLE
    │   │   └── UpstreamUnreachable  no connection: nothing was sent    UNAVAILABLE
    │   ├── UpstreamCircuitOpen      the model's breaker is open      UNAVAILABLE
    │   ├── UpstreamTimeout          no answer in time                DEADLINE_EXCEEDED
    │   └── UpstreamProtocolError    broken stream or body            UNAVAILABLE
    │       └── UpstreamTooLarge     answer or event over a cap       RESOURCE_EXHAUSTED
    └── (any other exception)        our bug                          INTERNAL, generic text

Classification is by who must act, so that a mesh and a caller can decide
whether to retry, fix their request, or page someone. `to_status` is the only
function that turns an exception into a status; the services never pick codes.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "ERROR_CODE_NAMES_TO_GRPC",
    "ERROR_DOMAIN",
    "HTTP_STATUS_TO_GRPC",
    "MAX_MESSAGE_CHARS",
    "MAX_RETRY_DELAY_SECONDS",
    "BridgeError",
    "BridgeOverloaded",
    "CallerNotAllowed",
    "InvalidCallerIdentity",
    "InvalidRequest",
    "LimitsUnavailable",
    "MissingCredentials",
    "QuotaExceeded",
    "QuotaViolation",
    "RequestTooLarge",
    "ServiceKeyRejected",
    "ShuttingDown",
    "UndecodableRequest",
    "UpstreamCircuitOpen",
    "UpstreamError",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamReportedError",
    "UpstreamTimeout",
    "UpstreamTooLarge",
    "UpstreamUnavailable",
    "UpstreamUnreachable",
    "error_code_text",
    "grpc_code_for_error_code",
    "grpc_code_for_http_status",
    "numeric_error_code",
    "parse_retry_after",
    "to_status",
]

log = logging.getLogger("bridge.errors")

ERROR_DOMAIN = "bridge.myrouter.example"
MAX_MESSAGE_CHARS = 1024
MAX_RETRY_DELAY_SECONDS = 24 * 3600
"""The longest RetryInfo delay the bridge reports: an upstream's Retry-After beyond it
(1e300, 2**63, a date in the year 9999) is this cap, never an overflow."""

HTTP_STATUS_TO_GRPC: Mapping[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.FAILED_PRECONDITION,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""Upstream HTTP status -> gRPC code. Other 4xx: FAILED_PRECONDITION; anything else that
is not 200 (other 5xx, 1xx, 204 and the other 2xx, 3xx): UNAVAILABLE."""

ERROR_CODE_NAMES_TO_GRPC: Mapping[str, grpc.StatusCode] = {
    "invalid_request_error": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_request": grpc.StatusCode.INVALID_ARGUMENT,
    "bad_request": grpc.StatusCode.INVALID_ARGUMENT,
    "context_length_exceeded": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_prompt": grpc.StatusCode.INVALID_ARGUMENT,
    "authentication_error": grpc.StatusCode.UNAUTHENTICATED,
    "invalid_api_key": grpc.StatusCode.UNAUTHENTICATED,
    "unauthorized": grpc.StatusCode.UNAUTHENTICATED,
    "payment_required": grpc.StatusCode.FAILED_PRECONDITION,
    "insufficient_credits": grpc.StatusCode.FAILED_PRECONDITION,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "permission_error": grpc.StatusCode.PERMISSION_DENIED,
    "forbidden": grpc.StatusCode.PERMISSION_DENIED,
    "content_filter": grpc.StatusCode.PERMISSION_DENIED,
    "moderation": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "model_not_found": grpc.StatusCode.NOT_FOUND,
    "not_found_error": grpc.StatusCode.NOT_FOUND,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "request_timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "gateway_timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "conflict": grpc.StatusCode.ABORTED,
    "rate_limit_exceeded": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "rate_limit_error": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "rate_limited": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "too_many_requests": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "insufficient_quota": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "cancelled": grpc.StatusCode.CANCELLED,
    "server_error": grpc.StatusCode.INTERNAL,
    "internal_error": grpc.StatusCode.INTERNAL,
    "api_error": grpc.StatusCode.INTERNAL,
    "not_implemented": grpc.StatusCode.UNIMPLEMENTED,
    "unsupported": grpc.StatusCode.UNIMPLEMENTED,
    "bad_gateway": grpc.StatusCode.UNAVAILABLE,
    "service_unavailable": grpc.StatusCode.UNAVAILABLE,
    "overloaded": grpc.StatusCode.UNAVAILABLE,
    "overloaded_error": grpc.StatusCode.UNAVAILABLE,
    "provider_error": grpc.StatusCode.UNAVAILABLE,
}
"""Named upstream error codes -> gRPC code; names not listed map to UNAVAILABLE."""


def grpc_code_for_http_status(status: int) -> grpc.StatusCode:
    """The gRPC code for an upstream HTTP error status."""
    code = HTTP_STATUS_TO_GRPC.get(status)
    if code is not None:
        return code
    if status >= 500:
        return grpc.StatusCode.UNAVAILABLE
    if 400 <= status < 500:
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNAVAILABLE  # 1xx, 2xx but 200, 3xx (redirects are not followed)


def numeric_error_code(code: object) -> int | None:
    """The HTTP-status-like number in an upstream error code (429, 429.0, "429"), or None."""
    if isinstance(code, bool):
        return None
    if isinstance(code, float) and code.is_integer():
        return int(code)
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isascii() and code.strip().isdigit():
        return int(code.strip())
    return None


def error_code_text(code: object) -> str:
    """An upstream error code as ErrorInfo reports it: a number in one spelling (429.0 is "429")."""
    numeric = numeric_error_code(code)
    return str(code) if numeric is None else str(numeric)


def grpc_code_for_error_code(code: object) -> grpc.StatusCode:
    """The nearest gRPC code for an upstream error object's code (a number or a name)."""
    numeric = numeric_error_code(code)
    if numeric is not None:
        return grpc_code_for_http_status(numeric)
    if isinstance(code, str):
        return ERROR_CODE_NAMES_TO_GRPC.get(code.strip().lower(), grpc.StatusCode.UNAVAILABLE)
    return grpc.StatusCode.UNAVAILABLE


class BridgeError(Exception):
    """Something the bridge reports to its caller as a non-OK status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    log_level: int = logging.INFO
    """The level of the service's line about the failure (the per-RPC line is always INFO)."""

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        """Rich status details beyond ErrorInfo; subclasses add their own."""
        return []


class InvalidRequest(BridgeError):
    """The caller's request breaks a rule; it was refused before reaching the upstream."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        self.violations = violations
        summary = "; ".join(f"{field}: {why}" for field, why in violations)
        super().__init__(f"invalid request: {summary}")

    def details(self) -> list[any_pb2.Any]:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=why)
                for field, why in self.violations
            ]
        )
        return [_pack(bad_request)]


class UndecodableRequest(BridgeError):
    """The request's bytes are not a valid message of the RPC's request type.

    INVALID_ARGUMENT, where gRPC's guidance suggests INTERNAL for a request that
    does not parse: the caller sent those bytes, and INTERNAL is kept for the
    bridge's own faults. Logged at WARNING (a caller that cannot encode its
    requests is worth noticing), never with the bytes.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UNDECODABLE_REQUEST"
    log_level = logging.WARNING

    def __init__(self, message_type: str) -> None:
        super().__init__(f"the request is not a valid {message_type} (it does not decode)")


class RequestTooLarge(BridgeError):
    """The request message is bigger than ``--max-request-bytes``; nothing was decoded.

    RESOURCE_EXHAUSTED, as grpc itself answers a message over its receive limit
    (and still does beyond the margin the bridge lets it read, see
    `server_options.grpc_receive_limit`): one condition, one code, however far
    over. Not INVALID_ARGUMENT although the caller must act (send less, or have
    the operator raise the setting): no RetryInfo, and RESOURCE_EXHAUSTED is not
    a code a mesh retries by default. The message names the setting, since
    either side may be the one to change. WARNING: an operator may need to.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "REQUEST_TOO_LARGE"
    log_level = logging.WARNING

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the request message is {size} bytes, over the bridge's limit of {limit} "
            "(--max-request-bytes, BRIDGE_MAX_REQUEST_BYTES)",
            metadata={"size_bytes": str(size), "limit_bytes": str(limit)},
        )
        self.size = size
        self.limit = limit


class MissingCredentials(BridgeError):
    """Neither the caller nor the bridge's configuration supplied credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "MISSING_CREDENTIALS"


class InvalidCallerIdentity(BridgeError):
    """What names the caller (its certificate, XFCC, an identity header) is malformed.

    UNAUTHENTICATED, not INVALID_ARGUMENT: the request's fields are fine, its
    authentication is not, and no retry of the same call can succeed. The message
    says which source and why, never the value itself (it could be anything, of
    any length). Logged at WARNING: a broken mesh header is the operator's to see.
    """

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "CALLER_IDENTITY_MALFORMED"
    log_level = logging.WARNING

    def __init__(self, source: str, why: str) -> None:
        super().__init__(
            f"the caller's identity from {source} is malformed: {why}", metadata={"source": source}
        )
        self.source = source


class CallerNotAllowed(BridgeError):
    """The caller policy (bridge/policy.py) refuses this caller, this model, or the service key.

    The caller must act (ask for access, pick another model, send its own
    token), so PERMISSION_DENIED; nothing reached the upstream.
    """

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "CALLER_NOT_ALLOWED"
    REASONS = frozenset({"CALLER_NOT_ALLOWED", "MODEL_NOT_ALLOWED", "SERVICE_KEY_NOT_ALLOWED"})
    """The ErrorInfo reasons it may carry."""

    def __init__(
        self, message: str, *, reason: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"CallerNotAllowed: unknown reason {reason!r}")
        super().__init__(message, metadata=metadata)
        self.reason = reason


class ServiceKeyRejected(BridgeError):
    """The upstream refused the bridge's own service key: the operator's fault, not the caller's."""

    code = grpc.StatusCode.INTERNAL
    reason = "SERVICE_KEY_REJECTED"


class BridgeOverloaded(BridgeError):
    """The bridge already serves its configured maximum of concurrent calls.

    Refused at once rather than queued, so memory stays bounded and the caller
    (or its mesh) can go elsewhere; nothing reached the upstream.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "BRIDGE_OVERLOADED"


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One limit a call would break: its name, its value, and when it frees (None: never)."""

    limit: str
    value: int
    retry_after: float | None


class QuotaExceeded(BridgeError):
    """The caller is over one of its limits (bridge/quotas.py); nothing reached the upstream.

    QuotaFailure names the caller and each limit hit; RetryInfo says when they
    all free, and is absent when waiting cannot help (a reservation bigger than
    the limit itself: the caller must ask for fewer tokens).
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "CALLER_QUOTA_EXCEEDED"

    def __init__(self, caller_key: str, violations: Sequence[QuotaViolation]) -> None:
        self.caller_key = caller_key
        self.violations = tuple(violations)
        names = ",".join(v.limit for v in self.violations)
        summary = "; ".join(f"{v.limit} {v.value}" for v in self.violations)
        super().__init__(
            f"caller {caller_key!r} is over its limits: {summary}", metadata={"limit": names}
        )

    @property
    def retry_after(self) -> float | None:
        """When every limit hit frees: the latest of them, or None when one never does."""
        waits = [v.retry_after for v in self.violations]
        return None if not waits or None in waits else max(w for w in waits if w is not None)

    def details(self) -> list[any_pb2.Any]:
        failure = error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=f"caller:{self.caller_key}",
                    description=_describe(v),
                    quota_id=v.limit,
                    quota_value=v.value,
                )
                for v in self.violations
            ]
        )
        return [_pack(failure), *_retry_info(self.retry_after)]


def _describe(violation: QuotaViolation) -> str:
    text = f"{violation.limit} limit of {violation.value} reached"
    if violation.retry_after is None:
        text = f"the call alone needs more than the {violation.limit} limit of {violation.value}"
        if violation.limit.startswith("tokens"):
            text += " tokens: ask for fewer (max_tokens)"
    return text


class LimitsUnavailable(BridgeError):
    """The shared limits store (Redis) failed and the bridge is set to fail closed.

    UNAVAILABLE: a passing fault of the bridge's infrastructure, which a retry,
    here or on another replica, may clear; nothing reached the upstream. Its line
    stays at INFO: bridge/quotas.py reports the outage itself at WARNING, at most
    once a minute, where a line per refused call would flood the log.
    """

    code = grpc.StatusCode.UNAVAILABLE
    reason = "LIMITS_STORE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the caller limits store is unavailable; try again shortly")


class ShuttingDown(BridgeError):
    """The bridge is shutting down and aborted a call its grace period did not cover."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "BRIDGE_SHUTTING_DOWN"


class UpstreamError(BridgeError):
    """The upstream did not deliver a usable answer."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UPSTREAM_ERROR"


class UpstreamHTTPError(UpstreamError):
    """The upstream answered with an HTTP error status."""

    reason = "UPSTREAM_HTTP_ERROR"

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        upstream_code: object = None,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        meta = {"http_status": str(http_status), **(metadata or {})}
        if upstream_code is not None:
            meta["code"] = error_code_text(upstream_code)
        super().__init__(message, metadata=meta)
        self.http_status = http_status
        self.code = grpc_code_for_http_status(http_status)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        return _retry_info(self.retry_after)


class UpstreamReportedError(UpstreamError):
    """The upstream reported an error object inside a 200 answer (for example mid-stream).

    `event` is the parsed event (or unary answer) that carried the error: a stream
    that has already relayed chunks relays this one too before it ends with the status.
    """

    reason = "UPSTREAM_REPORTED_ERROR"

    def __init__(
        self,
        upstream_code: int | str | None,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> None:
        meta = dict(metadata or {})
        if upstream_code is not None:
            meta["code"] = error_code_text(upstream_code)
            numeric = numeric_error_code(upstream_code)
            if numeric is not None:
                meta["http_status"] = str(numeric)
        super().__init__(message, metadata=meta)
        self.code = grpc_code_for_error_code(upstream_code)
        self.event: Mapping[str, Any] = {} if event is None else event


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached, or the connection broke."""

    reason = "UPSTREAM_UNAVAILABLE"


class UpstreamUnreachable(UpstreamUnavailable):
    """No connection to the upstream opened, so the request never left: unlike a
    connection lost later, it cannot have reached the model (bridge.retries)."""


class UpstreamCircuitOpen(UpstreamError):
    """The model's circuit breaker is open: the call fails fast, nothing is sent.

    UNAVAILABLE with RetryInfo set to the cool-down left, after which the
    breaker lets a few probe calls through (bridge.breaker).
    """

    reason = "UPSTREAM_CIRCUIT_OPEN"

    def __init__(self, model: str, retry_after: float) -> None:
        super().__init__(
            f"the upstream model {model!r} is failing; calls to it are paused for "
            f"{retry_after:.3g} s",
            metadata={"model": model},
        )
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        return _retry_info(self.retry_after)


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the deadline or the configured timeouts."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "UPSTREAM_TIMEOUT"


class UpstreamProtocolError(UpstreamError):
    """The upstream's answer broke the protocol: a cut stream, a malformed event, a bad body."""

    reason = "UPSTREAM_PROTOCOL_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UpstreamTooLarge(UpstreamProtocolError):
    """An upstream answer or stream event exceeds a configured cap.

    RESOURCE_EXHAUSTED, not UNAVAILABLE: asking again would most likely produce
    the same oversized answer, so a mesh must not retry it.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def to_status(exc: BaseException, *, request_id: str | None = None) -> grpc.Status:
    """Turn any exception into the gRPC status (with rich details) the caller receives.

    Unknown exceptions are our bugs: they become INTERNAL with a generic message,
    so that no internal text (which could hold anything) reaches a caller. It
    never raises: should building a status fail (a bug here, or a value from
    outside that no check caught), the caller still gets that INTERNAL status,
    never grpc's UNKNOWN, and the failure is logged.
    """
    if not isinstance(exc, BridgeError):
        exc = _internal_error()
    try:
        return _status(exc, request_id)
    except Exception:
        log.exception("building the status of a %s failed; answering INTERNAL", type(exc).__name__)
        return _status(_internal_error(), request_id)


def _internal_error() -> BridgeError:
    return BridgeError("internal error in the bridge; see its logs")


def _status(exc: BridgeError, request_id: str | None) -> grpc.Status:
    metadata = dict(exc.metadata)
    if request_id:
        metadata["request_id"] = request_id
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=metadata)
    status = status_pb2.Status(
        code=_CODE_NUMBERS[exc.code],
        message=_shorten(exc.message),
        details=[_pack(info), *exc.details()],
    )
    return rpc_status.to_status(status)


_CODE_NUMBERS: Mapping[grpc.StatusCode, int] = {code: code.value[0] for code in grpc.StatusCode}
assert _CODE_NUMBERS[grpc.StatusCode.UNAVAILABLE] == code_pb2.UNAVAILABLE


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_DELAY_SECONDS)


def _retry_info(seconds: float | None) -> list[any_pb2.Any]:
    if seconds is None or not math.isfinite(seconds):
        return []
    seconds = min(max(0.0, seconds), MAX_RETRY_DELAY_SECONDS)  # whoever built the error
    whole = int(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))
    return [_pack(error_details_pb2.RetryInfo(retry_delay=delay))]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _shorten(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"
