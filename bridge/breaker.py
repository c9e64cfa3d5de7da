"""A circuit breaker per upstream model, so that a model which keeps failing is left alone.

A breaker is closed (calls go), open (calls fail fast with `UpstreamCircuitOpen`
for the cool-down) or half-open (a few probe calls go; enough successes close
it, one failure opens it again). It opens after N consecutive retryable
failures, or when a share of the calls over a sliding window failed (with a
minimum number of calls, so two failures out of three never trip it).

Only retryable failures count (`bridge.retries` decides which): a 400 or a 404
says the model is up. Breakers live in one process: each replica, and each
worker of ``--workers``, judges the upstream by its own calls, which is enough
to stop a sustained outage from being hammered and needs no shared store.

Pure: the clock is injected, nothing here sleeps or does I/O.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "MAX_BREAKERS",
    "OPEN",
    "Breaker",
    "BreakerSettings",
    "Breakers",
    "SlidingCounts",
]

CLOSED = "closed"
HALF_OPEN = "half_open"
OPEN = "open"

MAX_BREAKERS = 1024
"""Models with a breaker at most: one is made at a model's first retryable failure, and
model names come from callers, so their number must not grow without bound."""

Clock = Callable[[], float]
StateChange = Callable[[str, str], None]
"""Told (model, new state) whenever a breaker changes state: the metrics' gauge."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BreakerSettings:
    """When breakers open and for how long (the ``--breaker-*`` settings)."""

    failures: int = 5
    """Consecutive retryable failures that open it (0: no such rule)."""
    failure_rate: float = 0.5
    """Share of failed calls over `window` that opens it (0: no such rule)."""
    min_calls: int = 20
    """Calls in the window before the failure rate counts."""
    window: float = 30.0
    cooldown: float = 10.0
    """Seconds an open breaker fails calls fast before it lets probes through."""
    probes: int = 2
    """Calls let through while half-open; that many successes close it."""

    @property
    def enabled(self) -> bool:
        return self.failures > 0 or self.failure_rate > 0


class SlidingCounts:
    """Two counts over a sliding time window, kept in ten buckets: O(1) to add to,
    O(buckets) to total, memory fixed whatever the traffic."""

    __slots__ = ("_buckets", "_slots", "_span")

    def __init__(self, window: float, buckets: int = 10) -> None:
        self._span = window / buckets
        self._buckets = buckets
        self._slots = [[-1, 0, 0] for _ in range(buckets)]  # [bucket number, first, second]

    def add(self, now: float, first: int, second: int = 0) -> None:
        number = int(now // self._span)
        slot = self._slots[number % self._buckets]
        if slot[0] != number:
            slot[0], slot[1], slot[2] = number, 0, 0
        slot[1] += first
        slot[2] += second

    def totals(self, now: float) -> tuple[int, int]:
        """The two counts over the last window (to the bucket)."""
        oldest = int(now // self._span) - self._buckets
        first = second = 0
        for number, a, b in self._slots:
            if number > oldest:
                first += a
                second += b
        return first, second

    def clear(self) -> None:
        for slot in self._slots:
            slot[0], slot[1], slot[2] = -1, 0, 0


class Breaker:
    """One model's breaker. `admit` before a call; then exactly one of `record` (the
    call's outcome: True, or False for a retryable failure) or `release` (no outcome:
    the caller left)."""

    __slots__ = (
        "_calls",
        "_clock",
        "_consecutive",
        "_on_change",
        "_opened_at",
        "_probe_successes",
        "_probes_out",
        "_settings",
        "model",
        "state",
    )

    def __init__(
        self,
        model: str,
        settings: BreakerSettings,
        clock: Clock = time.monotonic,
        on_change: StateChange | None = None,
    ) -> None:
        self.model = model
        self.state = CLOSED
        self._settings = settings
        self._clock = clock
        self._on_change = on_change
        self._consecutive = 0
        self._calls = SlidingCounts(settings.window)
        self._opened_at = 0.0
        self._probes_out = 0
        self._probe_successes = 0

    def admit(self) -> float | None:
        """None if a call may go now; else the seconds of cool-down left (for RetryInfo)."""
        if self.state is CLOSED:
            return None
        settings = self._settings
        if self.state is OPEN:
            left = self._opened_at + settings.cooldown - self._clock()
            if left > 0:
                return left
            self._probes_out = self._probe_successes = 0
            self._set(HALF_OPEN)
        if self._probes_out < settings.probes:
            self._probes_out += 1
            return None
        return min(1.0, settings.cooldown)  # the probes are out: ask again soon

    def record(self, ok: bool) -> None:
        settings = self._settings
        if self.state is HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)
            if not ok:
                self._open()
                return
            self._probe_successes += 1
            if self._probe_successes >= settings.probes:
                self._consecutive = 0
                self._calls.clear()
                self._set(CLOSED)
            return
        if self.state is OPEN:
            return  # a call admitted before it opened
        if ok:
            self._consecutive = 0
            if settings.failure_rate > 0:
                self._calls.add(self._clock(), 1)
            return
        self._consecutive += 1
        if settings.failures > 0 and self._consecutive >= settings.failures:
            self._open()
            return
        if settings.failure_rate > 0:
            now = self._clock()
            self._calls.add(now, 1, 1)
            calls, failed = self._calls.totals(now)
            if calls >= settings.min_calls and failed >= settings.failure_rate * calls:
                self._open()

    def release(self) -> None:
        """An admitted call ended without an outcome: its probe slot, if it had one, is free."""
        if self.state is HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._set(OPEN)

    def _set(self, state: str) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(self.model, state)


class Breakers:
    """The breakers of all models, one made at a model's first retryable failure (up to
    `MAX_BREAKERS`): a model that never failed costs one dictionary look-up per call.
    A new breaker reports its closed state to `on_change`, so the state gauge has the
    model's series (0) before it ever opens: a dashboard and an alert see it exist."""

    __slots__ = ("_breakers", "_clock", "_on_change", "settings")

    def __init__(
        self,
        settings: BreakerSettings,
        clock: Clock = time.monotonic,
        on_change: StateChange | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[str, Breaker] = {}

    def get(self, model: str) -> Breaker | None:
        return self._breakers.get(model)

    def failing(self, model: str) -> Breaker | None:
        """The model's breaker, made now if it has none (None when breakers are off, the
        call names no model, or the limit is reached)."""
        breaker = self._breakers.get(model)
        if breaker is None and model and self.settings.enabled:
            if len(self._breakers) >= MAX_BREAKERS:
                return None
            breaker = self._breakers[model] = Breaker(
                model, self.settings, self._clock, self._on_change
            )
            if self._on_change is not None:
                self._on_change(model, CLOSED)
        return breaker

    def states(self) -> dict[str, str]:
        return {model: breaker.state for model, breaker in self._breakers.items()}
