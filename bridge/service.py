"""The gRPC ChatService: each RPC is one upstream call, relayed faithfully.

The order inside every RPC is fixed: credentials, validation, then the
upstream call, so nothing that is bound to fail can cost money. Failures of
any kind go through `errors.to_status` and leave as one status with rich
details; the request id travels back in the initial metadata when a message
is sent, and in the trailing metadata when the call fails first (so an early
error stays a Trailers-Only response that a mesh can act on).

A streamed request walks straight down and its answer comes back: handler ->
`UpstreamClient` -> one `EventStream` (parsed events, every protocol rule,
in-band errors raised) -> `mapping.decode` -> write. The streaming loop is the
hot path: per event the stream does one orjson parse and this loop one
plan-driven protobuf construction and one write, nothing more.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

import grpc
import orjson
from google.protobuf.message import Message

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

from . import mapping
from .access import Access, Caller
from .admission import Admission
from .config import BridgeConfig
from .errors import (
    BridgeError,
    RequestTooLarge,
    UndecodableRequest,
    UpstreamReportedError,
    to_status,
)
from .event_stream import EventStream
from .logs import CALL_CALLER
from .metrics import Metrics
from .observe import Observer, RpcRecord
from .policy import model_allowed
from .quotas import Grant
from .upstream import CallDeadline, UpstreamClient
from .upstream_call import REQUEST_ID_KEY, CallPolicy, UpstreamCall, request_id
from .validation import validate_batches_request, validate_chat_request

log = logging.getLogger("bridge.service")

_M = TypeVar("_M", bound=Message)


class ChatService(chat_pb2_grpc.ChatServiceServicer):
    """myrouter.chat.v1.ChatService over an injected upstream client.

    What runs at all is the server's `Admission`; what an upstream request
    carries is the `CallPolicy`; whether an answer is valid is the upstream's
    event stream. What is left here is what each RPC means.

    Registered by `bridge.server.add_chat_service`, whose request decoder hands
    a handler an `Undecodable` in place of its message when the bytes do not
    parse: every handler enters its `_scope` (which refuses it) before it reads
    any field of `request`, and a new RPC must do the same.
    """

    def __init__(
        self,
        config: BridgeConfig,
        upstream: UpstreamClient,
        admission: Admission,
        observer: Observer | None = None,
        access: Access | None = None,
    ) -> None:
        self._config = config
        self._upstream = upstream
        self._admission = admission
        self._observer = observer if observer is not None else Observer(Metrics())
        self._access = access if access is not None else Access.from_config(config)
        self._calls = CallPolicy(config)

    def _scope(self, context: grpc.aio.ServicerContext, method: str, request: object) -> RpcScope:
        """Every RPC's first step, before it reads any field of `request` (which may be
        an `Undecodable` that the scope refuses)."""
        return RpcScope(self._admission, self._access, self._observer, context, method, request)

    async def CreateChatCompletion(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ChatCompletion:
        async with self._scope(context, "CreateChatCompletion", request) as rpc:
            call = rpc.upstream_call(
                self._calls.call_for(context, rpc.request_id, request.model, **rpc.on_call())
            )
            validate_chat_request(request, max_messages=self._config.max_messages)
            fields = request_body(request, stream=False)
            await rpc.admit(call, fields)
            body = orjson.dumps(fields)
            rpc.record.upstream_at = time.perf_counter()
            try:
                async with CallDeadline(call):
                    answer = await self._upstream.create_chat_completion(body, call)
            except UpstreamReportedError as reported:  # an error answer may still bill tokens
                rpc.record.answered(mapping.decode(chat_pb2.ChatCompletion, reported.event))
                raise
            completion = mapping.decode(chat_pb2.ChatCompletion, answer)
            rpc.record.answered(completion)
            await context.send_initial_metadata(((REQUEST_ID_KEY, rpc.request_id),))
            return completion

    async def StreamChatCompletion(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        async with self._scope(context, "StreamChatCompletion", request) as rpc:
            call = rpc.upstream_call(
                self._calls.call_for(context, rpc.request_id, request.model, **rpc.on_call())
            )
            validate_chat_request(request, max_messages=self._config.max_messages)
            fields = request_body(request, stream=True)
            await rpc.admit(call, fields, stream=True)
            record = rpc.record
            decode = mapping.decode
            chunk_type = chat_pb2.ChatCompletionChunk
            async with self._relay(context, rpc, fields, call) as relay:
                try:
                    async for event in relay.events:
                        chunk = decode(chunk_type, event)
                        if not relay.sent:
                            await relay.send_metadata()
                        if "usage" in event:
                            record.answered(chunk)
                        record.chunks += 1
                        # Let the other streams whose events arrived in this loop turn decode
                        # theirs first, so the writes leave back to back: grpc core then sends
                        # them with fewer system calls (a sendmsg per write, and a wake-up
                        # of the loop per completion; BENCHMARKS.md).
                        await asyncio.sleep(0)
                        yield chunk
                        # An open stream mostly waits here for its next event: keep
                        # nothing of the last one meanwhile (memory per open stream).
                        del event, chunk
                except UpstreamReportedError as reported:
                    if relay.sent:  # after chunks, the error is a chunk too; first, status only
                        yield decode(chunk_type, reported.event)
                    raise

    async def StreamChatCompletionBatches(  # noqa: N802 - gRPC method name
        self,
        request: chat_pb2.StreamChatCompletionBatchesRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionBatchesResponse]:
        """StreamChatCompletion's relay, one message per network read (or per `max_delay`).

        The same scope, metadata and ends as the per-event RPC; what differs is
        only that a read's events leave together, so grpc's cost per message
        (a write, a system call, a loop wake-up) is paid once per read.
        """
        async with self._scope(context, "StreamChatCompletionBatches", request) as rpc:
            model = request.request.model
            call = rpc.upstream_call(
                self._calls.call_for(context, rpc.request_id, model, **rpc.on_call())
            )
            max_delay = validate_batches_request(request, max_messages=self._config.max_messages)
            fields = request_body(request.request, stream=True)
            await rpc.admit(call, fields, stream=True)
            record = rpc.record
            limit = self._config.max_send_bytes
            async with self._relay(context, rpc, fields, call) as relay:
                try:
                    async for batch in relay.events.batches(max_delay):
                        message = _decode_batch(batch)
                        if not relay.sent:
                            await relay.send_metadata()
                        for index, event in enumerate(batch):
                            if "usage" in event:
                                record.answered(message.chunks[index])
                        record.chunks += len(batch)
                        del batch
                        await asyncio.sleep(0)  # see StreamChatCompletion
                        if message.ByteSize() <= limit:
                            yield message
                        else:
                            for part in _split(message, limit):
                                yield part
                        del message
                except UpstreamReportedError as reported:
                    if relay.sent:  # after chunks, the error is a chunk too; first, status only
                        yield _decode_batch([reported.event])
                    raise

    def _relay(
        self,
        context: grpc.aio.ServicerContext,
        rpc: RpcScope,
        fields: dict[str, Any],
        call: UpstreamCall,
    ) -> _Relay:
        """A streaming RPC's upstream side, once its credentials, request and caller are
        checked; `fields` is the request's JSON."""
        body = _compact(orjson.dumps(fields))
        return _Relay(self._upstream, call, body, context, rpc)

    async def ListModels(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListModelsResponse:
        async with self._scope(context, "ListModels", request) as rpc:
            call = rpc.upstream_call(self._calls.call_for(context, rpc.request_id, **rpc.on_call()))
            await rpc.admit(call, None)
            rpc.record.upstream_at = time.perf_counter()
            async with CallDeadline(call):
                answer = await self._upstream.list_models(call)
            models = mapping.decode(chat_pb2.ListModelsResponse, answer)
            await context.send_initial_metadata(((REQUEST_ID_KEY, rpc.request_id),))
            return models


class RpcScope:
    """One RPC's bookkeeping around its body: admission, its observer record, and the
    single path from any exception to the status the caller receives.

    Every RPC enters one, so the three handlers hold only what differs between
    them. Slotted, as `upstream.CallDeadline` says why.
    """

    __slots__ = (
        "_access",
        "_admission",
        "_context",
        "_grant",
        "_method",
        "_observer",
        "_task",
        "_undecodable",
        "caller",
        "record",
        "request_id",
    )

    caller: Caller
    """Who is calling (`Access.identify`): set on entering, before anything else."""

    def __init__(
        self,
        admission: Admission,
        access: Access,
        observer: Observer,
        context: grpc.aio.ServicerContext,
        method: str,
        request: object,
    ) -> None:
        self._admission = admission
        self._access = access
        self._grant: Grant | None = None
        self._observer = observer
        self._context = context
        self._method = method
        self._task: asyncio.Task[Any] | None = None
        self._undecodable = request if isinstance(request, Undecodable) else None
        self.request_id = request_id(context)
        self.record: RpcRecord = observer.start(method, self.request_id, requested_model(request))

    async def __aenter__(self) -> RpcScope:
        try:
            self.caller = caller = self._access.identify(self._context)
            self.record.caller = caller.identity
            CALL_CALLER.set(caller.identity)  # every log line of the call names it
            self.record.labels = {"caller": caller.label}
            self._access.check_allowed(caller)
            if self._undecodable is not None:
                raise self._undecodable.refusal()
            self._task = self._admission.admit()
        except BridgeError as refused:  # no identity, bad or big request, over the cap, draining
            await self.__aexit__(type(refused), refused, refused.__traceback__)
        return self

    def on_call(self) -> dict[str, Any]:
        """What the caller adds to its upstream call: its identity (``--forward-caller-header``)
        and, when its policy lists models, the check its fallbacks must pass."""
        rule = self.caller.rule
        allowed = None if rule.models is None else functools.partial(model_allowed, rule)
        return {"caller": self.caller.identity, "model_allowed": allowed}

    def upstream_call(self, call: UpstreamCall) -> UpstreamCall:
        """`call`, its attempts noted in this RPC's record (its log line names them)."""
        self.record.attempts = call.attempts
        return call

    async def admit(
        self, call: UpstreamCall, body: dict[str, Any] | None, *, stream: bool = False
    ) -> None:
        """The caller's policy and limits for this call (`Access`), once its request is
        valid: the last step before anything goes upstream."""
        access = self._access
        access.check_service_key(self.caller, call.using_service_key)
        self._grant = await access.admit(self.caller, body, stream=stream)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Never suppresses: a failure leaves as the status `_abort` raises, a cancellation
        or the caller's departure (GeneratorExit) propagates as it is."""
        record = self.record
        try:
            if exc is None:
                return
            if isinstance(exc, asyncio.CancelledError):
                shutdown = self._admission.shutdown_abort(self._task)
                if shutdown is None:
                    record.cancelled = True
                    return
                exc = shutdown
            elif not isinstance(exc, Exception):  # GeneratorExit: the caller went away
                record.cancelled = True
                return
            record.error = exc
            await _abort(self._context, exc, self.request_id, self._method)
        finally:
            if self._task is not None:
                self._admission.release(self._task)
            if self._grant is not None:
                await self._access.finish(self._grant, record.tokens)
            self._observer.finish(record, _final_code(self._context, record))


def requested_model(request: object) -> str:
    """The model a request names, for its log line and metrics: the batched request's is
    that of the request it wraps; "" for a request that names none (ListModels) or that
    could not be decoded (read before the scope refuses it, so never a field of it)."""
    if isinstance(request, chat_pb2.StreamChatCompletionBatchesRequest):
        request = request.request
    return request.model if isinstance(request, chat_pb2.ChatCompletionRequest) else ""


class Undecodable:
    """What `request_decoder` hands a handler for bytes that are not a valid request.

    grpc.aio answers a deserializer that raises with UNKNOWN ("Unexpected
    DecodeError") and an ERROR traceback, outside any handler, so nothing of
    ours would see the call. Returned instead, it reaches the handler, whose
    `RpcScope` refuses it (`refusal`) before any field is read: INVALID_ARGUMENT
    through the one error path, with its request id, log line and metrics.
    """

    __slots__ = ("message_type",)

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type

    def refusal(self) -> BridgeError:
        """The error the scope raises in place of the call."""
        return UndecodableRequest(self.message_type)


class TooLarge(Undecodable):
    """What `request_decoder` hands a handler for a request over ``--max-request-bytes``
    (which grpc, reading up to `server_options.grpc_receive_limit`, let through): left
    unparsed, and refused on entry like any `Undecodable`, as RESOURCE_EXHAUSTED."""

    __slots__ = ("limit", "size")

    def __init__(self, message_type: str, size: int, limit: int) -> None:
        super().__init__(message_type)
        self.size = size
        self.limit = limit

    def refusal(self) -> BridgeError:
        return RequestTooLarge(self.size, self.limit)


def request_decoder(
    message_type: type[_M], *, max_bytes: int
) -> Callable[[bytes], _M | Undecodable]:
    """The request deserializer of an RPC taking `message_type`: its FromString, once per
    request (nothing per stream message), or an `Undecodable` when the bytes do not parse,
    a `TooLarge` (not parsed at all) when there are more than `max_bytes` of them."""
    parse = message_type.FromString
    name = message_type.DESCRIPTOR.full_name

    def decode(data: bytes) -> _M | Undecodable:
        if len(data) > max_bytes:
            return TooLarge(name, len(data), max_bytes)
        try:
            return parse(data)
        except Exception:  # DecodeError, or a recursion limit: the caller's bytes either way
            return Undecodable(name)

    return decode


def _final_code(context: grpc.aio.ServicerContext, record: RpcRecord) -> grpc.StatusCode | None:
    """The status the call ended with, as its caller sees it, read back from the context:
    the one set by abort, CANCELLED if the caller left.

    An error that leaves the handler without having set a status (abort itself
    failed) reaches the caller as grpc's UNKNOWN, and is recorded so: a failure
    can never be logged or counted as OK.
    """
    code: grpc.StatusCode | None = context.code()
    if code is None and (record.cancelled or context.cancelled()):
        return grpc.StatusCode.CANCELLED
    if code is None and record.error is not None:
        return grpc.StatusCode.UNKNOWN
    return code


def request_body(request: chat_pb2.ChatCompletionRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of /chat/completions for a request; the RPC decides `stream`."""
    body = mapping.encode(request)
    body["stream"] = stream
    return body


def _decode_batch(
    events: Sequence[Mapping[str, Any]],
) -> chat_pb2.StreamChatCompletionBatchesResponse:
    return mapping.decode_each(
        chat_pb2.StreamChatCompletionBatchesResponse, "chunks", chat_pb2.ChatCompletionChunk, events
    )


def _split(
    message: chat_pb2.StreamChatCompletionBatchesResponse, limit: int
) -> Iterator[chat_pb2.StreamChatCompletionBatchesResponse]:
    """`message` as consecutive messages of at most `limit` bytes each, when chunks allow.

    A chunk that is over the limit on its own still goes alone, and grpc
    then fails the call, as StreamChatCompletion would for the same chunk.
    """
    part = chat_pb2.StreamChatCompletionBatchesResponse()
    size = 0
    for chunk in message.chunks:
        # Its bytes in the message: a tag byte, a length of at most 5, the chunk.
        grows = chunk.ByteSize() + 6
        if part.chunks and size + grows > limit:
            yield part
            part = chat_pb2.StreamChatCompletionBatchesResponse()
            size = 0
        part.chunks.append(chunk)
        size += grows
    yield part


def _compact(data: bytes) -> bytes:
    """A right-sized copy: orjson's output keeps its 4 KiB buffer, and a stream holds its
    request body for its whole life.
    """
    return memoryview(data).tobytes()


class _Relay:
    """What both streaming RPCs do around their loop: the upstream stream, open within
    the call's time budget (its `CallDeadline`) and closed on every path; the request
    id in the initial metadata before the first message (`send_metadata`); and, when
    the answer ends OK with no message at all (``[DONE]`` first), the request id in
    the trailers. Slotted, as `upstream.CallDeadline` says why.
    """

    __slots__ = ("_body", "_call", "_context", "_deadline", "_rpc", "_upstream", "events", "sent")

    events: EventStream

    def __init__(
        self,
        upstream: UpstreamClient,
        call: UpstreamCall,
        body: bytes,
        context: grpc.aio.ServicerContext,
        rpc: RpcScope,
    ) -> None:
        self._upstream = upstream
        self._call = call
        self._deadline = CallDeadline(call)
        self._body = body
        self._context = context
        self._rpc = rpc
        self.sent = False
        """Whether a message has gone: an upstream error is then a chunk too."""

    async def __aenter__(self) -> Self:
        self._rpc.record.upstream_at = time.perf_counter()
        deadline = self._deadline
        await deadline.__aenter__()
        try:
            self.events = await self._upstream.stream_chat_completion(self._body, self._call)
        except BaseException as failed:
            await deadline.__aexit__(type(failed), failed, failed.__traceback__)
            raise
        return self

    async def send_metadata(self) -> None:
        """Before the first message: the request id, and the time to first chunk."""
        self._rpc.record.first_chunk_at = time.perf_counter()
        await self._context.send_initial_metadata(((REQUEST_ID_KEY, self._rpc.request_id),))
        self.sent = True

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self.events.aclose()
        finally:
            await self._deadline.__aexit__(*exc_info)
        if exc_info[1] is None and not self.sent:  # OK with no message: the id in the trailers
            self._context.set_trailing_metadata(((REQUEST_ID_KEY, self._rpc.request_id),))


async def _abort(
    context: grpc.aio.ServicerContext, exc: Exception, request_id: str, method: str
) -> NoReturn:
    if isinstance(exc, BridgeError):
        log.log(
            exc.log_level,
            "%s failed: %s %s (request_id=%s)",
            method,
            exc.code.name,
            exc.message,
            request_id,
        )
    else:
        log.error(
            "%s failed with an internal error (request_id=%s)", method, request_id, exc_info=exc
        )
    status = to_status(exc, request_id=request_id)
    await context.abort(
        status.code,
        status.details,
        trailing_metadata=(*status.trailing_metadata, (REQUEST_ID_KEY, request_id)),
    )
    raise AssertionError("context.abort returned")  # pragma: no cover


__all__ = [
    "REQUEST_ID_KEY",
    "ChatService",
    "RpcScope",
    "TooLarge",
    "Undecodable",
    "request_body",
    "request_decoder",
    "requested_model",
]
