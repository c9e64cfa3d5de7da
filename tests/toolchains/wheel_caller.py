"""A Python caller that has installed only the wheel (run by test_client_wheel in a fresh venv).

It must not import anything from the source tree: the test runs it from a
temporary directory with a venv holding the wheel, grpcio, protobuf and
googleapis-common-protos, and nothing else. It prints one JSON object.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from importlib import resources
from typing import Any

import grpc

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from myrouter_client import (
    BadRequestError,
    ChatCallError,
    Client,
    RateLimitError,
    build_request,
    chat_request,
    create_chat,
    stream_chat,
)


async def _async_calls(target: str, token: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        text = []
        request = chat_request("myrouter/echo", "hello wheel", max_tokens=50)
        async for chunk in stream_chat(
            channel, request, token=token, request_id="wheel-1", deadline=20
        ):
            text += [choice.delta.content for choice in chunk.choices]
            if chunk.HasField("usage"):
                found["total_tokens"] = chunk.usage.total_tokens
        found["stream"] = "".join(text)
        completion = await create_chat(channel, chat_request("myrouter/echo", "whole"), token=token)
        found["unary"] = completion.choices[0].message.content
        limited = chat_request(
            "myrouter/echo",
            "x",
            extra={"scenario": {"kind": "status", "status": 429, "retry_after": 3}},
        )
        try:
            async for _ in stream_chat(channel, limited, token=token, request_id="wheel-2"):
                pass
        except ChatCallError as exc:
            found["error"] = {
                "code": exc.code.name,
                "reason": exc.reason,
                "http_status": exc.metadata.get("http_status"),
                "retry_delay": exc.retry_delay,
                "request_id": exc.request_id,
                "is_grpc_error": isinstance(exc.__cause__, grpc.RpcError),
                "class": type(exc).__name__,
            }
    return found


def _sync_calls(target: str, token: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with Client(target, token=token, deadline=20) as client:
        request = build_request("myrouter/echo", [("system", "short"), ("user", "sync")])
        completion, found["sync_request_id"] = client.create_with_request_id(
            request, request_id="wheel-3"
        )
        found["sync"] = completion.choices[0].message.content
        limited = build_request(
            "myrouter/echo",
            [("user", "x")],
            extra={"scenario": {"kind": "status", "status": 429, "retry_after": 3}},
        )
        try:
            client.create(limited, request_id="wheel-4")
        except RateLimitError as exc:
            found["sync_error"] = [type(exc).__name__, exc.reason, exc.retry_delay, exc.request_id]
    with grpc.insecure_channel(target) as channel:  # a plain stub's failure, decoded
        try:
            chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(
                chat_pb2.ChatCompletionRequest(model="m"), timeout=20
            )
        except grpc.RpcError as exc:
            error = ChatCallError.from_rpc_error(exc)
            found["stub_error"] = [
                isinstance(error, BadRequestError),
                error.reason,
                "messages" in [field for field, _ in error.field_violations],
                bool(error.request_id),
            ]
    return found


def main(target: str, token: str) -> None:
    found = asyncio.run(_async_calls(target, token))
    found.update(_sync_calls(target, token))
    with grpc.insecure_channel(target) as channel:  # the plain generated stubs work too
        models = chat_pb2_grpc.ChatServiceStub(channel).ListModels(
            chat_pb2.ListModelsRequest(), metadata=[("authorization", token)], timeout=20
        )
    found["models"] = [model.id for model in models.data]
    found["shipped"] = sorted(
        entry.name
        for entry in resources.files("myrouter.chat.v1").iterdir()
        if entry.name.endswith((".proto", ".pyi", ".py"))
    )
    found["stubs_from"] = chat_pb2.__file__
    found["httpx_installed"] = importlib.util.find_spec("httpx") is not None
    found["grpc_status_installed"] = importlib.util.find_spec("grpc_status") is not None
    print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
