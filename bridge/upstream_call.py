"""What one RPC asks of the upstream: credentials, time budget, request id, forwarded headers,
its model and whether it may be retried.

Every rule that turns a caller's metadata and deadline into the settings of its
upstream request lives here, decided once per RPC by `CallPolicy.call_for`, so
the servicer never picks a credential or a timeout itself and the upstream
client receives a finished `UpstreamCall`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence

import grpc

from . import otel
from .config import BridgeConfig
from .errors import InvalidRequest, MissingCredentials, UpstreamTimeout
from .propagation import propagated_headers, propagated_keys

__all__ = [
    "ATTEMPT_HEADER",
    "MAX_REQUEST_ID_LENGTH",
    "REQUEST_ID_KEY",
    "RETRY_KEY",
    "CallPolicy",
    "UpstreamCall",
    "request_id",
]

REQUEST_ID_KEY = "x-request-id"
RETRY_KEY = "x-bridge-retry"
"""Caller metadata: ``off`` makes the call one attempt, without fallback; ``on`` (the
default) lets the bridge retry (bridge.retries). Bridge-control metadata (``x-bridge-*``)
is never forwarded upstream (`propagation.check_header_name`)."""
ATTEMPT_HEADER = "x-bridge-attempt"
"""Upstream request header: the attempt's number within its call (1, 2, ...); the
request id stays the call's."""
MAX_REQUEST_ID_LENGTH = 256
_SCHEMES = frozenset({"bearer", "basic", "token", "apikey"})
"""Authorization schemes: one alone, without a credential after it, carries nothing."""

Metadata = Sequence[tuple[str, str | bytes]]
"""A call's invocation metadata, as grpc.aio hands it over."""


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamCall:
    """What one RPC needs of the upstream request, besides the body."""

    authorization: str = dataclasses.field(repr=False)
    """The full Authorization header value."""
    request_id: str
    using_service_key: bool
    """True when `authorization` is the bridge's own key, not the caller's."""
    timeout: float
    """Seconds this call may take in all (caller deadline and configured cap applied)."""
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model: str = ""
    """The model the request names ("" for none): its fallbacks and breaker are chosen by it."""
    retry: bool = True
    """False when the caller opted out (`RETRY_KEY`): one attempt, no fallback."""
    model_allowed: Callable[[str], bool] | None = dataclasses.field(default=None, repr=False)
    """Whether this caller may use a model; fallbacks it may not use are skipped (None: all)."""
    attempts: list[tuple[str, str]] = dataclasses.field(
        default_factory=list, compare=False, repr=False
    )
    """(model, outcome) of each attempt, written by bridge.retries when a call took more
    than one (or its one failed), for the call's log line."""

    def headers(self) -> dict[str, str]:
        return {
            **self.extra_headers,
            "authorization": self.authorization,
            REQUEST_ID_KEY: self.request_id,
        }

    def secrets(self) -> tuple[str, ...]:
        """The credential texts that must never appear in anything we emit."""
        token = self.authorization.split(" ", 1)[-1]
        return (self.authorization, token)


class CallPolicy:
    """The bridge's rules for upstream requests, read from its config once at start-up."""

    __slots__ = ("_caller_header", "_config", "_propagated_keys", "_tracing")

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        # The caller's identity headers name it to the bridge, never to the upstream.
        identity_headers = [s.header for s in config.caller_identity if s.header is not None]
        self._propagated_keys = propagated_keys(config.propagate_headers, identity_headers)
        self._caller_header = config.forward_caller_header
        self._tracing = otel.enabled(config.opentelemetry)

    def call_for(
        self,
        context: grpc.aio.ServicerContext,
        request_id: str,
        model: str = "",
        *,
        caller: str = "",
        model_allowed: Callable[[str], bool] | None = None,
    ) -> UpstreamCall:
        """This RPC's upstream call, or the error that refuses the RPC before it costs anything.

        Checked in this order: a usable x-request-id (InvalidRequest), every other
        header taken from the caller's metadata (InvalidRequest naming the header,
        never quoting its value), credentials (MissingCredentials), the retry
        opt-out (`RETRY_KEY`: InvalidRequest unless on or off), time left before
        the caller's deadline (UpstreamTimeout). `model` is the request's, for its
        fallbacks and breaker (bridge.retries); `model_allowed` (the caller's policy)
        filters the fallbacks. `caller` (its identity) goes upstream in
        ``--forward-caller-header`` when one is set. The metadata is read once
        here, for every check (grpc decodes it anew at each `invocation_metadata`
        call); `request_id` read it before, for the RPC's scope.
        """
        metadata = context.invocation_metadata() or ()
        _check_request_id(metadata)
        forwarded = propagated_headers(metadata, self._propagated_keys)
        for key, value in forwarded.items():
            _check_header(key, value)
        if self._caller_header is not None and caller:
            forwarded[self._caller_header] = caller  # printable ASCII, as bridge.callers checks
        authorization, using_service_key = self._authorization(metadata)
        retry = _retry_wanted(metadata)
        config = self._config
        timeout = config.request_timeout
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, remaining - config.deadline_margin)
        if timeout <= 0:
            raise UpstreamTimeout("the call's deadline leaves no time for the upstream request")
        return UpstreamCall(
            authorization=authorization,
            request_id=request_id,
            using_service_key=using_service_key,
            timeout=timeout,
            # The caller's trace headers; with tracing on, our own span's context replaces them.
            extra_headers=otel.inject_current_context(forwarded) if self._tracing else forwarded,
            model=model,
            retry=retry,
            model_allowed=model_allowed,
        )

    def _authorization(self, metadata: Metadata) -> tuple[str, bool]:
        """The Authorization header and whether it is the bridge's own service key.

        Metadata ``authorization`` that is sent but carries no credential (empty,
        blank, or a scheme alone such as ``Bearer``) is refused, not taken as
        absent: serving it with the service key would bill the operator for a
        caller whose own credential went missing on the way.
        """
        authorization = _metadata_value(metadata, "authorization")
        if authorization is not None:
            _check_header("authorization", authorization)
            authorization = authorization.strip()
            scheme, _, credential = authorization.partition(" ")
            if not credential.strip():
                if not scheme or scheme.lower() in _SCHEMES:
                    raise InvalidRequest(
                        [("authorization", "carries no credential: send a token or leave it out")]
                    )
                return f"Bearer {scheme}", False
            return authorization, False
        if self._config.api_key is not None:
            return f"Bearer {self._config.api_key.value}", True
        raise MissingCredentials(
            "no authorization metadata was sent and the bridge has no service key configured: "
            "send authorization: Bearer <token>, or give the bridge MYROUTER_API_KEY "
            "(or --api-key-file)"
        )


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's x-request-id if usable, else a fresh one.

    Known before anything else about the RPC, so that even a refused call names
    its id; an unusable one sent by the caller is refused by `CallPolicy.call_for`.
    """
    value = _metadata_value(context.invocation_metadata(), REQUEST_ID_KEY)
    if value is not None and _usable_request_id(value):
        return value
    return uuid.uuid4().hex


def _usable_request_id(value: str) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID_LENGTH and _usable_header_value(value)


def _usable_header_value(value: str) -> bool:
    """Printable ASCII only: no CR/LF (header injection), no control or non-ASCII bytes.

    A raw HTTP/2 caller can put any bytes in metadata that grpc's own clients
    refuse to send; none of them may reach (or break) the upstream request.
    """
    return value.isascii() and value.isprintable()


def _retry_wanted(metadata: Metadata) -> bool:
    value = _metadata_value(metadata, RETRY_KEY)
    if value is None:
        return True
    wanted = value.strip().lower()
    if wanted not in ("on", "off"):
        raise InvalidRequest([(RETRY_KEY, "must be on or off")])
    return wanted == "on"


def _check_request_id(metadata: Metadata) -> None:
    value = _metadata_value(metadata, REQUEST_ID_KEY)
    if value is not None and not _usable_request_id(value):
        raise InvalidRequest(
            [(REQUEST_ID_KEY, f"must be 1 to {MAX_REQUEST_ID_LENGTH} printable ASCII characters")]
        )


def _check_header(key: str, value: str) -> None:
    if not _usable_header_value(value):
        raise InvalidRequest(
            [(key, "must be printable ASCII characters (it becomes an HTTP header)")]
        )


def _metadata_value(metadata: Metadata | None, key: str) -> str | None:
    for item in metadata or ():
        if item[0] == key:
            value = item[1]
            return value if isinstance(value, str) else None
    return None
