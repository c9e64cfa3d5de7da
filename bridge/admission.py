"""Which RPCs may run: a cap on how many at once, and the drain when the bridge shuts down.

The server owns one `Admission` (its lifecycle decides when to drain and when to
abort) and hands it to the service, which admits each RPC as it starts and
releases it as it ends: work per RPC, never per chunk. A call over the cap, or
one that arrives while draining, is refused at once rather than queued, so
memory stays bounded and the caller (or its mesh) can go elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import BridgeOverloaded, ShuttingDown

__all__ = ["Admission"]


class Admission:
    """The handler task of every RPC in progress, and whether new ones are let in."""

    def __init__(self, *, max_calls: int, shutdown_grace: float) -> None:
        self._max_calls = max_calls
        self._shutdown_grace = shutdown_grace
        self._active: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._aborting = False

    @property
    def active_calls(self) -> int:
        return len(self._active)

    def admit(self) -> asyncio.Task[Any]:
        """Register the current RPC, or refuse it: over the cap, or while shutting down."""
        if self._draining:
            raise ShuttingDown("the bridge is shutting down; retry on another instance")
        if len(self._active) >= self._max_calls:
            raise BridgeOverloaded(
                f"the bridge already serves {self._max_calls} calls "
                "(max_concurrent_rpcs); retry later or on another instance"
            )
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        return task

    def release(self, task: asyncio.Task[Any]) -> None:
        """The RPC admitted as `task` has ended, whichever way."""
        self._active.discard(task)

    def shutdown_abort(self, task: asyncio.Task[Any] | None) -> ShuttingDown | None:
        """The error for an RPC that `abort_all` cancelled; None for any other cancellation.

        The cancellation is taken back (``uncancel``), so the RPC can still send
        this error as its status instead of ending CANCELLED.
        """
        if not self._aborting or task is None:
            return None
        task.uncancel()
        return ShuttingDown(
            f"the bridge shut down before the call finished (grace period "
            f"{self._shutdown_grace:g} s); retry on another instance"
        )

    def start_draining(self) -> None:
        """Refuse new RPCs from now on (the listener closes too; this covers the gap)."""
        self._draining = True

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until no RPC is in progress, up to `seconds`; True if none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._active and loop.time() < deadline:
            await asyncio.wait(set(self._active), timeout=deadline - loop.time())
        return not self._active

    def abort_all(self) -> int:
        """Cancel every RPC in progress; each ends with UNAVAILABLE and closes its upstream."""
        self._draining = self._aborting = True
        for task in self._active:
            task.cancel()
        return len(self._active)
