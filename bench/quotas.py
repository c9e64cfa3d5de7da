"""What the caller limits add to a call: admit + settle + release, in process and on Redis.

    .venv/bin/python -m bench.quotas [--calls N] [--redis-url URL]

Prints p50/p99 in microseconds of one call's whole accounting (the engine's
admission, its settlement against a usage that differs from the reservation,
and the release of its lease), one call after another on one event loop
(uvloop when installed, as the bridge runs), for a caller with every limit set
(two round trips to Redis) and for one with requests_per_minute alone (one), next
to a bare PING on the same loop: the round trip the machine allows. Without
``--redis-url`` it starts a redis-server of its own on a free loopback port
(without persistence) and stops it at the end. The issue's targets: added p50
at most 50 µs in process, 500 µs with Redis on loopback. Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis.asyncio

from bridge.policy import Limits
from bridge.quotas import MemoryStore, Quotas, RedisStore, Store

HIGH = 10**12
_T = TypeVar("_T")


SHAPES = {
    "all four limits": Limits(HIGH, HIGH, HIGH, HIGH),
    "requests_per_minute only": Limits(requests_per_minute=HIGH),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(store: Store, limits: Limits, calls: int) -> tuple[list[float], list[float]]:
    """What each call waits for (admit, settle, release), and that plus the end's write.

    With Redis the end of a call is written in the background; it is waited for
    (`flush`) after each call, outside the first figure, so the next call does
    not queue behind it.
    """
    quotas = Quotas(store)
    await quotas.start()
    waited, total = [], []
    for i in range(calls + calls // 10):  # the first tenth warms up, unmeasured
        started = time.perf_counter_ns()
        grant = await quotas.admit("bench-caller", limits, 256)
        await quotas.settle(grant, 100)
        await quotas.release(grant)
        returned = time.perf_counter_ns()
        await quotas.flush()
        ended = time.perf_counter_ns()
        if not grant.counted:
            sys.exit("the store failed during the measurement: the figures would be the fast path")
        if i >= calls // 10:
            waited.append((returned - started) / 1000)
            total.append((ended - started) / 1000)
    return waited, total


@contextmanager
def own_redis() -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server not on PATH: install it or pass --redis-url")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        argv = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        process = subprocess.Popen(
            [*argv, "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL
        )
        try:
            for _ in range(500):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait()


def run(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def report(backend: str, shape: str, took: list[float], total: list[float] | None = None) -> None:
    p50, p99 = percentile(took, 0.5), percentile(took, 0.99)
    line = f"{backend:<11} {shape:<26} p50 {p50:7.1f} µs  p99 {p99:8.1f} µs"
    if total is not None:
        line += f"   with the end's write: p50 {percentile(total, 0.5):7.1f} µs"
    print(f"{line}   ({len(took)} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quotas", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--redis-url", help="a Redis to use (default: start one)")
    args = parser.parse_args()
    for shape, limits in SHAPES.items():
        in_process = functools.partial(measure, MemoryStore(), limits, args.calls)
        report("in-process", shape, *run(in_process))
    with own_redis() if args.redis_url is None else _given(args.redis_url) as url:
        for shape, limits in SHAPES.items():

            async def on_redis(limits: Limits = limits) -> tuple[list[float], list[float]]:
                # A generous timeout: this measures the round trips, not the failure mode.
                store = RedisStore(url, timeout=1.0, lease_seconds=600)
                try:
                    return await measure(store, limits, args.calls // 4)
                finally:
                    await store.close()

            report("redis", shape, *run(on_redis))

        async def pings() -> list[float]:
            client = redis.asyncio.Redis.from_url(url)
            took = []
            try:
                for _ in range(args.calls // 4):
                    started = time.perf_counter_ns()
                    await client.ping()
                    took.append((time.perf_counter_ns() - started) / 1000)
            finally:
                await client.aclose()
            return took

        report("redis", "one PING (the floor)", run(pings))


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
