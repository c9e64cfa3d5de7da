"""Which asyncio event loop runs the bridge process.

Why uvloop by default: the relay's cost per chunk is mostly event-loop and
grpc.aio machinery (a completion handed from grpc's poller thread to the loop
for every message written), not our own code. uvloop runs that machinery in
C (libuv), which cuts the bridge's CPU per relayed chunk (BENCHMARKS.md, "What
each change bought"). grpc.aio runs on any
asyncio loop, uvloop included. "auto" falls back to asyncio's own loop where
uvloop is not installed (it has no Windows build).

The process also runs with a higher young-generation threshold for Python's
cyclic garbage collector (`YOUNG_COLLECTION_THRESHOLD`), for as long as the
loop runs: see there why.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("bridge.loop")

YOUNG_COLLECTION_THRESHOLD = 10_000
"""Net new container objects before a young collection; CPython's default is 700.

A relay with hundreds of open streams keeps a few thousand objects in flight at
any moment (each stream's current event, chunk, futures and frames), so with
700 every young collection finds them alive and promotes them, and the older
generations fill and are collected in turn. With 10,000 the in-flight objects
die by reference count before a collection comes (the relay makes no reference
cycles to wait for). Figures: BENCHMARKS.md, "The per-event path"."""


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def chosen(event_loop: str) -> str:
    """The loop `event_loop` ("auto", "uvloop", "asyncio") stands for on this machine."""
    if event_loop == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    return event_loop


def run(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """Run `main` to completion on the chosen loop, like `asyncio.run`."""
    name = chosen(event_loop)

    async def logged() -> T:
        log.info("event loop: %s (%s)", name, type(asyncio.get_running_loop()).__module__)
        return await main

    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    try:
        if name == "uvloop":
            import uvloop

            return uvloop.run(logged())
        return asyncio.run(logged())
    finally:
        gc.set_threshold(*thresholds)


__all__ = ["YOUNG_COLLECTION_THRESHOLD", "chosen", "run", "uvloop_available"]
