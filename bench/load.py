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

The result (stdout, one JSON line) has ``count``, ``seconds``, latencies in
``lat_ms`` when the mode measures them, ``errors``, and ``cpu``: this process's
own CPU seconds within the measurement window, which `run.py` uses to show the
load generator is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import orjson

from bridge.sse import DONE, SSEDecoder
from bridge.transport import AiohttpTransport
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

MODEL = "myrouter/echo"
TOKEN = "bench-token"
METADATA = (("authorization", f"Bearer {TOKEN}"),)


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

    async def aclose(self) -> None:
        await self.client.aclose()


class Bridge:
    """A grpc.aio client of the bridge, spreading calls over a few connections."""

    def __init__(
        self,
        target: str,
        channels: int,
        scenario: dict[str, Any],
        max_delay: float | None = None,
    ) -> None:
        # max_delay None: StreamChatCompletion, one message per chunk; a number (seconds,
        # 0 included): StreamChatCompletionBatches with that max_delay.
        self.max_delay = max_delay
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
        if self.max_delay is not None:
            batches = chat_pb2.StreamChatCompletionBatchesRequest(request=request)
            batches.max_delay.FromNanoseconds(round(self.max_delay * 1e9))
            async for message in self.stub().StreamChatCompletionBatches(
                batches, metadata=METADATA
            ):
                if first is not None and not first:
                    first.append(time.perf_counter())
                counter.chunks += len(message.chunks)
            return
        call = self.stub().StreamChatCompletion(request, metadata=METADATA)
        async for _chunk in call:
            if first is not None and not first:
                first.append(time.perf_counter())
            counter.chunks += 1

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
    await asyncio.sleep(duration)
    chunks1, cpu1, t1 = counter.chunks, _cpu(), time.perf_counter()
    measured = list(latencies)
    counter.stop = True
    await asyncio.wait(tasks, timeout=30)
    for task in tasks:
        task.cancel()
    return {
        "count": chunks1 - chunks0,
        "seconds": t1 - t0,
        "cpu": cpu1 - cpu0,
        "lat_ms": measured,
        "errors": counter.errors,
        "first_error": counter.first_error,
    }


async def run_unary(args: argparse.Namespace, scenario: dict[str, Any]) -> dict[str, Any]:
    if args.mode == "unary-direct":
        direct = Direct(args.target, args.concurrency, scenario, args.http)
        body = direct.body(stream=False)

        async def call() -> None:
            await direct.unary(body)

        close: Callable[[], Awaitable[None]] = direct.aclose
    else:
        bridge = Bridge(args.target, args.channels, scenario)
        await bridge.ready()
        request = bridge.request()

        async def call() -> None:
            await bridge.unary(request)

        close = bridge.aclose

    async def worker(counter: Counter, latencies: list[float]) -> None:
        start = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - start) * 1000)
        counter.chunks += 1

    try:
        return await _windowed(worker, args.concurrency, args.warmup, args.duration)
    finally:
        await close()


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
        bridge = Bridge(args.target, args.channels, scenario, args.max_delay)
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
    """Open `concurrency` slow streams, say READY when each has a chunk, hold until stdin ends."""
    bridge = Bridge(args.target, args.channels, scenario)
    await bridge.ready()
    request = bridge.request()
    counter = Counter()
    opened = 0
    all_open = asyncio.Event()

    async def one() -> None:
        nonlocal opened
        first: list[float] = []
        try:
            if args.max_delay is None:
                call = bridge.stub().StreamChatCompletion(request, metadata=METADATA)
            else:
                batches = chat_pb2.StreamChatCompletionBatchesRequest(request=request)
                batches.max_delay.FromNanoseconds(round(args.max_delay * 1e9))
                call = bridge.stub().StreamChatCompletionBatches(batches, metadata=METADATA)
            async for _message in call:
                counter.chunks += 1  # one chunk a second: one message each
                if not first:
                    first.append(0.0)
                    opened += 1
                    if opened == args.concurrency:
                        all_open.set()
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
    print(orjson.dumps({"ready": opened, "ramp_s": ramp}).decode(), flush=True)
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
        ],
    )
    parser.add_argument("--target", required=True, help="upstream base URL or bridge host:port")
    parser.add_argument("--scenario", required=True, help="the upstream scenario, JSON")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--channels", type=int, default=4, help="gRPC connections (bridge modes)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument(
        "--max-delay",
        type=float,
        default=None,
        help="bridge modes but unary: call StreamChatCompletionBatches with this max_delay "
        "in seconds (0: one message per upstream read) and count the chunks of each message; "
        "unset: StreamChatCompletion, one message per chunk",
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
    if args.mode.startswith("unary"):
        coro = run_unary(args, scenario)
    elif args.mode == "hold-bridge":
        coro = run_hold(args, scenario)
    else:
        coro = run_stream(args, scenario)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
