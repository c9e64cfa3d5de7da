"""The exceptions a call raises: one per kind of failure, all carrying the decoded status.

    ChatCallError                any call that did not end OK   (the codes below not)
    ├── BadRequestError          caller must fix the request    INVALID_ARGUMENT, OUT_OF_RANGE
    ├── AuthenticationError      caller must authenticate       UNAUTHENTICATED
    ├── PermissionDeniedError    the key may not do this        PERMISSION_DENIED
    ├── NotFoundError            no such model (or resource)    NOT_FOUND
    ├── PreconditionFailedError  e.g. no credits (HTTP 402)     FAILED_PRECONDITION
    ├── RateLimitError           wait retry_delay, or try later RESOURCE_EXHAUSTED
    ├── DeadlineError            no answer within the deadline  DEADLINE_EXCEEDED
    └── UpstreamError            the bridge or the API failed   UNAVAILABLE, INTERNAL,
                                                                UNKNOWN, DATA_LOSS

Classified by who must act, like the bridge's own errors (docs/status-codes.md):
``except RateLimitError`` reads like openai-python's, and ``except ChatCallError``
still catches them all. The details are read from the ``grpc-status-details-bin``
trailer with google.rpc's status_pb2 directly, not grpc_status, which is not a
dependency of the client wheel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "ERROR_DOMAIN",
    "AuthenticationError",
    "BadRequestError",
    "ChatCallError",
    "DeadlineError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitError",
    "UpstreamError",
    "request_id_of",
]

ERROR_DOMAIN = "bridge.myrouter.example"
"""The ErrorInfo domain of every error the bridge itself reports."""

_DETAILS_KEY = "grpc-status-details-bin"
_REQUEST_ID_KEY = "x-request-id"


class ChatCallError(Exception):
    """A call to the bridge failed. Carries everything the status said, decoded.

    ``code`` is what to branch on (docs/status-codes.md says what each
    means), or the subclass; ``reason`` and ``metadata`` come from
    google.rpc.ErrorInfo (for example ``metadata["http_status"]``, the upstream's
    HTTP status); ``retry_delay`` from google.rpc.RetryInfo, set when the API
    asked callers to wait; ``field_violations`` from google.rpc.BadRequest. It
    subclasses Exception rather than grpc.RpcError so that a caller's ``except
    grpc.RpcError`` does not swallow it silently by accident; the RpcError is its
    ``__cause__``.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        status: status_pb2.Status | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.error_info: error_details_pb2.ErrorInfo | None = None
        self.retry_info: error_details_pb2.RetryInfo | None = None
        self.bad_request: error_details_pb2.BadRequest | None = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                self.error_info = error_details_pb2.ErrorInfo()
                detail.Unpack(self.error_info)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                self.retry_info = error_details_pb2.RetryInfo()
                detail.Unpack(self.retry_info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                self.bad_request = error_details_pb2.BadRequest()
                detail.Unpack(self.bad_request)

    @property
    def reason(self) -> str | None:
        """ErrorInfo.reason, for example UPSTREAM_HTTP_ERROR or INVALID_REQUEST."""
        return self.error_info.reason if self.error_info is not None else None

    @property
    def metadata(self) -> dict[str, str]:
        """ErrorInfo.metadata: http_status, code, request_id, provider_name, ..."""
        return dict(self.error_info.metadata) if self.error_info is not None else {}

    @property
    def retry_delay(self) -> float | None:
        """Seconds to wait before retrying, when the API said so (RetryInfo)."""
        if self.retry_info is None:
            return None
        return float(self.retry_info.retry_delay.ToTimedelta().total_seconds())

    @property
    def field_violations(self) -> list[tuple[str, str]]:
        """(field, description) pairs of an invalid request (BadRequest)."""
        if self.bad_request is None:
            return []
        return [(v.field, v.description) for v in self.bad_request.field_violations]

    @classmethod
    def from_parts(
        cls,
        code: grpc.StatusCode,
        message: str,
        trailing_metadata: Iterable[Any] | None,
        initial_metadata: Iterable[Any] | None = None,
    ) -> ChatCallError:
        """Build one from what any gRPC call (sync or aio) exposes once it has failed.

        Called on ChatCallError, it builds the subclass for the code. The request id
        is in the trailing metadata when the call failed before its first message,
        else in the initial metadata. A details trailer that does not decode is left
        out rather than hiding the status behind a DecodeError.
        """
        status: status_pb2.Status | None = None
        for key, value in trailing_metadata or ():
            if key == _DETAILS_KEY:
                try:
                    status = status_pb2.Status.FromString(value)
                except DecodeError:
                    status = None
        request_id = request_id_of(trailing_metadata) or request_id_of(initial_metadata)
        kind = _CLASS_FOR_CODE.get(code, ChatCallError) if cls is ChatCallError else cls
        return kind(code, message, status=status, request_id=request_id)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ChatCallError:
        """The exception for a failed call of any generated stub, sync or grpc.aio.

        ``raise ChatCallError.from_rpc_error(exc) from exc`` in an ``except
        grpc.RpcError as exc`` around a plain stub call.
        """
        initial = error.initial_metadata() if hasattr(error, "initial_metadata") else None
        return cls.from_parts(
            error.code(), error.details() or "", error.trailing_metadata(), initial
        )


class BadRequestError(ChatCallError):
    """The request breaks a rule (field_violations says which); fix it, do not retry."""


class AuthenticationError(ChatCallError):
    """No usable credentials: the token is missing, malformed or refused."""


class PermissionDeniedError(ChatCallError):
    """The credentials may not do this (or the content was refused)."""


class NotFoundError(ChatCallError):
    """The model (or other resource) named does not exist."""


class PreconditionFailedError(ChatCallError):
    """The account cannot serve the call as it is, for example no credits left (HTTP 402)."""


class RateLimitError(ChatCallError):
    """Too many calls: wait ``retry_delay`` seconds when set, or go elsewhere.

    Also the bridge's own BRIDGE_OVERLOADED, and an answer over a size cap
    (``reason`` tells them apart: only the API's rate limit carries a retry_delay).
    """


class DeadlineError(ChatCallError):
    """No answer within the deadline (the caller's, or the bridge's upstream timeout)."""


class UpstreamError(ChatCallError):
    """The bridge or the API behind it failed; asking again later may work.

    Without ErrorInfo (``reason`` is None) the bridge itself was not reached.
    """


_CLASS_FOR_CODE: Mapping[grpc.StatusCode, type[ChatCallError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: BadRequestError,
    grpc.StatusCode.OUT_OF_RANGE: BadRequestError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineError,
    grpc.StatusCode.UNAVAILABLE: UpstreamError,
    grpc.StatusCode.INTERNAL: UpstreamError,
    grpc.StatusCode.UNKNOWN: UpstreamError,
    grpc.StatusCode.DATA_LOSS: UpstreamError,
}
"""Codes without an entry (CANCELLED, ABORTED, UNIMPLEMENTED) raise ChatCallError itself."""


def request_id_of(metadata: Iterable[Any] | None) -> str | None:
    """The ``x-request-id`` in call metadata (initial or trailing), or None."""
    for key, value in metadata or ():
        if key == _REQUEST_ID_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
