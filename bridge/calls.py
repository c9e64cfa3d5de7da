"""What one RPC asks of the upstream: credentials, time budget, request id, forwarded headers.

Every rule that turns a caller's metadata and deadline into the settings of its
upstream request lives here, decided once per RPC by `CallPolicy.call_for`, so
the servicer never picks a credential or a timeout itself and the upstream
client receives a finished `UpstreamCall`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping

import grpc

from . import otel
from .config import BridgeConfig
from .errors import InvalidRequest, MissingCredentials, UpstreamTimeout
from .propagation import propagated_headers, propagated_keys

__all__ = ["MAX_REQUEST_ID_LENGTH", "REQUEST_ID_KEY", "CallPolicy", "UpstreamCall", "request_id"]

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_LENGTH = 256


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

    __slots__ = ("_config", "_propagated_keys", "_tracing")

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._propagated_keys = propagated_keys(config.propagate_headers)
        self._tracing = otel.enabled(config.opentelemetry)

    def call_for(self, context: grpc.aio.ServicerContext, request_id: str) -> UpstreamCall:
        """This RPC's upstream call, or the error that refuses the RPC before it costs anything.

        Checked in this order: a usable x-request-id (InvalidRequest), credentials
        (MissingCredentials), time left before the caller's deadline (UpstreamTimeout).
        """
        _check_request_id(context)
        authorization, using_service_key = self._authorization(context)
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
            extra_headers=self._forwarded_headers(context),
        )

    def _authorization(self, context: grpc.aio.ServicerContext) -> tuple[str, bool]:
        """The Authorization header and whether it is the bridge's own service key."""
        authorization = _metadata_value(context, "authorization")
        if authorization:
            authorization = authorization.strip()
            return (authorization if " " in authorization else f"Bearer {authorization}"), False
        if self._config.api_key is not None:
            return f"Bearer {self._config.api_key.value}", True
        raise MissingCredentials(
            "no authorization metadata was sent and the bridge has no service key configured"
        )

    def _forwarded_headers(self, context: grpc.aio.ServicerContext) -> dict[str, str]:
        """The caller's trace headers; with tracing on, our own span's context replaces them."""
        headers = propagated_headers(context.invocation_metadata(), self._propagated_keys)
        return otel.inject_current_context(headers) if self._tracing else headers


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's x-request-id if usable, else a fresh one.

    Known before anything else about the RPC, so that even a refused call names
    its id; an unusable one sent by the caller is refused by `CallPolicy.call_for`.
    """
    value = _metadata_value(context, REQUEST_ID_KEY)
    if value is not None and _usable_request_id(value):
        return value
    return uuid.uuid4().hex


def _usable_request_id(value: str) -> bool:
    return 0 < len(value) <= MAX_REQUEST_ID_LENGTH and value.isascii() and value.isprintable()


def _check_request_id(context: grpc.aio.ServicerContext) -> None:
    value = _metadata_value(context, REQUEST_ID_KEY)
    if value is not None and not _usable_request_id(value):
        raise InvalidRequest(
            [(REQUEST_ID_KEY, f"must be 1 to {MAX_REQUEST_ID_LENGTH} printable ASCII characters")]
        )


def _metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value if isinstance(value, str) else None
    return None
