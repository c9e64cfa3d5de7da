"""stream_chat and create_chat over a grpc.aio channel, raising ChatCallError on failure."""

from __future__ import annotations

import time
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
    max_delay: float = 0.0,
) -> AsyncGenerator[chat_pb2.ChatCompletionChunk, None]:
    """Yield each chunk as it arrives; raise ChatCallError if the call does not end OK.

    The chunks come over StreamChatCompletionBatches, which sends the chunks
    that arrive together in one message (cheaper for the bridge and for this
    process, no later for any chunk), and are yielded one by one all the same.
    A bridge older than that RPC answers UNIMPLEMENTED before any message; the
    helper then asks StreamChatCompletion instead, within the same deadline.

    ``deadline`` is in seconds and travels with the call, so the bridge bounds
    its upstream request by it too (unlike a local asyncio timeout).
    ``max_delay`` (seconds, at most 1; 0 by default) lets the bridge hold a
    chunk up to that long to send more with it: for consumers that do not show
    tokens live. An older bridge ignores it.

    A chunk whose ``error`` field is set (the API reported an error mid-stream)
    is yielded like any other, and the ChatCallError follows it. Closing the
    generator early (``async with contextlib.aclosing(stream_chat(...))``, or
    closing the channel) cancels the call, so the bridge stops the upstream
    request and no more tokens are generated or billed.
    """
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    metadata = call_metadata(token, request_id)
    ends_at = None if deadline is None else time.monotonic() + deadline
    batches = chat_pb2.StreamChatCompletionBatchesRequest(request=request)
    if max_delay > 0:
        batches.max_delay.FromNanoseconds(round(max_delay * 1e9))
    call = stub.StreamChatCompletionBatches(batches, metadata=metadata, timeout=deadline)
    received = False
    try:
        async for message in call:
            received = True
            for chunk in message.chunks:
                yield chunk
        return
    except grpc.RpcError as exc:
        error = await _error_from(call, exc)
        if received or not _without_the_method(error):
            raise error from exc
    finally:
        call.cancel()  # a no-op once the call has ended
    left = None if ends_at is None else max(ends_at - time.monotonic(), 0.0)
    fallback = stub.StreamChatCompletion(request, metadata=metadata, timeout=left)
    try:
        async for chunk in fallback:
            yield chunk
    except grpc.RpcError as exc:
        raise await _error_from(fallback, exc) from exc
    finally:
        fallback.cancel()


def _without_the_method(error: ChatCallError) -> bool:
    """Whether the server lacks the RPC: UNIMPLEMENTED from gRPC itself, not the bridge's
    own answer (an upstream HTTP 501 also maps to UNIMPLEMENTED, with ErrorInfo), which
    must not send the request upstream a second time."""
    return error.code is grpc.StatusCode.UNIMPLEMENTED and error.error_info is None


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
