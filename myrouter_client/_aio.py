"""stream_chat and create_chat over a grpc.aio channel, raising ChatCallError on failure."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any

import grpc

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

from ._errors import ChatCallError

__all__ = ["call_metadata", "chat_request", "create_chat", "stream_chat"]


def chat_request(
    model: str,
    prompt: str,
    *,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    extra: dict[str, Any] | None = None,
) -> chat_pb2.ChatCompletionRequest:
    """The common request: an optional system message, then one user message."""
    messages = [chat_pb2.ChatMessage(role="system", content=system)] if system else []
    messages.append(chat_pb2.ChatMessage(role="user", content=prompt))
    request = chat_pb2.ChatCompletionRequest(model=model, messages=messages)
    if max_tokens is not None:
        request.max_tokens = max_tokens
    if temperature is not None:
        request.temperature = temperature
    if extra:
        request.extra.update(extra)
    return request


def call_metadata(token: str | None, request_id: str | None = None) -> list[tuple[str, str]]:
    """The metadata of a call: ``authorization: Bearer <token>`` and ``x-request-id``, if given.

    For sync stubs and other RPCs (ListModels) what `stream_chat` and `create_chat` send.
    """
    metadata = []
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    if request_id:
        metadata.append(("x-request-id", request_id))
    return metadata


async def _error_from(call: Any, exc: grpc.RpcError) -> ChatCallError:
    """The status of a failed aio call; the request id may have come in the initial metadata."""
    error = ChatCallError.from_parts(exc.code(), exc.details() or "", exc.trailing_metadata())
    if error.request_id is None:
        initial: Iterable[Any] = await call.initial_metadata() or ()
        error.request_id = next((v for k, v in initial if k == "x-request-id"), None)
    return error


async def stream_chat(
    channel: grpc.aio.Channel,
    request: chat_pb2.ChatCompletionRequest,
    *,
    token: str | None = None,
    request_id: str | None = None,
    deadline: float | None = None,
) -> AsyncGenerator[chat_pb2.ChatCompletionChunk, None]:
    """Yield each chunk as it arrives; raise ChatCallError if the call does not end OK.

    ``deadline`` is in seconds and travels with the call, so the bridge bounds
    its upstream request by it too (unlike a local asyncio timeout).

    A chunk whose ``error`` field is set (the API reported an error mid-stream)
    is yielded like any other, and the ChatCallError follows it. Closing the
    generator early (``async with contextlib.aclosing(stream_chat(...))``, or
    closing the channel) cancels the call, so the bridge stops the upstream
    request and no more tokens are generated or billed.
    """
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        request, metadata=call_metadata(token, request_id), timeout=deadline
    )
    try:
        async for chunk in call:
            yield chunk
    except grpc.RpcError as exc:
        raise await _error_from(call, exc) from exc
    finally:
        call.cancel()  # a no-op once the call has ended


async def create_chat(
    channel: grpc.aio.Channel,
    request: chat_pb2.ChatCompletionRequest,
    *,
    token: str | None = None,
    request_id: str | None = None,
    deadline: float | None = None,
) -> chat_pb2.ChatCompletion:
    """The whole completion in one answer; raise ChatCallError on failure."""
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.CreateChatCompletion(
        request, metadata=call_metadata(token, request_id), timeout=deadline
    )
    try:
        completion: chat_pb2.ChatCompletion = await call
    except grpc.RpcError as exc:
        raise await _error_from(call, exc) from exc
    return completion
