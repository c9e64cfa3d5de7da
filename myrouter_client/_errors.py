"""The one exception a helper call raises: the gRPC status with its google.rpc details decoded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = ["ERROR_DOMAIN", "ChatCallError"]

ERROR_DOMAIN = "bridge.myrouter.example"
"""The ErrorInfo domain of every error the bridge itself reports."""

_DETAILS_KEY = "grpc-status-details-bin"


class ChatCallError(Exception):
    """A call to the bridge failed. Carries everything the status said, decoded.

    ``code`` is what to branch on (docs/status-codes.md says what each
    means); ``reason`` and ``metadata`` come from google.rpc.ErrorInfo (for
    example ``metadata["http_status"]``, the upstream's HTTP status);
    ``retry_delay`` from google.rpc.RetryInfo, set when the API asked callers to
    wait; ``field_violations`` from google.rpc.BadRequest. It subclasses
    Exception rather than grpc.RpcError so that a caller's ``except
    grpc.RpcError`` does not swallow it silently by accident.
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
        cls, code: grpc.StatusCode, message: str, trailing_metadata: Iterable[Any] | None
    ) -> ChatCallError:
        """Build one from what any gRPC call (sync or aio) exposes once it has failed."""
        status: status_pb2.Status | None = None
        request_id: str | None = None
        for key, value in trailing_metadata or ():
            if key == _DETAILS_KEY:
                status = status_pb2.Status.FromString(value)
            elif key == "x-request-id":
                request_id = value
        return cls(code, message, status=status, request_id=request_id)
