"""The blocking side: Client, for code without an event loop (scripts, threads, WSGI)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

from ._config import Retries, channel_options
from ._errors import ChatCallError, request_id_of
from ._policy import Call, CallDefaults, lacks_the_method
from ._requests import batches_request
from ._results import WithRequestId

__all__ = ["ChatStream", "Client"]

_Seen = Callable[[str | None], None]


class Client:
    """A channel to the bridge with the caller's token, limits and retry policy.

        with Client("127.0.0.1:50051", token=key) as client:
            completion = client.create(request)
            for chunk in client.stream(request):
                ...

    The blocking twin of AsyncClient, with the same methods and rules: every
    failure raises a ChatCallError subclass, ``deadline`` bounds each call with
    its retries, ``retries`` is off by default.
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
            channel = grpc.insecure_channel(target, every)
        else:
            channel = grpc.secure_channel(target, credentials, every)
        self.target = target
        self._channel = channel
        self._stub = chat_pb2_grpc.ChatServiceStub(grpc.intercept_channel(channel, *interceptors))
        self._defaults = CallDefaults(token, deadline, retries)

    def __repr__(self) -> str:
        return f"Client({self.target!r})"  # never the token

    def create(
        self,
        request: chat_pb2.ChatCompletionRequest,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> chat_pb2.ChatCompletion:
        """The whole completion in one answer."""
        return self.create_with_request_id(request, request_id=request_id, deadline=deadline).value

    def create_with_request_id(
        self,
        request: chat_pb2.ChatCompletionRequest,
        *,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> WithRequestId[chat_pb2.ChatCompletion]:
        """The completion, with the request id the bridge answered it under."""
        completion: chat_pb2.ChatCompletion
        completion, answered_id = _unary(
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
    ) -> ChatStream:
        """The chunks as they arrive (``max_delay``: see `stream_chat`)."""
        return ChatStream(
            lambda seen: _chunks(
                self._stub, request, self._defaults.call(request_id, deadline), max_delay, seen
            )
        )

    def list_models(
        self, *, request_id: str | None = None, deadline: float | None = None
    ) -> chat_pb2.ListModelsResponse:
        """The models the API offers."""
        models: chat_pb2.ListModelsResponse
        models, _ = _unary(
            self._stub.ListModels,
            chat_pb2.ListModelsRequest(),
            self._defaults.call(request_id, deadline),
        )
        return models

    def close(self) -> None:
        """Close the channel, cancelling the calls still open."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ChatStream:
    """The chunks of one streamed completion: ``for chunk in stream``.

    ``request_id`` is set once the first message, or the failure, has arrived.
    ``with client.stream(...) as stream`` (or ``stream.close()``) cancels the
    call when the caller stops early, so the bridge stops the upstream request.
    """

    def __init__(
        self, chunks: Callable[[_Seen], Generator[chat_pb2.ChatCompletionChunk, None, None]]
    ) -> None:
        self.request_id: str | None = None
        self._chunks = chunks(self._saw)

    def _saw(self, request_id: str | None) -> None:
        self.request_id = request_id

    def __iter__(self) -> Iterator[chat_pb2.ChatCompletionChunk]:
        return self

    def __next__(self) -> chat_pb2.ChatCompletionChunk:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _unary(
    method: Any,
    request: Any,
    call: Call,
) -> tuple[Any, str | None]:
    """One unary call's answer and request id, asked again while `retry_delay` says so."""
    attempt = 1
    while True:
        try:
            answer, rpc = method.with_call(
                request, metadata=call.metadata, timeout=call.deadline.left()
            )
        except grpc.RpcError as exc:
            error = ChatCallError.from_rpc_error(exc)
            delay = call.retry_delay(error, attempt)
            if delay is None:
                raise error from exc
        else:
            return answer, request_id_of(rpc.initial_metadata())
        time.sleep(delay)
        attempt += 1


def _chunks(
    stub: chat_pb2_grpc.ChatServiceStub,
    request: chat_pb2.ChatCompletionRequest,
    call: Call,
    max_delay: float,
    seen: _Seen,
) -> Generator[chat_pb2.ChatCompletionChunk, None, None]:
    """A stream's chunks, asked again while `retry_delay` says so and nothing was yielded."""
    attempt = 1
    while True:
        yielded = False
        attempt_chunks = _attempt(stub, request, call, max_delay, seen)
        try:
            for chunk in attempt_chunks:
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
            attempt_chunks.close()
        time.sleep(delay)
        attempt += 1


def _attempt(
    stub: chat_pb2_grpc.ChatServiceStub,
    request: chat_pb2.ChatCompletionRequest,
    call: Call,
    max_delay: float,
    seen: _Seen,
) -> Generator[chat_pb2.ChatCompletionChunk, None, None]:
    """One attempt: the batched RPC, or the per-event one when the bridge lacks it."""
    batched = stub.StreamChatCompletionBatches(
        batches_request(request, max_delay), metadata=call.metadata, timeout=call.deadline.left()
    )
    received = False
    try:
        for message in batched:
            if not received:
                received = True
                seen(request_id_of(batched.initial_metadata()))
            yield from message.chunks
        if not received:
            seen(request_id_of(batched.initial_metadata()))
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
        for chunk in fallback:
            if not received:
                received = True
                seen(request_id_of(fallback.initial_metadata()))
            yield chunk
    except grpc.RpcError as exc:
        raise ChatCallError.from_rpc_error(exc) from exc
    finally:
        fallback.cancel()
