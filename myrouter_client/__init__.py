"""A Python client for the MyRouter gRPC bridge, shaped like openai-python.

The generated stubs (``myrouter.chat.v1.chat_pb2`` / ``chat_pb2_grpc``) are the
contract and are shipped in the same wheel, with ``chat.proto`` beside them.
This package adds what every caller would otherwise write: a `Client` and an
`AsyncClient` holding a channel sized to the bridge's limits, the token and an
optional retry policy; `build_request` from a conversation; one exception per
kind of failure (`RateLimitError`, ...) under `ChatCallError`, with the
google.rpc details decoded; and the request id of every call. It needs nothing
beyond grpcio, protobuf and googleapis-common-protos.

    async with AsyncClient("127.0.0.1:50051", token=key) as client:
        request = build_request("myrouter/echo", [("user", "Hi")])
        try:
            async for chunk in client.stream(request):
                ...
        except RateLimitError as exc:
            exc.retry_delay, exc.request_id
"""

from __future__ import annotations

from ._aio import AsyncChatStream, AsyncClient, create_chat, stream_chat
from ._config import MAX_RECEIVE_BYTES, MAX_SEND_BYTES, Retries, channel_options
from ._errors import (
    ERROR_DOMAIN,
    AuthenticationError,
    BadRequestError,
    ChatCallError,
    DeadlineError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitError,
    UpstreamError,
)
from ._requests import ChatMessageLike, ToolLike, build_request, call_metadata, chat_request
from ._results import WithRequestId
from ._sync import ChatStream, Client

__all__ = [
    "ERROR_DOMAIN",
    "MAX_RECEIVE_BYTES",
    "MAX_SEND_BYTES",
    "AsyncChatStream",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ChatCallError",
    "ChatMessageLike",
    "ChatStream",
    "Client",
    "DeadlineError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitError",
    "Retries",
    "ToolLike",
    "UpstreamError",
    "WithRequestId",
    "build_request",
    "call_metadata",
    "channel_options",
    "chat_request",
    "create_chat",
    "stream_chat",
]
