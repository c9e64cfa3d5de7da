"""Error bodies in MyRouter's shape, and the exception that carries one to the wire.

Every refusal the upstream produces (auth, validation, unknown model, the
``status`` fault) has the same JSON shape, ``{"error": {"code", "message",
"metadata"?}}``, so it is built in one place and the bridge's error mapping is
exercised against exactly one format.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final

import orjson

__all__ = ["UpstreamError", "default_message", "error_body"]

_DEFAULT_MESSAGES: Final[Mapping[int, str]] = MappingProxyType(
    {
        400: "Bad request",
        401: "Invalid credentials",
        402: "Insufficient credits",
        403: "Forbidden",
        404: "Not found",
        408: "Request timed out",
        413: "Request too large",
        422: "Unprocessable request",
        429: "Rate limit exceeded",
        500: "Internal server error",
        502: "Provider returned error",
        503: "No available provider",
        504: "Gateway timeout",
    }
)


def default_message(status: int) -> str:
    """A short, fixed message for `status`, so error bodies stay deterministic."""
    known = _DEFAULT_MESSAGES.get(status)
    if known is not None:
        return known
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(code: int | str, message: str, metadata: Mapping[str, Any] | None = None) -> bytes:
    """``{"error": {...}}`` as compact JSON; ``metadata`` only when given."""
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return orjson.dumps({"error": error})


class UpstreamError(Exception):
    """A request the upstream refuses; the handler turns it into a JSON error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> bytes:
        """The JSON error body for this refusal."""
        return error_body(self.status, self.message)
