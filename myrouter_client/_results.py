"""What a successful unary call returns when the caller also wants its request id."""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

__all__ = ["WithRequestId"]

T = TypeVar("T")


class WithRequestId(NamedTuple, Generic[T]):
    """An answer and the ``x-request-id`` the bridge sent with it (for logs and support).

    ``completion, request_id = client.create_with_request_id(request)``.
    """

    value: T
    request_id: str | None
