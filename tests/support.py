"""Helpers shared by the integration tests (imported as `support`)."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc


def stub_for(target: str) -> tuple[grpc.Channel, chat_pb2_grpc.ChatServiceStub]:
    channel = grpc.insecure_channel(target)
    return channel, chat_pb2_grpc.ChatServiceStub(channel)


def chat_request(
    prompt: str = "hello there", *, model: str = "myrouter/echo", **fields: Any
) -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        model=model,
        messages=[chat_pb2.ChatMessage(role="user", content=prompt)],
        **fields,
    )


def with_scenario(
    request: chat_pb2.ChatCompletionRequest, **scenario: Any
) -> chat_pb2.ChatCompletionRequest:
    """Select an embedded-upstream fault scenario through the request's `extra` passthrough."""
    request.extra.update({"scenario": scenario})
    return request


def details_of(error: grpc.RpcError) -> dict[str, Any]:
    """The rich status details of a failed call, unpacked by type name."""
    status = rpc_status.from_call(error)
    found: dict[str, Any] = {}
    if status is None:
        return found
    for detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
        ):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found[cls.__name__] = message
    return found


def metadata_dict(metadata: Any) -> dict[str, str]:
    return {item[0]: item[1] for item in metadata or ()}


CALLER_TOKEN = "caller-token-0123456789"
SERVICE_KEY = "service-key-9876543210"
CALLER_METADATA = (("authorization", f"Bearer {CALLER_TOKEN}"),)
