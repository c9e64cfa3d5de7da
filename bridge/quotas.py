"""Per-caller limits and token budgets: one decision at admission, one settlement at the end.

A call is admitted once, before anything goes upstream (`Quotas.admit`), and
accounted once when it ends (`Quotas.settle`, then `Quotas.release`); nothing
runs per chunk, and a stream that has started is never cut for budget.

The limits (a caller's `bridge.policy.Limits`; None means no limit):

* ``concurrent``          calls of the caller in flight at once: a lease, held
                          from admission until `release`
* ``requests_per_minute`` calls admitted in the last 60 s
* ``tokens_per_minute``   tokens counted in the last 60 s
* ``tokens_per_day``      tokens counted in the last 24 h

When a budget blocks: a call that would cost ``reserve`` tokens is refused when
the tokens already counted in the window, outstanding reservations included,
plus ``reserve`` exceed the limit (``counted + reserve > limit``). A call never
starts on a budget it cannot afford as far as its reservation goes, so the limit
is a ceiling, not a threshold a call may jump over by its own size. A request
whose reservation alone exceeds a limit can never pass: it is refused without a
RetryInfo (waiting will not help; a smaller ``max_tokens`` will). The
reservation is the request's ``max_tokens`` (or ``max_completion_tokens``), else
the configured estimate; `settle` replaces it with the usage the upstream
reported, so the window can end above the limit by what the prompts of calls in
flight cost; later calls then wait until it falls back under. A request is one
unit of ``requests_per_minute``, refused when ``counted + 1 > limit``.

Windows are sliding window counters (two fixed buckets per limit, the previous
one weighted by how much of it still lies inside the window), the algorithm of
Cloudflare's rate limiter and of `limits`' sliding window counter: O(1) state
per caller and limit whatever the cost of a hit, and no burst of twice the
limit at a bucket edge as fixed windows allow. A settlement adjusts the bucket
its reservation went into, if that bucket is still in the window.

Backends, chosen by ``--limits-redis-url``:

* `MemoryStore` (no URL, the default): counters in this process, so each
  replica (and each ``--workers`` process) enforces the limits on its own.
* `RedisStore`: counters shared by every replica in one Redis. Each decision
  is one round trip: one Lua script reads every bucket and the leases, decides,
  and counts only when all limits pass, atomically. The end of a call (its
  settlement and its lease) is one more script, written in a task of its own so
  that the caller's status never waits for it. Concurrency leases are a
  sorted set scored by their expiry, so the leases of a replica that died
  expire by themselves (after ``lease_seconds``, which outlasts the longest call).

Why redis-py scripts rather than `limits` (evaluated, 5.8): its strategies
cover one limit per round trip, none decides several limits together (a refused
fixed-window hit stays counted; a passed one has no refund), its sliding window
counter refuses a negative cost once over the limit (so a settlement cannot
give tokens back when they are most needed) and has no unconditional add (a
finished stream's surplus must count), its moving window stores one entry per
unit (a million tokens a day is a million list entries), and it has no
concurrency leases; its memory storage reads the wall clock itself and expires
keys in a background task. The hard part, the decision, is a pure function here
(`decide`), shared by both backends and tested with an injected clock; Redis
only holds the numbers and makes the update atomic.

Redis that is down or slow never stalls a call: each round trip has a short
timeout, after which the store counts as down for a second (calls take the
failure mode at once rather than each waiting for the timeout) and is tried
again, so enforcement resumes by itself. The failure mode is ``open`` (admit,
with a rate-limited WARNING and ``bridge_limits_store_failures_total``) or
``closed`` (`LimitsUnavailable`, UNAVAILABLE). A lease whose release failed is
released again once Redis answers, or expires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import redis.asyncio
import redis.backoff
import redis.exceptions
from redis.asyncio.retry import Retry

from .errors import LimitsUnavailable, QuotaExceeded, QuotaViolation
from .policy import Limits

if TYPE_CHECKING:
    from .config import BridgeConfig
    from .metrics import Metrics

__all__ = [
    "CONCURRENT_RETRY_SECONDS",
    "FAILURE_MODES",
    "LEASE_MARGIN_SECONDS",
    "WINDOWS",
    "Grant",
    "MemoryStore",
    "Quotas",
    "RedisStore",
    "Store",
    "StoreUnavailable",
    "WindowCount",
    "decide",
    "redacted_url",
]

log = logging.getLogger("bridge.quotas")

FAILURE_MODES = ("open", "closed")

WINDOWS: dict[str, float] = {
    "requests_per_minute": 60.0,
    "tokens_per_minute": 60.0,
    "tokens_per_day": 86400.0,
}
"""Each windowed limit and its window in seconds, in the order they are checked."""

CONCURRENT_RETRY_SECONDS = 1.0
"""The RetryInfo of a refusal for ``concurrent``: when a call ends is unknown, so a hint."""

LEASE_MARGIN_SECONDS = 60.0
"""How much longer than ``--request-timeout`` a Redis lease lives, should its replica die."""

_DOWN_SECONDS = 1.0
_WARN_EVERY_SECONDS = 60.0
_MAX_PENDING_RELEASES = 10_000


class StoreUnavailable(Exception):
    """The shared store did not answer in time, or failed; `Quotas` applies the failure mode."""


@dataclasses.dataclass(slots=True)
class WindowCount:
    """One windowed limit as a store read it: the bucket counts and where in the bucket we are."""

    name: str
    limit: int
    cost: int
    previous: float
    current: float
    elapsed: float
    """Seconds since the current bucket began (0 <= elapsed < window)."""

    @property
    def window(self) -> float:
        return WINDOWS[self.name]

    @property
    def counted(self) -> float:
        return self.previous * (1.0 - self.elapsed / self.window) + self.current


def decide(
    windows: Sequence[WindowCount], *, leases: int = 0, concurrent: int | None = None
) -> list[QuotaViolation]:
    """Every limit the call would break, each with when it frees; empty: admit.

    Pure, so both stores decide alike: the Redis script applies the same
    inequality (`counted + cost > limit`) before counting anything.
    """
    refused: list[QuotaViolation] = []
    if concurrent is not None and leases >= concurrent:
        refused.append(QuotaViolation("concurrent", concurrent, CONCURRENT_RETRY_SECONDS))
    for w in windows:
        if w.counted + w.cost > w.limit:
            refused.append(QuotaViolation(w.name, w.limit, _frees_in(w)))
    return refused


def _frees_in(w: WindowCount) -> float | None:
    """Seconds until `w.counted + w.cost <= w.limit` if nothing else is counted; None: never."""
    if w.cost > w.limit:
        return None
    room = w.limit - w.cost
    window = w.window
    if w.current <= room:  # the previous bucket's share has to fade enough, in this bucket
        needed = 1.0 - (room - w.current) / w.previous if w.previous > 0 else 0.0
        return max(0.0, window * needed - w.elapsed)
    # The current bucket alone is too full: wait for it to become the previous one and fade.
    fade = 1.0 - room / w.current
    return (window - w.elapsed) + window * fade


@dataclasses.dataclass(slots=True)
class Grant:
    """An admitted call: what it reserved and holds, until `Quotas.settle` and `Quotas.release`."""

    caller_key: str
    reserved: int
    """Tokens counted at admission (0 when no tokens limit applies)."""
    buckets: tuple[tuple[str, int], ...] = ()
    """The token buckets (limit name, bucket number) the reservation went into."""
    lease: str | None = None
    """The concurrency lease held, when a ``concurrent`` limit applies."""
    counted: bool = True
    """False when admitted without counting (the store was down, failing open)."""
    delta: int = 0
    """A correction `Quotas.settle` found and has not written yet (it rides with the lease)."""
    settled: bool = False
    released: bool = False


class Store(Protocol):
    """Where the counters live; `MemoryStore` in this process, `RedisStore` shared."""

    remote: bool
    """True when a write is a round trip: `Quotas` then writes the end of a call off its path."""

    async def admit(
        self,
        caller_key: str,
        limits: Limits,
        reserve: int,
        lease: str | None,
        now: float,
    ) -> list[QuotaViolation] | tuple[tuple[str, int], ...]:
        """Violations (nothing counted), or the token buckets counted into (lease taken)."""
        ...

    async def finish(
        self,
        caller_key: str,
        buckets: tuple[tuple[str, int], ...],
        delta: int,
        lease: str | None,
        now: float,
    ) -> None:
        """Add `delta` to the `buckets` still in their window, and give `lease` back."""
        ...

    async def start(self, within: float) -> None:
        """Get ready for the first call (connections, scripts); StoreUnavailable if it cannot."""
        ...

    async def close(self) -> None: ...


def _costs(limits: Limits, reserve: int) -> list[tuple[str, int, int]]:
    """(name, limit, cost) of each windowed limit that applies."""
    out = []
    for name in WINDOWS:
        limit = getattr(limits, name)
        if limit is not None:
            out.append((name, limit, 1 if name == "requests_per_minute" else reserve))
    return out


def _bucket(name: str, now: float) -> tuple[int, float]:
    """The bucket number of `now` in `name`'s window, and the seconds since it began."""
    window = WINDOWS[name]
    number = math.floor(now / window)
    return number, now - number * window


class MemoryStore:
    """Counters in this process: per replica, and atomic because nothing in it awaits."""

    remote = False

    def __init__(self) -> None:
        # (caller, limit name) -> [bucket number, previous count, current count]
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._leases: dict[str, set[str]] = {}

    def __str__(self) -> str:
        return "in-process counters, per replica"

    def _read(self, caller_key: str, name: str, number: int) -> list[float]:
        state = self._buckets.get((caller_key, name))
        if state is None:
            state = self._buckets[(caller_key, name)] = [number, 0.0, 0.0]
        elif state[0] != number:  # shift: the current bucket becomes the previous one, or both go
            state[1] = state[2] if state[0] == number - 1 else 0.0
            state[0], state[2] = number, 0.0
        return state

    async def admit(
        self, caller_key: str, limits: Limits, reserve: int, lease: str | None, now: float
    ) -> list[QuotaViolation] | tuple[tuple[str, int], ...]:
        counts, states = [], []
        for name, limit, cost in _costs(limits, reserve):
            number, elapsed = _bucket(name, now)
            state = self._read(caller_key, name, number)
            states.append((name, number, cost, state))
            counts.append(WindowCount(name, limit, cost, state[1], state[2], elapsed))
        leases = self._leases.get(caller_key)
        refused = decide(counts, leases=len(leases or ()), concurrent=limits.concurrent)
        if refused:
            return refused
        for _, _, cost, state in states:
            state[2] += cost
        if lease is not None:
            self._leases.setdefault(caller_key, set()).add(lease)
        return tuple(
            (name, number) for name, number, _, _ in states if name != "requests_per_minute"
        )

    async def finish(
        self,
        caller_key: str,
        buckets: tuple[tuple[str, int], ...],
        delta: int,
        lease: str | None,
        now: float,
    ) -> None:
        for name, number in buckets if delta else ():
            state = self._read(caller_key, name, _bucket(name, now)[0])
            if state[0] == number:
                state[2] = max(0.0, state[2] + delta)
            elif state[0] == number + 1:
                state[1] = max(0.0, state[1] + delta)
        leases = self._leases.get(caller_key)
        if lease is not None and leases is not None:
            leases.discard(lease)
            if not leases:
                del self._leases[caller_key]

    async def start(self, within: float) -> None:
        return None

    async def close(self) -> None:
        return None


# KEYS: the leases, then (previous, current) bucket of each windowed limit.
# ARGV: now, lease id ('' for none), lease deadline, concurrent (-1: none),
#       then per window: limit, cost, previous weight, bucket ttl in ms.
# Returns {1} when counted, else {0, leases, previous1, current1, previous2, ...}.
_ADMIT = """
local now = tonumber(ARGV[1])
local concurrent = tonumber(ARGV[4])
local refused = false
local leases = 0
if concurrent >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  leases = redis.call('ZCARD', KEYS[1])
  if leases >= concurrent then refused = true end
end
local counts = {}
for i = 2, #KEYS, 2 do
  local a = 5 + (i - 2) / 2 * 4
  local limit, cost, weight = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local previous = tonumber(redis.call('GET', KEYS[i]) or '0')
  local current = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  counts[#counts + 1] = tostring(previous)
  counts[#counts + 1] = tostring(current)
  if previous * weight + current + cost > limit then refused = true end
end
if refused then return {0, leases, unpack(counts)} end
for i = 2, #KEYS, 2 do
  local a = 5 + (i - 2) / 2 * 4
  redis.call('INCRBY', KEYS[i + 1], ARGV[a + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[a + 3])
end
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
end
return {1}
"""

# KEYS: the leases, then the token buckets; ARGV: delta, lease id ('' for none).
# A bucket that expired stays gone.
_FINISH = """
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], ARGV[1]) < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[1], ARGV[2]) end
return 1
"""


class RedisStore:
    """Counters shared by every replica in one Redis, through redis-py; one script per decision."""

    remote = True

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        lease_seconds: float,
        prefix: str = "bridge:quota",
        max_connections: int = 1000,
    ) -> None:
        # One immediate retry: a pooled connection that a restarted Redis closed is
        # replaced within the same call; the call's timeout bounds both tries. The pool
        # blocks (for at most the timeout) rather than failing when every connection is
        # busy: redis-py sends one command at a time per connection, so a burst of
        # calls needs as many connections as calls in flight (`max_connections`).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(redis.backoff.NoBackoff(), 1),
        )
        self._client: redis.asyncio.Redis = redis.asyncio.Redis(
            connection_pool=pool, retry=Retry(redis.backoff.NoBackoff(), 1)
        )
        self._admit = self._client.register_script(_ADMIT)
        self._finish = self._client.register_script(_FINISH)
        self._timeout = timeout
        self._lease_seconds = lease_seconds
        self._prefix = prefix
        self._shown = redacted_url(url)

    def __str__(self) -> str:
        return f"shared in Redis at {self._shown}"

    def _key(self, caller_key: str, *parts: object) -> str:
        # The {caller} hash tag keeps a caller's keys in one slot of a Redis Cluster.
        tag = caller_key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
        return ":".join([self._prefix, "{" + tag + "}", *map(str, parts)])

    async def start(self, within: float) -> None:
        """Connect and load the scripts, so the first call does not pay for it in its timeout."""
        await self._run(self._client.ping, within)
        for source in (_ADMIT, _FINISH):
            await self._run(functools.partial(self._client.script_load, source), within)

    async def _run(self, call: Callable[[], object], within: float | None = None) -> object:
        try:
            async with asyncio.timeout(within or self._timeout):
                return await call()  # type: ignore[misc]
        except (TimeoutError, OSError, redis.exceptions.RedisError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def admit(
        self, caller_key: str, limits: Limits, reserve: int, lease: str | None, now: float
    ) -> list[QuotaViolation] | tuple[tuple[str, int], ...]:
        keys = [self._key(caller_key, "leases")]
        args: list[str | int | float] = [
            repr(now),
            lease or "",
            repr(now + self._lease_seconds),
            -1 if limits.concurrent is None else limits.concurrent,
        ]
        costs = _costs(limits, reserve)
        placed = []
        for name, limit, cost in costs:
            number, elapsed = _bucket(name, now)
            window = WINDOWS[name]
            keys += [self._key(caller_key, name, number - 1), self._key(caller_key, name, number)]
            args += [limit, cost, repr(1.0 - elapsed / window), int(window * 2000)]
            placed.append((name, number, elapsed))
        answer = await self._run(lambda: self._admit(keys=keys, args=args))
        assert isinstance(answer, list)
        if int(answer[0]) == 1:
            return tuple((n, b) for n, b, _ in placed if n != "requests_per_minute")
        numbers = [float(x) for x in answer[2:]]
        counts = [
            WindowCount(name, limit, cost, numbers[2 * i], numbers[2 * i + 1], placed[i][2])
            for i, (name, limit, cost) in enumerate(costs)
        ]
        refused = decide(counts, leases=int(answer[1]), concurrent=limits.concurrent)
        # The script and `decide` apply one rule; should float rounding ever split them,
        # the script counted nothing, so refuse on the limit that was nearest.
        return refused or [QuotaViolation(costs[0][0], costs[0][1], 0.0)] if costs else refused

    async def finish(
        self,
        caller_key: str,
        buckets: tuple[tuple[str, int], ...],
        delta: int,
        lease: str | None,
        now: float,
    ) -> None:
        keys = [self._key(caller_key, "leases")]
        if delta:
            keys += [self._key(caller_key, name, number) for name, number in buckets]
        await self._run(lambda: self._finish(keys=keys, args=[delta, lease or ""]))

    async def close(self) -> None:
        await self._client.aclose()


class Quotas:
    """The engine the RPC path calls: `admit` before the upstream, `settle` and `release` after.

    `reserve_tokens` is the request's ``max_tokens``/``max_completion_tokens``,
    or the configured estimate (`token_estimate`) when it has none.
    """

    def __init__(
        self,
        store: Store,
        *,
        failure_mode: str = "open",
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_mode not in FAILURE_MODES:
            raise ValueError(f"failure_mode must be one of {', '.join(FAILURE_MODES)}")
        self._store = store
        self._failure_mode = failure_mode
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._down_until = -math.inf
        self._warned_at = -math.inf
        self._suppressed = 0
        self._pending_releases: deque[tuple[str, str]] = deque(maxlen=_MAX_PENDING_RELEASES)
        self._flushing: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        # A lease id unique among every replica's: a random prefix for this engine, then
        # a counter (a uuid4 per call cost more than the rest of the decision).
        self._lease_prefix = uuid.uuid4().hex[:16] + "-"
        self._leases = itertools.count()

    @classmethod
    def from_config(cls, config: BridgeConfig, *, metrics: Metrics | None = None) -> Quotas:
        """The engine the settings ask for: in-process without a Redis URL, else shared."""
        store: Store = MemoryStore()
        if config.limits_redis_url is not None:
            store = RedisStore(
                config.limits_redis_url.value,
                timeout=config.limits_redis_timeout,
                lease_seconds=config.request_timeout + LEASE_MARGIN_SECONDS,
                # every call in flight may wait on Redis at once, and each call's end too
                max_connections=2 * config.max_concurrent_rpcs,
            )
        return cls(store, failure_mode=config.limits_failure_mode, metrics=metrics)

    @property
    def store(self) -> Store:
        """Where the counters live; its str() says so, with any password masked."""
        return self._store

    async def admit(self, caller_key: str, limits: Limits, reserve_tokens: int) -> Grant:
        """Count the call against `limits`, or raise `QuotaExceeded` with what was hit.

        Raises `LimitsUnavailable` when the store is down and the mode is closed.
        """
        reserve = max(0, reserve_tokens)
        has_tokens = limits.tokens_per_minute is not None or limits.tokens_per_day is not None
        lease = None
        if limits.concurrent is not None:
            lease = f"{self._lease_prefix}{next(self._leases)}"
        if limits.concurrent is None and limits.requests_per_minute is None and not has_tokens:
            return Grant(caller_key, 0, counted=False)
        if self._monotonic() < self._down_until:
            return self._store_down(caller_key, "the limits store is down", admitting=True)
        if self._pending_releases and self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_releases())
        reserved = reserve if has_tokens else 0
        deciding = self._store.admit(caller_key, limits, reserved, lease, self._clock())
        # A remote decision runs shielded, so that a caller who leaves meanwhile
        # cannot leave it counted; an in-process one never suspends, so it needs none.
        decision = asyncio.ensure_future(deciding) if self._store.remote else None
        try:
            outcome = await (deciding if decision is None else asyncio.shield(decision))
        except StoreUnavailable as exc:
            return self._store_down(caller_key, str(exc), admitting=True)
        except asyncio.CancelledError:
            if decision is None:
                raise
            # The caller left while the store decided: undo what it counts, once it has.
            undo = asyncio.create_task(self._undo(caller_key, decision, reserved, lease))
            self._writes.add(undo)
            undo.add_done_callback(self._writes.discard)
            raise
        if isinstance(outcome, list):
            raise QuotaExceeded(caller_key, outcome)
        return Grant(caller_key, reserved, outcome, lease)

    async def _undo(
        self,
        caller_key: str,
        decision: asyncio.Future[list[QuotaViolation] | tuple[tuple[str, int], ...]],
        reserved: int,
        lease: str | None,
    ) -> None:
        """Give back what an admission whose caller was cancelled counted (its lease, tokens)."""
        try:
            outcome = await decision
        except StoreUnavailable:
            return
        if not isinstance(outcome, list):
            grant = Grant(caller_key, reserved, outcome, lease, delta=-reserved, settled=True)
            await self.release(grant)

    async def settle(self, grant: Grant, used_tokens: int | None) -> None:
        """Replace the reservation by the tokens the upstream reported (None: keep it). Once.

        When the grant holds a lease, the correction is written by `release`, in
        the same round trip as the lease; otherwise at once. Never raises.
        """
        if grant.settled:
            return
        grant.settled = True
        if not grant.counted or not grant.buckets or used_tokens is None:
            return
        grant.delta = max(0, used_tokens) - grant.reserved
        if grant.released or grant.lease is None:
            await self._finish(grant, None)

    async def release(self, grant: Grant) -> None:
        """End the call: give the concurrency lease back and write the settlement.

        Idempotent, and to be called on every path (``finally``), cancellation
        included. Never raises: a lease whose release failed is retried once the
        store answers again, and expires in any case. With Redis the write
        happens in a task of its own, so the caller's status does not wait for
        a round trip (`flush` waits for it).
        """
        if grant.released:
            return
        grant.released = True
        if grant.counted:
            await self._finish(grant, grant.lease)

    async def _finish(self, grant: Grant, lease: str | None) -> None:
        delta, grant.delta = grant.delta, 0
        if lease is None and not delta:
            return
        if lease is None and self._monotonic() < self._down_until:
            return  # a lease is worth a try even then; a correction alone is not
        write = self._write(grant, delta, lease, self._clock())
        if not self._store.remote:
            await write
            return
        task = asyncio.create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for the ends of calls still being written, retried releases included."""
        while self._writes or self._flushing is not None:
            pending = [*self._writes, *([self._flushing] if self._flushing else [])]
            await asyncio.gather(*pending)

    async def _write(self, grant: Grant, delta: int, lease: str | None, now: float) -> None:
        try:
            await self._store.finish(grant.caller_key, grant.buckets, delta, lease, now)
        except StoreUnavailable as exc:
            if lease is not None:
                self._pending_releases.append((grant.caller_key, lease))
            self._store_down(grant.caller_key, str(exc), admitting=False)

    async def start(self, within: float = 2.0) -> None:
        """Connect to the store before the first call; a store that is down is logged, not fatal.

        The bridge serves with its store down (the failure mode applies), so a Redis
        that is late at start-up cannot keep the replicas from starting.
        """
        log.info("caller limits: %s", self._store)
        try:
            await self._store.start(within)
        except StoreUnavailable as exc:
            self._store_down("", str(exc), admitting=False)

    async def close(self) -> None:
        await self.flush()
        if self._flushing is not None:
            self._flushing.cancel()
        await self._store.close()

    async def _flush_releases(self) -> None:
        """Release the leases whose release failed, off the call path, until one fails again."""
        try:
            while self._pending_releases:
                caller_key, lease = self._pending_releases[0]
                await self._store.finish(caller_key, (), 0, lease, self._clock())
                self._pending_releases.popleft()
        except StoreUnavailable:
            pass
        finally:
            self._flushing = None

    def _store_down(self, caller_key: str, why: str, *, admitting: bool) -> Grant:
        """Apply the failure mode: a grant that counted nothing (open), or UNAVAILABLE (closed)."""
        now = self._monotonic()
        if now >= self._down_until:
            self._down_until = now + _DOWN_SECONDS
        if self._metrics is not None:
            self._metrics.limits_store_failure(self._failure_mode)
        if now - self._warned_at >= _WARN_EVERY_SECONDS:
            more = f" ({self._suppressed} more since the last line)" if self._suppressed else ""
            log.warning(
                "the limits store failed (%s); failing %s for %.0f s before trying again%s",
                why,
                self._failure_mode,
                _DOWN_SECONDS,
                more,
            )
            self._warned_at, self._suppressed = now, 0
        else:
            self._suppressed += 1
        if admitting and self._failure_mode == "closed":
            raise LimitsUnavailable()
        return Grant(caller_key, 0, counted=False)


def redacted_url(url: str) -> str:
    """The URL with any password replaced, for log lines (redis://user:***@host:6379/0)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"
