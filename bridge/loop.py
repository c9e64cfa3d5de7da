"""Which asyncio event loop runs the bridge process.

Why uvloop by default: the relay's cost per chunk is mostly event-loop and
grpc.aio machinery (a completion handed from grpc's poller thread to the loop
for every message written), not our own code. uvloop runs that machinery in
C (libuv); measured, it cuts the bridge's CPU per relayed chunk by ~15% and
raises stream throughput accordingly (BENCHMARKS.md). grpc.aio runs on any
asyncio loop, uvloop included. "auto" falls back to asyncio's own loop where
uvloop is not installed (it has no Windows build).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("bridge.loop")


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

    if name == "uvloop":
        import uvloop

        return uvloop.run(logged())
    return asyncio.run(logged())


__all__ = ["chosen", "run", "uvloop_available"]
