"""The grpc.aio side: AsyncClient, and stream_chat / create_chat over a channel of your own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from types import TracebackType
from typing import Any

import grpc

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

from ._config import Retries, channel_options
from ._errors import ChatCallError, request_id_of
from ._policy import Call, CallDefaults, lacks_the_method
from ._requests import batches_request
from ._results import WithRequestId

__all__ = ["AsyncChatStream", "AsyncClient", "create_chat", "stream_chat"]

_Seen = Callable[[str | None], None]


class AsyncClient:
    """A channel to the bridge with the caller's token, limits and retry policy.

        async with AsyncClient("127.0.0.1:50051", token=key) as client:
            completion = await client.create(request)
            async for chunk in client.stream(request):
                ...

    Every failure raises a ChatCallError subclass. ``deadline`` (seconds) bounds
    each call, retries and their waits included, and travels with the call so the
    bridge bounds its upstream request by it too. ``retries`` is off by default
    (see Retries). ``options`` override `channel_options` of the same name.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        deadline: float | None = None,
        retries: Retries | None = None,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[Any] = (),
    ) -> None:
        every = channel_options(retries=retries, overrides=options)
        if credentials is None:
            channel = grpc.aio.insecure_channel(target, every, interceptors=interceptors)
        else:
            channel = grpc.aio.secure_channel(target, credentials, every, interceptors=interceptors)
        self.target = target
        self._channel = channel
        self._stub = _async_stub(channel)
        self._defaults = CallDefaults(token, deadline, retries)

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r})"  # never the token

    async def create(
        self,
        request: chat_pb2.ChatCompletionRequest,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> chat_pb2.ChatCompletion:
        """The whole completion in one answer."""
        answer = await self.create_with_request_id(
            request, request_id=request_id, deadline=deadline
        )
        return answer.value

    async def create_with_request_id(
        self,
        request: chat_pb2.ChatCompletionRequest,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> WithRequestId[chat_pb2.ChatCompletion]:
        """The completion, with the request id the bridge answered it under."""
        completion: chat_pb2.ChatCompletion
        completion, answered_id = await _unary(
            self._stub.CreateChatCompletion,
            request,
            self._defaults.call(request_id, deadline),
        )
        return WithRequestId(completion, answered_id)

    def stream(
        self,
        request: chat_pb2.ChatCompletionRequest,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
        max_delay: float = 0.0,
    ) -> AsyncChatStream:
        """The chunks as they arrive (``max_delay``: see `stream_chat`)."""
        return AsyncChatStream(
            lambda seen: _chunks(
                self._stub, request, self._defaults.call(request_id, deadline), max_delay, seen
            )
        )

    async def list_models(
        self, *, request_id: str | None = None, deadline: float | None = None
    ) -> chat_pb2.ListModelsResponse:
        """The models the API offers."""
        models: chat_pb2.ListModelsResponse
        models, _ = await _unary(
            self._stub.ListModels,
            chat_pb2.ListModelsRequest(),
            self._defaults.call(request_id, deadline),
        )
        return models

    async def close(self) -> None:
        """Close the channel, cancelling the calls still open."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncChatStream:
    """The chunks of one streamed completion: ``async for chunk in stream``.

    ``request_id`` is set once the first message, or the failure, has arrived.
    ``async with client.stream(...) as stream`` (or ``await stream.aclose()``)
    cancels the call when the caller stops early, so the bridge stops the
    upstream request and no more tokens are generated or billed.
    """

    def __init__(
        self, chunks: Callable[[_Seen], AsyncGenerator[chat_pb2.ChatCompletionChunk, None]]
    ) -> None:
        self.request_id: str | None = None
        self._chunks = chunks(self._saw)

    def _saw(self, request_id: str | None) -> None:
        self.request_id = request_id

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> chat_pb2.ChatCompletionChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


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
    call = CallDefaults(token, deadline).call(request_id)
    chunks = _chunks(_async_stub(channel), request, call, max_delay, _ignore)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()


async def create_chat(
    channel: grpc.aio.Channel,
    request: chat_pb2.ChatCompletionRequest,
    *,
    token: str | None = None,
    request_id: str | None = None,
    deadline: float | None = None,
) -> chat_pb2.ChatCompletion:
    """The whole completion in one answer; raise ChatCallError on failure."""
    call = CallDefaults(token, deadline).call(request_id)
    completion: chat_pb2.ChatCompletion
    completion, _ = await _unary(_async_stub(channel).CreateChatCompletion, request, call)
    return completion


def _async_stub(channel: grpc.aio.Channel) -> chat_pb2_grpc.ChatServiceAsyncStub:
    """The stub, typed for grpc.aio (the .pyi's overload sees that only with types-grpcio)."""
    return chat_pb2_grpc.ChatServiceStub(channel)  # type: ignore[return-value, unused-ignore]


def _ignore(request_id: str | None) -> None:
    """For callers of stream_chat, which has nowhere to put the request id."""


async def _unary(
    method: Any,
    request: Any,
    call: Call,
) -> tuple[Any, str | None]:
    """One unary call's answer and request id, asked again while `retry_delay` says so."""
    attempt = 1
    while True:
        rpc = method(request, metadata=call.metadata, timeout=call.deadline.left())
        try:
            answer = await rpc
        except grpc.RpcError as exc:
            error = ChatCallError.from_rpc_error(exc)
            delay = call.retry_delay(error, attempt)
            if delay is None:
                raise error from exc
        else:
            return answer, request_id_of(await rpc.initial_metadata())
        await asyncio.sleep(delay)
        attempt += 1


async def _chunks(
    stub: chat_pb2_grpc.ChatServiceAsyncStub,
    request: chat_pb2.ChatCompletionRequest,
    call: Call,
    max_delay: float,
    seen: _Seen,
) -> AsyncGenerator[chat_pb2.ChatCompletionChunk, None]:
    """A stream's chunks, asked again while `retry_delay` says so and nothing was yielded."""
    attempt = 1
    while True:
        yielded = False
        attempt_chunks = _attempt(stub, request, call, max_delay, seen)
        try:
            async for chunk in attempt_chunks:
                yielded = True
                yield chunk
            return
        except ChatCallError as error:
            if error.request_id is not None:
                seen(error.request_id)
            delay = None if yielded else call.retry_delay(error, attempt)
            if delay is None:
                raise
        finally:
            await attempt_chunks.aclose()
        await asyncio.sleep(delay)
        attempt += 1


async def _attempt(
    stub: chat_pb2_grpc.ChatServiceAsyncStub,
    request: chat_pb2.ChatCompletionRequest,
    call: Call,
    max_delay: float,
    seen: _Seen,
) -> AsyncGenerator[chat_pb2.ChatCompletionChunk, None]:
    """One attempt: the batched RPC, or the per-event one when the bridge lacks it."""
    batched = stub.StreamChatCompletionBatches(
        batches_request(request, max_delay), metadata=call.metadata, timeout=call.deadline.left()
    )
    received = False
    try:
        async for message in batched:
            if not received:
                received = True
                seen(request_id_of(await batched.initial_metadata()))
            for chunk in message.chunks:
                yield chunk
        if not received:
            seen(request_id_of(await batched.initial_metadata()))
        return
    except grpc.RpcError as exc:
        error = ChatCallError.from_rpc_error(exc)
        if received or not lacks_the_method(error):
            raise error from exc
    finally:
        batched.cancel()  # a no-op once the call has ended
    fallback = stub.StreamChatCompletion(
        request, metadata=call.metadata, timeout=call.deadline.left()
    )
    received = False
    try:
        async for chunk in fallback:
            if not received:
                received = True
                seen(request_id_of(await fallback.initial_metadata()))
            yield chunk
    except grpc.RpcError as exc:
        raise ChatCallError.from_rpc_error(exc) from exc
    finally:
        fallback.cancel()
