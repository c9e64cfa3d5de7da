"""The mutable state of one running upstream, kept in one object instead of globals.

Two upstreams in one process (a test starting its own next to a shared one)
must not see each other's scenario, recording or id counter, so everything a
server changes at runtime lives here and is reached through the aiohttp app.
The scenario can be switched from a test thread while the loop thread reads
it, hence the lock; the in-flight task set is only touched from the loop.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
from typing import Any

from .config import UpstreamConfig
from .recording import Recorder
from .scenario import Scenario

__all__ = ["UpstreamState"]


class UpstreamState:
    """Current default scenario, request recording, generation ids, in-flight handlers."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.recorder = Recorder(config.max_records)
        self._lock = threading.Lock()
        self._scenario = config.default_scenario
        self._ids = itertools.count(1)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._seen: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.closing = False
        """Set when the server shuts down: handlers cancelled from then on ended in error."""

    @property
    def scenario(self) -> Scenario:
        """The scenario applied to requests that carry none."""
        with self._lock:
            return self._scenario

    def set_scenario(self, scenario: Scenario) -> None:
        with self._lock:
            self._scenario = scenario

    def reset_scenario(self) -> Scenario:
        """Return to the configured default scenario, and return it."""
        with self._lock:
            self._scenario = self.config.default_scenario
            return self._scenario

    def next_gen_id(self) -> str:
        """``gen-1``, ``gen-2``, ... per server (only touched from the loop thread)."""
        return f"gen-{next(self._ids)}"

    def seen(self, request_id: str) -> int:
        """How many requests with this x-request-id arrived, this one included (the latest
        ``max_records`` ids are remembered; only touched from the loop thread)."""
        count = self._seen.pop(request_id, 0) + 1
        self._seen[request_id] = count
        while len(self._seen) > max(1, self.config.max_records):
            self._seen.popitem(last=False)
        return count

    def track(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.add(task)

    def untrack(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)

    def begin_shutdown(self) -> None:
        """Cancel every handler still running (a hanging one would delay shutdown)."""
        self.closing = True
        for task in list(self._in_flight):
            task.cancel()
