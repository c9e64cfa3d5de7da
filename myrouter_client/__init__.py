"""A thin, optional helper for Python callers of the MyRouter gRPC bridge.

The generated stubs (``myrouter.chat.v1.chat_pb2`` / ``chat_pb2_grpc``) are the
real client and are shipped in the same wheel, with ``chat.proto`` beside them.
This package only spares a caller the two chores every caller repeats: putting
the token and request id into metadata, and digging the google.rpc details out
of a failed call. It needs nothing beyond grpcio, protobuf and
googleapis-common-protos, so a caller pays for none of the bridge's own
dependencies when it imports it.

    async with grpc.aio.insecure_channel("127.0.0.1:50051") as channel:
        try:
            async for chunk in stream_chat(channel, chat_request("myrouter/echo", "Hi")):
                ...
        except ChatCallError as exc:
            exc.code, exc.reason, exc.retry_delay, exc.request_id
"""

from __future__ import annotations

from ._aio import call_metadata, chat_request, create_chat, stream_chat
from ._errors import ERROR_DOMAIN, ChatCallError

__all__ = [
    "ERROR_DOMAIN",
    "ChatCallError",
    "call_metadata",
    "chat_request",
    "create_chat",
    "stream_chat",
]
