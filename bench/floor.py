"""The grpc.aio floor: what any Python gRPC bridge costs at the very least.

`make bench` runs this next to the bridge and measures it with the same
client, the same requests and the same figures. It serves ChatService on a
grpc.aio server built exactly like the bridge's (same channel arguments, same
event loop), sends the same ``x-request-id`` initial metadata and the same
protobuf messages, and does nothing else: no upstream request, no SSE, no
JSON, no mapping per call. Each distinct request is answered once through the
bridge's own pipeline (`UpstreamClient` + `mapping.decode`, so the messages are
byte for byte the bridge's); every later call replays the pre-built messages.
The bench's own request (`bench.load.bridge_request`) for each ``--prefetch``
scenario is answered at start-up, before the floor listens, so no measured call
ever waits for the upstream; any other request is fetched on its first call.

StreamChatCompletionBatches replays the same chunks, grouped as the upstream
writes its events (the scenario's ``batch``: one chunk a message for
``batch=1``, 16 for ``batch=16``), so the batched RPC has a floor of its own
shape: what grpc.aio costs to send those messages and nothing more.

So "bridge vs floor" is what the bridge's own work costs (HTTP, parsing,
mapping, bookkeeping), and the floor itself is what the gRPC layer costs on
this machine: a bound no Python code in the handler can go below.

    PYTHONPATH=. python bench/floor.py --listen 127.0.0.1:50052 \
        --upstream-url http://127.0.0.1:8080/api/v1 --prefetch '{"chunks": 16}'

It takes the bridge's ``serve`` flags (so `bench/run.py` gives both the same
settings; it is always one process, ``--workers`` does not apply) and prints
``floor listening on HOST:PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import orjson
from google.protobuf.json_format import MessageToDict

from bench.load import bridge_request
from bridge import loop, mapping
from bridge.config import BridgeConfig, ConfigError, add_serve_arguments, config_from_args
from bridge.server import add_chat_service, grpc_server
from bridge.service import request_body
from bridge.upstream import UpstreamClient
from bridge.upstream_call import REQUEST_ID_KEY, UpstreamCall
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

FETCH_AUTHORIZATION = "Bearer floor-fetch"
"""Sent when the floor fetches an answer for a caller that sent no ``authorization``
(at start-up: when no service key is configured either)."""
FETCH_TIMEOUT = 30.0

Answer = TypeVar("Answer")


class FloorService(chat_pb2_grpc.ChatServiceServicer):
    """ChatService that replays, per distinct request, the messages the bridge would send."""

    def __init__(self, upstream: UpstreamClient) -> None:
        self._upstream = upstream
        self._completions: dict[bytes, chat_pb2.ChatCompletion] = {}
        self._streams: dict[bytes, tuple[chat_pb2.ChatCompletionChunk, ...]] = {}
        self._batches: dict[bytes, tuple[chat_pb2.StreamChatCompletionBatchesResponse, ...]] = {}

    async def CreateChatCompletion(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ChatCompletion:
        return await self._replay(self._completions, request, context, self._fetch_completion)

    async def StreamChatCompletion(  # noqa: N802 - gRPC method name
        self, request: chat_pb2.ChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.ChatCompletionChunk]:
        for chunk in await self._replay(self._streams, request, context, self._fetch_stream):
            yield chunk

    async def StreamChatCompletionBatches(  # noqa: N802 - gRPC method name
        self,
        request: chat_pb2.StreamChatCompletionBatchesRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[chat_pb2.StreamChatCompletionBatchesResponse]:
        """The per-event messages grouped as the upstream's writes group its events.

        ``max_delay`` is ignored: the floor has no reads to wait for, so the
        grouping is the upstream's (`write_size`), whatever the caller asked.
        """
        chat = request.request
        for message in await self._replay(self._batches, chat, context, self._fetch_batches):
            yield message

    async def _replay(
        self,
        answers: dict[bytes, Answer],
        request: chat_pb2.ChatCompletionRequest,
        context: grpc.aio.ServicerContext,
        fetch: Callable[[chat_pb2.ChatCompletionRequest, UpstreamCall], Awaitable[Answer]],
    ) -> Answer:
        """`request`'s pre-built answer (fetched, with the caller's credentials, on the
        first call of a request no prefetch covered), after the bridge's initial metadata."""
        key = request.SerializeToString(deterministic=True)
        answer = answers.get(key)
        if answer is None:
            answer = answers[key] = await fetch(request, _call(context))
        await context.send_initial_metadata(((REQUEST_ID_KEY, uuid.uuid4().hex),))
        return answer

    async def prefetch(self, scenarios: Sequence[dict[str, Any]], call: UpstreamCall) -> None:
        """Pre-build every answer to the bench's request for each scenario, before serving."""
        for scenario in scenarios:
            request = bridge_request(scenario)
            key = request.SerializeToString(deterministic=True)
            self._completions[key] = await self._fetch_completion(request, call)
            chunks = self._streams[key] = await self._fetch_stream(request, call)
            self._batches[key] = grouped(chunks, write_size(request))

    async def _fetch_completion(
        self, request: chat_pb2.ChatCompletionRequest, call: UpstreamCall
    ) -> chat_pb2.ChatCompletion:
        body = orjson.dumps(request_body(request, stream=False))
        answer = await self._upstream.create_chat_completion(body, call)
        return mapping.decode(chat_pb2.ChatCompletion, answer)

    async def _fetch_stream(
        self, request: chat_pb2.ChatCompletionRequest, call: UpstreamCall
    ) -> tuple[chat_pb2.ChatCompletionChunk, ...]:
        body = orjson.dumps(request_body(request, stream=True))
        chunks = []
        # A failing answer is no floor for a relayed one: an in-band error raises here.
        async with await self._upstream.stream_chat_completion(body, call) as events:
            async for event in events:
                chunks.append(mapping.decode(chat_pb2.ChatCompletionChunk, event))
        return tuple(chunks)

    async def _fetch_batches(
        self, request: chat_pb2.ChatCompletionRequest, call: UpstreamCall
    ) -> tuple[chat_pb2.StreamChatCompletionBatchesResponse, ...]:
        return grouped(await self._fetch_stream(request, call), write_size(request))


def write_size(request: chat_pb2.ChatCompletionRequest) -> int:
    """Events per upstream socket write for `request`'s scenario: its ``batch``, unless a
    ``chunk_delay`` or a ``rate`` paces the events (then one a write: myrouter_upstream's
    rule; the bench's upstream has no default delay)."""
    scenario = MessageToDict(request.extra).get("scenario") or {}
    if scenario.get("chunk_delay") or scenario.get("rate") is not None:
        return 1
    return int(scenario.get("batch", 1))


def grouped(
    chunks: Sequence[chat_pb2.ChatCompletionChunk], size: int
) -> tuple[chat_pb2.StreamChatCompletionBatchesResponse, ...]:
    """`chunks` as batches messages of `size` chunks each (the last one the rest).

    Grouped by the scenario rather than by the reads of one fetch: how a read
    splits the bytes depends on timing, the upstream's writes do not, and those
    are what a relay reading as fast as the upstream writes gets per read.
    """
    return tuple(
        chat_pb2.StreamChatCompletionBatchesResponse(chunks=chunks[start : start + size])
        for start in range(0, len(chunks), size)
    )


def _call(context: grpc.aio.ServicerContext) -> UpstreamCall:
    """The one upstream request of a cache miss, with the caller's credentials."""
    authorization = dict(context.invocation_metadata() or ()).get("authorization")
    return _fetch_call(authorization if isinstance(authorization, str) else None)


def _startup_call(config: BridgeConfig) -> UpstreamCall:
    """The upstream request of a prefetch: no caller yet, so the service key if any."""
    key = config.api_key
    return _fetch_call(None if key is None else f"Bearer {key.value}")


def _fetch_call(authorization: str | None) -> UpstreamCall:
    return UpstreamCall(
        authorization=authorization or FETCH_AUTHORIZATION,
        request_id=uuid.uuid4().hex,
        using_service_key=True,
        timeout=FETCH_TIMEOUT,
    )


async def serve(config: BridgeConfig, prefetch: Sequence[dict[str, Any]] = ()) -> None:
    """Serve until SIGTERM or SIGINT; print the bound address once listening."""
    upstream = UpstreamClient(config)
    service = FloorService(upstream)
    try:
        await service.prefetch(prefetch, _startup_call(config))
    except BaseException:
        await upstream.aclose()
        raise
    server = grpc_server(config)
    add_chat_service(service, server, max_request_bytes=config.max_request_bytes)
    port = server.add_insecure_port(config.listen.text)
    await server.start()
    print(f"floor listening on {config.listen.with_port(port).text}", flush=True)
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0)
        await upstream.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    add_serve_arguments(parser)  # the bridge's settings, so both get the same gRPC server
    parser.set_defaults(listen="127.0.0.1:0")
    parser.add_argument(
        "--prefetch",
        metavar="SCENARIO",
        type=orjson.loads,
        action="append",
        default=[],
        help="a bench scenario (JSON) whose answers are fetched before listening; repeatable",
    )
    args = parser.parse_args()
    try:
        config = config_from_args(args, os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop.run(serve(config, args.prefetch), config.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
