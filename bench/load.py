"""The benchmark's load generator: one client process, one kind of load, one JSON result.

`bench/run.py` starts this module as separate processes (never inside the
bridge's or the upstream's process) so the client's CPU is accounted apart.
Each mode has a direct twin and a bridge twin that read the *same* upstream
answer (the scenario travels in the request body: as the member ``scenario``
directly, through ``extra`` via the bridge), and the two twins do the same
consumer work per chunk: the direct client splits SSE with the bridge's own
decoder and parses each event with orjson; the bridge client receives one
protobuf message per event (parsed by grpc with upb).

Modes:
  unary-direct / unary-bridge   closed-loop latency of whole completions
  stream-direct / stream-bridge aggregate chunks per second of long streams
  ttfc-direct / ttfc-bridge     time to first chunk of short streams, one at a time
  hold-bridge                   open many slow streams, report when all are open,
                                keep them until stdin closes (the capacity test)
  open-direct / open-bridge     open loop: `concurrency` streams paced by the
                                upstream (its ``rate`` scenario, ``stamp`` on),
                                started evenly over ``--ramp``, each opened once;
                                latency per chunk = arrival - the upstream's stamp
  unary-open-direct / -bridge   open loop: calls at Poisson arrivals, ``--rate``
                                per second, ``--count`` of them measured
  unary-turns                   closed loop, one call at a time, taking turns between
                                the bridges of ``--target A,B,...`` (each turn in a
                                random order), so every bridge's calls meet the same
                                moments of a shared machine; ``lat_ms`` holds one
                                latency per target a turn, in the targets' order

The result (stdout, one JSON line) has ``count``, ``seconds``, latencies in
``lat_ms`` when the mode measures them, ``errors``, and ``cpu``: this process's
own CPU seconds within the measurement window, which `run.py` uses to show the
load generator is not the bottleneck. The open-loop modes also print
``{"window": "start"}`` and ``{"window": "end"}`` lines at the window's edges
(`run.py` reads the servers' CPU at those moments), and add ``lag_ms``: how late
this client itself was (a 10 ms sleep's oversleep, every 10 ms of the window, for
streams; each call's start after its scheduled time, for unary), so a reader can
tell a slow client from a slow bridge. ``bench/goload`` (Go) has the same
command line and output for its modes.

The bridge modes that stream take ``--rpc``: which of the bridge's streaming RPCs
to call (`RPCS`: ``per_event``, StreamChatCompletion; ``batches``,
StreamChatCompletionBatches with ``--max-delay`` seconds, 0 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import resource
import select
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
import httpx
import orjson

from bridge.sse import DONE, SSEDecoder
from bridge.transport import AiohttpTransport
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

MODEL = "myrouter/echo"
TOKEN = "bench-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)


def emit(message: Any) -> None:
    """`message` as one JSON line on stdout, every byte of it.

    Why not `print`: under ``PYTHONUNBUFFERED`` (set in many CI and container
    environments) `sys.stdout` writes straight to the pipe, and a partial write of
    a long line (a result carries every latency measured, megabytes) is not
    retried: the harness read a line cut at 64 KiB. So the bytes are written here
    until none is left, waiting for the pipe when it is full.
    """
    view = memoryview(orjson.dumps(message) + b"\n")
    while view:
        try:
            view = view[os.write(1, view) :]
        except BlockingIOError:
            select.select([], [1], [])


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counter:
    """Chunks received, errors seen, and whether workers should stop."""

    __slots__ = ("chunks", "errors", "first_error", "stop")

    def __init__(self) -> None:
        self.chunks = 0
        self.errors = 0
        self.first_error = ""
        self.stop = False

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]


# --------------------------------------------------------------------------- #
# Clients: the direct one (httpx) and the bridge one (grpc.aio)
# --------------------------------------------------------------------------- #


def bridge_request(scenario: dict[str, Any]) -> chat_pb2.ChatCompletionRequest:
    """The request every gRPC mode sends (bench/floor.py pre-builds its answers from it)."""
    request = chat_pb2.ChatCompletionRequest(
        model=MODEL, messages=[chat_pb2.ChatMessage(role="user", content="hello")]
    )
    request.extra.update({"scenario": scenario})
    return request


OnChunk = Callable[[str], None]
"""Called with each chunk's ``system_fingerprint`` (the upstream's stamp, when it stamps)."""
RpcCall = Callable[
    [chat_pb2_grpc.ChatServiceStub, chat_pb2.ChatCompletionRequest, OnChunk], Awaitable[None]
]


async def _per_event(
    stub: chat_pb2_grpc.ChatServiceStub, request: chat_pb2.ChatCompletionRequest, on_chunk: OnChunk
) -> None:
    """StreamChatCompletion: one message per event."""
    async for chunk in stub.StreamChatCompletion(request, metadata=METADATA):
        on_chunk(chunk.system_fingerprint)


async def _batches(
    stub: chat_pb2_grpc.ChatServiceStub,
    request: chat_pb2.ChatCompletionRequest,
    on_chunk: OnChunk,
    max_delay: float = 0.0,
) -> None:
    """StreamChatCompletionBatches: one message per upstream read (or per `max_delay`);
    every chunk of a message is handed over as the message arrives."""
    batches = chat_pb2.StreamChatCompletionBatchesRequest(request=request)
    if max_delay > 0:
        batches.max_delay.FromNanoseconds(int(max_delay * 1e9))
    async for message in stub.StreamChatCompletionBatches(batches, metadata=METADATA):
        for chunk in message.chunks:
            on_chunk(chunk.system_fingerprint)


RPCS: Final[dict[str, RpcCall]] = {"per_event": _per_event, "batches": _batches}
"""The bridge's streaming RPCs, by the name ``--rpc`` (and `bench.run.Variant.rpc`) gives
them: a call streams one request and hands every chunk it carries to `on_chunk`, in
order, however the RPC groups chunks into messages."""


class Window:
    """The measured window, in wall-clock nanoseconds: the clock of the upstream's stamps."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end

    def __contains__(self, ns: int) -> bool:
        return self.start <= ns < self.end


def poisson_arrivals(rate: float, count: int, rng: random.Random) -> list[float]:
    """`count` arrival times (seconds from 0) of a Poisson process of `rate` per second:
    exponential gaps, so the calls do not come in step with anything the server does."""
    at = 0.0
    out = []
    for _ in range(count):
        at += rng.expovariate(rate)
        out.append(at)
    return out


class Direct:
    """An httpx client calling the upstream itself, the way an application would."""

    def __init__(
        self, base_url: str, concurrency: int, scenario: dict[str, Any], engine: str
    ) -> None:
        # "aiohttp" (the default): the same httpx transport the bridge uses, so both
        # sides move bytes with the same engine and the difference is the bridge.
        # "httpx": httpx's own transport (httpcore + h11), for reference.
        transport = (
            AiohttpTransport(max_connections=concurrency + 8) if engine == "aiohttp" else None
        )
        self.client = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            limits=httpx.Limits(
                max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8
            ),
            timeout=httpx.Timeout(120.0),
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        self.scenario = scenario

    def body(self, stream: bool) -> bytes:
        return orjson.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hello"}],
                "stream": stream,
                "scenario": self.scenario,
            }
        )

    async def unary(self, body: bytes) -> None:
        response = await self.client.post(
            "chat/completions", content=body, headers={"content-type": "application/json"}
        )
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        orjson.loads(response.content)

    async def stream(self, body: bytes, counter: Counter, first: list[float] | None) -> None:
        async with self.client.stream(
            "POST",
            "chat/completions",
            content=body,
            headers={"content-type": "application/json", "accept": "text/event-stream"},
        ) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            decoder = SSEDecoder()
            loads = orjson.loads
            async for raw in response.aiter_raw():
                for event in decoder.feed(raw):
                    if event.data == DONE:
                        return
                    loads(event.data)
                    if first is not None and not first:
                        first.append(time.perf_counter())
                    counter.chunks += 1
            raise RuntimeError("stream ended before [DONE]")

    async def stamps(self, body: bytes, on_chunk: OnChunk) -> None:
        """A stream, `on_chunk` called with each event's stamp (the same consumer work).

        `stream`'s loop, written out again on purpose: `stream` is the direct baseline,
        and any shared form costs it per read (the cheapest, a callback per read: about
        +0.1 µs a read in a local A/B, 2-3% of the loop when each read holds one event),
        which would lower the figure the bridge is compared with.
        """
        async with self.client.stream(
            "POST",
            "chat/completions",
            content=body,
            headers={"content-type": "application/json", "accept": "text/event-stream"},
        ) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            decoder = SSEDecoder()
            loads = orjson.loads
            async for raw in response.aiter_raw():
                for event in decoder.feed(raw):
                    if event.data == DONE:
                        return
                    on_chunk(loads(event.data).get("system_fingerprint", ""))
            raise RuntimeError("stream ended before [DONE]")

    async def aclose(self) -> None:
        await self.client.aclose()


class Bridge:
    """A grpc.aio client of the bridge, spreading calls over a few connections."""

    def __init__(
        self,
        target: str,
        channels: int,
        scenario: dict[str, Any],
        rpc: str = "per_event",
        max_delay: float = 0.0,
    ) -> None:
        self.rpc: RpcCall = (
            functools.partial(_batches, max_delay=max_delay) if rpc == "batches" else RPCS[rpc]
        )
        # Separate subchannel pools: each channel gets its own TCP connection, so
        # SO_REUSEPORT workers each get a share of the calls.
        self.channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(channels)
        ]
        self.stubs = [chat_pb2_grpc.ChatServiceStub(channel) for channel in self.channels]
        self.next = 0
        self.scenario = scenario

    def request(self) -> chat_pb2.ChatCompletionRequest:
        return bridge_request(self.scenario)

    def stub(self) -> chat_pb2_grpc.ChatServiceStub:
        self.next = (self.next + 1) % len(self.stubs)
        return self.stubs[self.next]

    async def ready(self) -> None:
        for channel in self.channels:
            await asyncio.wait_for(channel.channel_ready(), 30)

    async def unary(self, request: chat_pb2.ChatCompletionRequest) -> None:
        await self.stub().CreateChatCompletion(request, metadata=METADATA)

    async def stream(
        self, request: chat_pb2.ChatCompletionRequest, counter: Counter, first: list[float] | None
    ) -> None:
        def on_chunk(_stamp: str) -> None:
            if first is not None and not first:
                first.append(time.perf_counter())
            counter.chunks += 1

        await self.rpc(self.stub(), request, on_chunk)

    async def stamps(self, request: chat_pb2.ChatCompletionRequest, on_chunk: OnChunk) -> None:
        await self.rpc(self.stub(), request, on_chunk)

    async def aclose(self) -> None:
        for channel in self.channels:
            await channel.close()


# --------------------------------------------------------------------------- #
# Load shapes
# --------------------------------------------------------------------------- #


async def _windowed(
    worker: Callable[[Counter, list[float]], Awaitable[None]],
    concurrency: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """Run `concurrency` copies of `worker` in a loop; measure the window after `warmup`."""
    counter = Counter()
    latencies: list[float] = []

    async def loop() -> None:
        while not counter.stop:
            try:
                await worker(counter, latencies)
            except Exception as exc:
                counter.error(exc)
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    latencies.clear()
    chunks0, cpu0, t0 = counter.chunks, _cpu(), time.perf_counter()
    _window_edge("start")
    await asyncio.sleep(duration)
    chunks1, cpu1, t1 = counter.chunks, _cpu(), time.perf_counter()
    _window_edge("end")
    measured = list(latencies)
    # What is in flight is cancelled, not awaited: 256 streams of 500 chunks each would
    # take seconds to finish, which the window does not count (bench/run.py reads the
    # servers' CPU at the window's edges).
    counter.stop = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "count": chunks1 - chunks0,
        "seconds": t1 - t0,
        "cpu": cpu1 - cpu0,
        "lat_ms": measured,
        "errors": counter.errors,
        "first_error": counter.first_error,
    }


async def _unary_caller(
    args: argparse.Namespace, scenario: dict[str, Any], *, direct: bool
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """One unary call of the measured side (the API directly, or the bridge), and its close."""
    if direct:
        client = Direct(args.target, args.concurrency, scenario, args.http)
        body = client.body(stream=False)

        async def call_direct() -> None:
            await client.unary(body)

        return call_direct, client.aclose
    bridge = Bridge(args.target, args.channels, scenario)
    await bridge.ready()
    request = bridge.request()

    async def call_bridge() -> None:
        await bridge.unary(request)

    return call_bridge, bridge.aclose


async def run_unary(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    call, close = await _unary_caller(args, scenario, direct=args.mode == "unary-direct")

    async def worker(counter: Counter, latencies: list[float]) -> None:
        start = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - start) * 1000)
        counter.chunks += 1

    try:
        return await _windowed(worker, args.concurrency, args.warmup, args.duration)
    finally:
        await close()


async def run_unary_turns(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    """One call to each of the comma-separated targets a turn; the turn's latencies
    appended together in the targets' order (so ``lat_ms[i::n]`` are target i's,
    whenever the window closes).

    Each turn calls them in a random order (``--seed``): in a fixed cyclic order each
    bridge would always follow the same other one, and meet whatever that one still
    does after its answer (a Redis write in the background, say) on every call.
    """
    bridges = [Bridge(target, 1, scenario) for target in args.target.split(",")]
    for bridge in bridges:
        await bridge.ready()
    request = bridges[0].request()
    rng = random.Random(args.seed)

    async def worker(counter: Counter, latencies: list[float]) -> None:
        took = [0.0] * len(bridges)
        for index in rng.sample(range(len(bridges)), len(bridges)):
            start = time.perf_counter()
            await bridges[index].unary(request)
            took[index] = (time.perf_counter() - start) * 1000
        latencies.extend(took)
        counter.chunks += len(bridges)

    try:
        return await _windowed(worker, 1, args.warmup, args.duration)
    finally:
        for bridge in bridges:
            await bridge.aclose()


async def run_stream(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    """Streams back to back; ``ttfc`` modes record the time to the first chunk of each."""
    ttfc = args.mode.startswith("ttfc")
    stream: Callable[[Counter, list[float] | None], Awaitable[None]]
    if args.mode.endswith("direct"):
        direct = Direct(args.target, args.concurrency, scenario, args.http)
        body = direct.body(stream=True)

        async def stream(counter: Counter, first: list[float] | None) -> None:
            await direct.stream(body, counter, first)

        close: Callable[[], Awaitable[None]] = direct.aclose
    else:
        bridge = Bridge(args.target, args.channels, scenario, args.rpc, args.max_delay)
        await bridge.ready()
        request = bridge.request()

        async def stream(counter: Counter, first: list[float] | None) -> None:
            await bridge.stream(request, counter, first)

        close = bridge.aclose

    async def worker(counter: Counter, latencies: list[float]) -> None:
        if not ttfc:
            await stream(counter, None)
            return
        first: list[float] = []
        start = time.perf_counter()
        await stream(counter, first)
        if first:
            latencies.append((first[0] - start) * 1000)

    try:
        return await _windowed(worker, args.concurrency, args.warmup, args.duration)
    finally:
        await close()


async def run_hold(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    """Open `concurrency` slow streams (of `--rpc`), say READY when each has a chunk, hold
    until stdin ends."""
    bridge = Bridge(args.target, args.channels, scenario, args.rpc, args.max_delay)
    await bridge.ready()
    request = bridge.request()
    counter = Counter()
    opened = 0
    all_open = asyncio.Event()

    async def one() -> None:
        seen = False

        def on_chunk(_stamp: str) -> None:
            nonlocal opened, seen
            counter.chunks += 1
            if not seen:
                seen = True
                opened += 1
                if opened == args.concurrency:
                    all_open.set()

        try:
            await bridge.rpc(bridge.stub(), request, on_chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            counter.error(exc)
            all_open.set()  # do not wait forever for a stream that failed

    tasks = []
    start = time.perf_counter()
    for index in range(args.concurrency):
        tasks.append(asyncio.create_task(one()))
        if index % 100 == 99:
            await asyncio.sleep(0.05)  # a ramp, not a thundering herd
    await asyncio.wait_for(all_open.wait(), 120)
    ramp = time.perf_counter() - start
    emit({"ready": opened, "ramp_s": ramp})
    chunks0, cpu0, t0 = counter.chunks, _cpu(), time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    chunks1, cpu1, t1 = counter.chunks, _cpu(), time.perf_counter()
    still_open = sum(1 for task in tasks if not task.done())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await bridge.aclose()
    return {
        "count": chunks1 - chunks0,
        "seconds": t1 - t0,
        "cpu": cpu1 - cpu0,
        "open": still_open,
        "ramp_s": ramp,
        "errors": counter.errors,
        "first_error": counter.first_error,
    }


def _window_edge(edge: str) -> None:
    emit({"window": edge})


async def _tick_lag(window: Window, period: float = 0.01) -> list[float]:
    """How late a `period` sleep wakes, each time, over the window (ms): this loop's lag."""
    lags: list[float] = []
    await asyncio.sleep(max(0.0, (window.start - time.time_ns()) / 1e9))
    while True:
        before = time.perf_counter()
        await asyncio.sleep(period)
        late = (time.perf_counter() - before - period) * 1000
        if time.time_ns() >= window.end:
            return lags
        lags.append(late)


async def run_open(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    """Open loop: `concurrency` paced streams, started evenly over `ramp`; each chunk's
    latency (its arrival against the upstream's stamp) and count over the window."""
    begin = time.time_ns()
    window = Window(begin + int((args.ramp + args.warmup) * 1e9), 0)
    window.end = window.start + int(args.duration * 1e9)
    counter = Counter()
    latencies: list[float] = []
    clock = time.time_ns

    def on_chunk(stamp: str) -> None:
        now = clock()
        if now in window:
            counter.chunks += 1
            if stamp:
                latencies.append((now - int(stamp)) / 1e6)

    open_stream: Callable[[], Awaitable[None]]
    if args.mode == "open-direct":
        direct = Direct(args.target, args.concurrency, scenario, args.http)
        body = direct.body(stream=True)

        async def open_stream() -> None:
            await direct.stamps(body, on_chunk)

        close: Callable[[], Awaitable[None]] = direct.aclose
    else:
        bridge = Bridge(args.target, args.channels, scenario, args.rpc, args.max_delay)
        await bridge.ready()
        request = bridge.request()

        async def open_stream() -> None:
            await bridge.stamps(request, on_chunk)

        close = bridge.aclose

    async def one(index: int) -> None:
        await asyncio.sleep(args.ramp * index / args.concurrency)
        try:
            await open_stream()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not counter.stop:  # ended by us after the window: not a failure
                counter.error(exc)

    # The window is wall-clock (the stamps' clock); begin + x s is loop time + x s.
    tasks = [asyncio.create_task(one(index)) for index in range(args.concurrency)]
    ticks = asyncio.create_task(_tick_lag(window))
    await asyncio.sleep(max(0.0, (window.start - time.time_ns()) / 1e9))
    cpu0 = _cpu()
    _window_edge("start")
    await asyncio.sleep(max(0.0, (window.end - time.time_ns()) / 1e9))
    cpu1 = _cpu()
    _window_edge("end")
    counter.stop = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lags = await ticks
    await close()
    return {
        "count": counter.chunks,
        "seconds": (window.end - window.start) / 1e9,
        "cpu": cpu1 - cpu0,
        "lat_ms": latencies,
        "lag_ms": lags,
        "errors": counter.errors,
        "first_error": counter.first_error,
    }


async def run_unary_open(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    """Open loop: calls at Poisson arrivals of `rate` per second; the first `warmup`
    seconds' worth are not measured, then `count` are. Each call's latency runs from
    the moment it starts; how late it started is its lag."""
    call, close = await _unary_caller(args, scenario, direct=args.mode == "unary-open-direct")

    warm = int(args.rate * args.warmup)
    arrivals = poisson_arrivals(args.rate, warm + args.count, random.Random(args.seed))
    counter = Counter()
    latencies: list[float] = []
    lags: list[float] = []

    async def one(index: int, due: float) -> None:
        start = time.perf_counter()
        try:
            await call()
        except Exception as exc:
            counter.error(exc)
            return
        if index >= warm:
            latencies.append((time.perf_counter() - start) * 1000)
            lags.append((start - due) * 1000)
            counter.chunks += 1

    begin = time.perf_counter()
    tasks = []
    cpu0 = t0 = 0.0
    for index, at in enumerate(arrivals):
        due = begin + at
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if index == warm:
            cpu0, t0 = _cpu(), time.perf_counter()
            _window_edge("start")
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    cpu1, t1 = _cpu(), time.perf_counter()
    _window_edge("end")
    await close()
    return {
        "count": counter.chunks,
        "seconds": t1 - t0,
        "cpu": cpu1 - cpu0,
        "lat_ms": latencies,
        "lag_ms": lags,
        "errors": counter.errors,
        "first_error": counter.first_error,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "mode",
        choices=[
            "unary-direct",
            "unary-bridge",
            "stream-direct",
            "stream-bridge",
            "ttfc-direct",
            "ttfc-bridge",
            "hold-bridge",
            "open-direct",
            "open-bridge",
            "unary-open-direct",
            "unary-open-bridge",
            "unary-turns",
        ],
    )
    parser.add_argument("--target", required=True, help="upstream base URL or bridge host:port")
    parser.add_argument("--scenario", required=True, help="the upstream scenario, JSON")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--channels", type=int, default=4, help="gRPC connections (bridge modes)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument(
        "--rpc", choices=sorted(RPCS), default="per_event", help="streaming RPC (bridge modes)"
    )
    parser.add_argument(
        "--max-delay",
        type=float,
        default=0.0,
        help="batches: the bridge's max_delay, seconds (0: one message per upstream read)",
    )
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="open: seconds over which the streams start"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="unary-open: calls per second")
    parser.add_argument("--count", type=int, default=1000, help="unary-open: calls measured")
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="unary-open: the arrivals' seed; unary-turns: the order's",
    )
    parser.add_argument(
        "--http", choices=["aiohttp", "httpx"], default="aiohttp", help="direct modes' transport"
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of this client (both sides use the same one; uvloop by default, "
        "as the bridge does, so the client spends less CPU per chunk)",
    )
    return parser


def main() -> int:
    args = _parser().parse_args()
    scenario = orjson.loads(args.scenario)
    if args.mode == "unary-turns":
        coro = run_unary_turns(args, scenario)
    elif args.mode.startswith("unary-open"):
        coro = run_unary_open(args, scenario)
    elif args.mode.startswith("unary"):
        coro = run_unary(args, scenario)
    elif args.mode.startswith("open"):
        coro = run_open(args, scenario)
    elif args.mode == "hold-bridge":
        coro = run_hold(args, scenario)
    else:
        coro = run_stream(args, scenario)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
