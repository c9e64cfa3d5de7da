"""How fast a call fails while its model's breaker is open, and what retries cost a success.

    .venv/bin/python bench/breaker_open.py [--calls 2000]

1. A bridge (in this process, its own event loop in a thread, as the tests run
   it) towards the embedded upstream answering 503 until the breaker of
   ``myrouter/echo`` opens; then N unary calls through a generated stub, each
   failing fast with UPSTREAM_CIRCUIT_OPEN: the caller's p50/p99 round trip,
   beside N successful calls to the other model for the same path's floor.
2. In memory: `Retries.run` around an attempt that returns at once, against
   the attempt awaited alone: the retry layer's cost on the success path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bridge.config import BridgeConfig  # noqa: E402
from bridge.retries import Retries  # noqa: E402
from bridge.server import BridgeServer  # noqa: E402
from bridge.upstream_call import UpstreamCall  # noqa: E402
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc  # noqa: E402
from myrouter_upstream import EmbeddedUpstream, Scenario, UpstreamConfig  # noqa: E402


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1e6:.0f} µs, p99 {p99 * 1e6:.0f} µs"


def _serve(config: BridgeConfig, ready: threading.Event, box: list[object]) -> None:
    async def main() -> None:
        server = BridgeServer(config)
        box.append(await server.start())
        stop = asyncio.Event()
        box.append((asyncio.get_running_loop(), stop))
        ready.set()
        await stop.wait()
        await server.stop(grace=1.0)

    asyncio.run(main())


def open_breaker(calls: int) -> None:
    with EmbeddedUpstream(UpstreamConfig(host="127.0.0.1", port=0)) as upstream:
        config = BridgeConfig(
            listen="127.0.0.1:0",
            upstream_url=upstream.base_url,
            retry_attempts=1,
            breaker_failures=3,
            breaker_cooldown=3600,
        )
        ready, box = threading.Event(), []  # type: ignore[var-annotated]
        thread = threading.Thread(target=_serve, args=(config, ready, box), daemon=True)
        thread.start()
        ready.wait(15)
        port, (loop, stop) = box  # type: ignore[misc]
        metadata = (("authorization", "Bearer bench"),)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)

            def request(model: str) -> chat_pb2.ChatCompletionRequest:
                message = chat_pb2.ChatMessage(role="user", content="hi")
                return chat_pb2.ChatCompletionRequest(model=model, messages=[message])

            upstream.set_scenario(Scenario(kind="status", status=503, models=("myrouter/echo",)))
            for _ in range(3):
                with contextlib.suppress(grpc.RpcError):
                    stub.CreateChatCompletion(request("myrouter/echo"), metadata=metadata)
            for name, model in (
                ("open breaker", "myrouter/echo"),
                ("success", "myrouter/echo-large"),
            ):
                for _ in range(100):  # warm-up
                    with contextlib.suppress(grpc.RpcError):
                        stub.CreateChatCompletion(request(model), metadata=metadata)
                samples = []
                reasons = set()
                for _ in range(calls):
                    started = time.perf_counter()
                    try:
                        stub.CreateChatCompletion(request(model), metadata=metadata)
                        reasons.add("OK")
                    except grpc.RpcError as error:
                        reasons.add(error.code().name)
                    samples.append(time.perf_counter() - started)
                print(
                    f"{name:>13}: {calls} unary calls, {_percentiles(samples)} ({sorted(reasons)})"
                )
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def success_path(calls: int) -> None:
    retries = Retries(BridgeConfig(), {})
    call = UpstreamCall(authorization="Bearer x", request_id="r", using_service_key=False,
                        timeout=10, model="m")  # fmt: skip

    async def attempt(model: str, number: int) -> int:
        return number

    async def alone() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await attempt("m", 1)
        return time.perf_counter() - started

    async def wrapped() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await retries.run(call, attempt)
        return time.perf_counter() - started

    async def main() -> tuple[float, float]:
        best_alone = min([await alone() for _ in range(5)])
        best_wrapped = min([await wrapped() for _ in range(5)])
        return best_alone, best_wrapped

    bare, through = asyncio.run(main())
    print(f"retry layer on the success path: {(through - bare) / calls * 1e9:.0f} ns per call "
          f"({calls} calls, best of 5)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    open_breaker(args.calls)
    success_path(max(args.calls, 100_000))


if __name__ == "__main__":
    main()
