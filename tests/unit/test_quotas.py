"""bridge.quotas with the in-process store and an injected clock: the windows, the
reservations and their settlement, the concurrency leases, the retry-after values,
and the failure modes (driven by a store that fails on demand).

The same engine against a real Redis, two instances sharing it, is in
tests/integration/test_quotas.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import BridgeConfig, Secret
from bridge.errors import LimitsUnavailable, QuotaExceeded, QuotaViolation
from bridge.metrics import Metrics
from bridge.policy import Limits
from bridge.quotas import (
    CONCURRENT_RETRY_SECONDS,
    WINDOWS,
    Grant,
    MemoryStore,
    Quotas,
    RedisStore,
    StoreUnavailable,
    WindowCount,
    decide,
    redacted_url,
)

pytestmark = pytest.mark.timeout(30)

MINUTE_START = 600.0  # the start of a minute bucket and of nothing longer
DAY_START = 86400.0 * 10


class Clock:
    def __init__(self, now: float = MINUTE_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def engine(clock: Clock, **kwargs: object) -> Quotas:
    return Quotas(MemoryStore(), clock=clock, monotonic=clock, **kwargs)  # type: ignore[arg-type]


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def refused(
    quotas: Quotas, limits: Limits, reserve: int = 0, caller: str = "a"
) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as caught:
        await quotas.admit(caller, limits, reserve)
    return caught.value


def test_every_windowed_limit_of_the_policy_has_a_window() -> None:
    assert {f.name for f in dataclasses.fields(Limits)} == {"concurrent", *WINDOWS}


# --------------------------------------------------------------------------- #
# requests_per_minute: a sliding window counter
# --------------------------------------------------------------------------- #


def test_requests_over_the_limit_are_refused_until_the_window_slides() -> None:
    async def main() -> None:
        clock = Clock()
        quotas = engine(clock)
        limits = Limits(requests_per_minute=3)
        for _ in range(3):
            await quotas.admit("a", limits, 0)
        error = await refused(quotas, limits)
        assert error.violations == (QuotaViolation("requests_per_minute", 3, 80.0),)
        # 80 s later the previous bucket (3) weighs 40/60: 2 counted, one more fits
        clock.now = MINUTE_START + 79.9
        await refused(quotas, limits)
        clock.now = MINUTE_START + 80.0
        await quotas.admit("a", limits, 0)
        await refused(quotas, limits)

    run(main())


def test_the_previous_bucket_fades_as_the_current_one_advances() -> None:
    async def main() -> None:
        clock = Clock()
        quotas = engine(clock)
        limits = Limits(requests_per_minute=3)
        for _ in range(3):
            await quotas.admit("a", limits, 0)
        clock.now = MINUTE_START + 60  # next bucket: the previous three still weigh fully
        await refused(quotas, limits)
        clock.now = MINUTE_START + 90  # half-way: 1.5 counted
        await quotas.admit("a", limits, 0)
        error = await refused(quotas, limits)  # 2.5 + 1 > 3
        # frees when 3 * (1 - t/60) + 1 + 1 <= 3, t = 40 s into the bucket: 10 s from now
        assert error.violations[0].retry_after == pytest.approx(10.0)
        clock.now = MINUTE_START + 100
        await quotas.admit("a", limits, 0)

    run(main())


def test_a_window_left_empty_for_two_buckets_starts_from_zero() -> None:
    async def main() -> None:
        clock = Clock()
        quotas = engine(clock)
        limits = Limits(requests_per_minute=2)
        await quotas.admit("a", limits, 0)
        await quotas.admit("a", limits, 0)
        clock.now = MINUTE_START + 120
        await quotas.admit("a", limits, 0)
        await quotas.admit("a", limits, 0)
        await refused(quotas, limits)

    run(main())


def test_callers_have_separate_counters() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(requests_per_minute=1)
        await quotas.admit("a", limits, 0)
        await quotas.admit("b", limits, 0)
        error = await refused(quotas, limits, caller="a")
        assert error.caller_key == "a"

    run(main())


def test_a_caller_without_limits_is_admitted_and_nothing_is_counted() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        grant = await quotas.admit("a", Limits(), 10**9)
        assert grant == Grant("a", 0, counted=False)
        await quotas.settle(grant, 10**9)
        await quotas.release(grant)

    run(main())


# --------------------------------------------------------------------------- #
# token budgets: reserve, then settle
# --------------------------------------------------------------------------- #


def test_a_budget_blocks_when_counted_plus_the_reservation_exceeds_it() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(tokens_per_minute=1000)
        await quotas.admit("a", limits, 600)
        error = await refused(quotas, limits, 401)  # 600 + 401 > 1000
        assert [v.limit for v in error.violations] == ["tokens_per_minute"]
        await quotas.admit("a", limits, 400)  # 600 + 400 == 1000: still within
        await refused(quotas, limits, 1)
        await quotas.admit("a", limits, 0)  # costs nothing: 1000 + 0 is not over

    run(main())


def test_a_reservation_bigger_than_the_limit_never_passes_and_says_so() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        error = await refused(quotas, Limits(tokens_per_minute=1000), 1001)
        assert error.violations == (QuotaViolation("tokens_per_minute", 1000, None),)
        assert error.retry_after is None

    run(main())


def test_settling_below_the_reservation_gives_the_difference_back() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 800)
        await refused(quotas, limits, 300)
        await quotas.settle(grant, 100)
        await quotas.admit("a", limits, 900)  # 100 + 900
        await refused(quotas, limits, 1)

    run(main())


def test_settling_above_the_reservation_counts_the_surplus_even_over_the_limit() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 100)
        await quotas.settle(grant, 1500)  # a finished call is counted, never refused
        error = await refused(quotas, limits, 0)
        # current bucket 1500 > room 1000: next bucket, until 1500 * (1 - t/60) <= 1000
        assert error.violations[0].retry_after == pytest.approx(60 + 20)

    run(main())


def test_settle_with_no_usage_keeps_the_reservation_and_settles_once() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 700)
        await quotas.settle(grant, None)
        await quotas.settle(grant, 0)  # too late: a grant settles once
        assert grant.settled
        await refused(quotas, limits, 301)
        await quotas.admit("a", limits, 300)

    run(main())


def test_negative_usage_counts_as_none_used() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 700)
        await quotas.settle(grant, -5)
        await quotas.admit("a", limits, 1000)

    run(main())


def test_a_settlement_goes_to_the_bucket_of_its_reservation() -> None:
    async def main() -> None:
        clock = Clock()
        quotas = engine(clock)
        limits = Limits(tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 1000)
        clock.now = MINUTE_START + 90  # the reservation is in the previous bucket, weight 1/2
        await refused(quotas, limits, 501)
        await quotas.settle(grant, 0)  # the previous bucket drops to 0
        await quotas.admit("a", limits, 1000)

    run(main())


def test_a_settlement_after_its_bucket_left_the_window_changes_nothing() -> None:
    async def main() -> None:
        clock = Clock()
        quotas = engine(clock)
        limits = Limits(tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 10)
        clock.now = MINUTE_START + 125
        await quotas.admit("a", limits, 1000)
        await quotas.settle(grant, 0)  # must not give back 10 from the current bucket
        await refused(quotas, limits, 1)

    run(main())


def test_the_day_budget_counts_alone_and_frees_as_the_day_slides() -> None:
    async def main() -> None:
        clock = Clock(DAY_START)
        quotas = engine(clock)
        limits = Limits(tokens_per_day=1000)
        await quotas.admit("a", limits, 1000)
        clock.now = DAY_START + 3600
        error = await refused(quotas, limits, 500)
        # next day, until 1000 * (1 - t/86400) <= 500: half a day into it
        assert error.violations[0].retry_after == pytest.approx(86400 - 3600 + 43200)

    run(main())


def test_every_limit_hit_is_reported_and_retry_is_when_all_free() -> None:
    async def main() -> None:
        clock = Clock(DAY_START)
        quotas = engine(clock)
        limits = Limits(requests_per_minute=1, tokens_per_minute=100, tokens_per_day=100)
        await quotas.admit("a", limits, 100)
        error = await refused(quotas, limits, 1)
        assert [v.limit for v in error.violations] == list(WINDOWS)
        assert error.retry_after == max(v.retry_after for v in error.violations)  # type: ignore[type-var]
        assert error.retry_after == pytest.approx(86400 + 86400 * 0.01)

    run(main())


def test_a_refused_call_counts_nothing_in_any_window() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(requests_per_minute=2, tokens_per_minute=100)
        await quotas.admit("a", limits, 80)
        await refused(quotas, limits, 50)  # refused for tokens: its request is not counted
        await quotas.admit("a", limits, 20)  # the second request
        error = await refused(quotas, limits, 0)
        assert [v.limit for v in error.violations] == ["requests_per_minute"]

    run(main())


# --------------------------------------------------------------------------- #
# concurrent: leases
# --------------------------------------------------------------------------- #


def test_concurrent_calls_over_the_limit_are_refused_until_one_is_released() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(concurrent=2)
        first = await quotas.admit("a", limits, 0)
        await quotas.admit("a", limits, 0)
        error = await refused(quotas, limits)
        assert error.violations == (QuotaViolation("concurrent", 2, CONCURRENT_RETRY_SECONDS),)
        await quotas.release(first)
        await quotas.release(first)  # idempotent: frees one slot, not two
        await quotas.admit("a", limits, 0)
        await refused(quotas, limits)

    run(main())


def test_a_cancelled_call_gives_its_lease_back() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(concurrent=1)
        started = asyncio.Event()

        async def call() -> None:
            grant = await quotas.admit("a", limits, 0)
            try:
                started.set()
                await asyncio.sleep(3600)
            finally:
                await quotas.release(grant)

        task = asyncio.create_task(call())
        await started.wait()
        await refused(quotas, limits)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await quotas.admit("a", limits, 0)

    run(main())


def test_with_a_lease_the_settlement_is_written_with_the_release() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(concurrent=5, tokens_per_minute=1000)
        grant = await quotas.admit("a", limits, 900)
        await quotas.settle(grant, 100)
        await refused(quotas, limits, 200)  # not yet written: one round trip at the end
        await quotas.release(grant)
        await quotas.admit("a", limits, 900)
        other = Limits(concurrent=5, tokens_per_minute=100)
        late = await quotas.admit("b", other, 100)
        await quotas.release(late)
        await quotas.settle(late, 50)  # a settle after the release is written at once
        await quotas.admit("b", other, 50)
        await refused(quotas, other, 1, caller="b")

    run(main())


class HookedStore(MemoryStore):
    """The in-process store, calling `before` with the name of each operation before it."""

    async def before(self, operation: str) -> None:
        return None

    async def admit(self, *args: Any) -> list[QuotaViolation] | tuple[tuple[str, int], ...]:
        await self.before("admit")
        return await super().admit(*args)

    async def finish(self, *args: Any) -> None:
        await self.before("finish")
        await super().finish(*args)

    async def start(self, within: float) -> None:
        await self.before("start")
        await super().start(within)


class GatedRemoteStore(HookedStore):
    """The in-process store acting as a remote one whose admissions, or writes at the end of
    a call, wait for `answer`."""

    remote = True

    def __init__(self, gated: Literal["admit", "finish"]) -> None:
        super().__init__()
        self.gated = gated
        self.answer = asyncio.Event()

    async def before(self, operation: str) -> None:
        if operation == self.gated:
            await self.answer.wait()


def test_with_a_remote_store_the_end_of_a_call_is_written_off_its_path() -> None:
    async def main() -> None:
        store = GatedRemoteStore("finish")
        quotas = Quotas(store, clock=Clock(), monotonic=Clock())
        limits = Limits(concurrent=1, tokens_per_minute=100)
        grant = await quotas.admit("a", limits, 100)
        await quotas.settle(grant, 10)
        await asyncio.wait_for(quotas.release(grant), 5)  # returns before the store answers
        await refused(quotas, limits)  # not written yet
        store.answer.set()
        await quotas.flush()
        await quotas.admit("a", limits, 90)
        await quotas.close()

    run(main())


def test_a_call_cancelled_while_the_store_decides_gives_back_what_it_counted() -> None:
    async def main() -> None:
        store = GatedRemoteStore("admit")
        quotas = Quotas(store, clock=Clock(), monotonic=Clock())
        limits = Limits(concurrent=1, tokens_per_minute=100)
        admitting = asyncio.create_task(quotas.admit("a", limits, 100))
        await asyncio.sleep(0)
        admitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await admitting
        store.answer.set()  # the store counts the call after all ...
        await quotas.flush()  # ... and the bridge gives it back
        await quotas.admit("a", limits, 100)

    run(main())


def test_a_refused_call_takes_no_lease() -> None:
    async def main() -> None:
        quotas = engine(Clock())
        limits = Limits(concurrent=1, tokens_per_minute=10)
        await refused(quotas, limits, 11)
        await quotas.admit("a", limits, 10)

    run(main())


# --------------------------------------------------------------------------- #
# decide: when a window frees
# --------------------------------------------------------------------------- #


def _later(w: WindowCount, seconds: float) -> WindowCount:
    """`w` as it reads `seconds` later, when nothing else is counted."""
    elapsed = w.elapsed + seconds
    buckets = math.floor(elapsed / w.window)
    elapsed -= buckets * w.window
    previous, current = w.previous, w.current
    if buckets == 1:
        previous, current = current, 0.0
    elif buckets > 1:
        previous, current = 0.0, 0.0
    return dataclasses.replace(w, previous=previous, current=current, elapsed=elapsed)


@given(
    limit=st.integers(1, 10_000),
    cost=st.integers(0, 10_000),
    previous=st.integers(0, 20_000),
    current=st.integers(0, 20_000),
    fraction=st.floats(0, 0.999),
)
def test_the_retry_delay_is_exactly_when_the_window_frees(
    limit: int, cost: int, previous: int, current: int, fraction: float
) -> None:
    w = WindowCount("tokens_per_minute", limit, cost, previous, current, 60 * fraction)
    violations = decide([w])
    if not violations:
        assert w.counted + cost <= limit
        return
    [violation] = violations
    if cost > limit:
        assert violation.retry_after is None
        return
    wait = violation.retry_after
    assert wait is not None and wait > 0
    assert decide([_later(w, wait + 1e-6)]) == []
    assert decide([_later(w, wait * (1 - 1e-6) - 1e-6)]) != []


# --------------------------------------------------------------------------- #
# the store down: fail open or closed, and resume
# --------------------------------------------------------------------------- #


class FlakyStore(HookedStore):
    """The in-process store, failing every operation while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def before(self, operation: str) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("TimeoutError: ")


def failures(metrics: Metrics, mode: str) -> float:
    value = metrics.registry.get_sample_value("bridge_limits_store_failures_total", {"mode": mode})
    return value or 0.0


def test_failing_open_admits_uncounted_warns_once_and_resumes_by_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        clock, store, metrics = Clock(), FlakyStore(), Metrics()
        quotas = Quotas(store, clock=clock, monotonic=clock, metrics=metrics)
        limits = Limits(requests_per_minute=1)
        await quotas.admit("a", limits, 0)
        store.down = True
        with caplog.at_level(logging.WARNING, logger="bridge.quotas"):
            grants = [await quotas.admit("a", limits, 0) for _ in range(5)]
        assert all(not grant.counted for grant in grants)
        assert store.calls == 2  # after one failure the store rests: no timeout per call
        assert failures(metrics, "open") == 5
        [line] = caplog.records
        assert "failing open" in line.getMessage()
        store.down = False
        await refused_anyway(quotas, limits)  # the store still rests: admitted uncounted
        clock.now += 1.0
        await refused(quotas, limits)  # tried again: enforcement is back
        assert store.calls == 3

    caplog.set_level(logging.WARNING, logger="bridge.quotas")
    run(main())


async def refused_anyway(quotas: Quotas, limits: Limits) -> None:
    grant = await quotas.admit("a", limits, 0)
    assert not grant.counted


def test_the_warning_is_repeated_at_most_once_a_minute_with_what_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        clock, store = Clock(), FlakyStore()
        quotas = Quotas(store, clock=clock, monotonic=clock)
        store.down = True
        with caplog.at_level(logging.WARNING, logger="bridge.quotas"):
            for _ in range(10):
                await refused_anyway(quotas, Limits(requests_per_minute=1))
                clock.now += 5
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1
        with caplog.at_level(logging.WARNING, logger="bridge.quotas"):
            clock.now += 60
            await refused_anyway(quotas, Limits(requests_per_minute=1))
        assert "(9 more since the last line)" in caplog.records[-1].getMessage()

    run(main())


def test_failing_closed_refuses_with_limits_unavailable() -> None:
    async def main() -> None:
        clock, store, metrics = Clock(), FlakyStore(), Metrics()
        quotas = Quotas(store, clock=clock, monotonic=clock, metrics=metrics, failure_mode="closed")
        store.down = True
        for _ in range(2):
            with pytest.raises(LimitsUnavailable):
                await quotas.admit("a", Limits(concurrent=1), 0)
        assert failures(metrics, "closed") == 2
        store.down = False
        clock.now += 1.0
        await quotas.admit("a", Limits(concurrent=1), 0)

    run(main())


def test_settle_and_release_never_raise_and_a_failed_release_is_retried() -> None:
    async def main() -> None:
        clock, store = Clock(), FlakyStore()
        quotas = Quotas(store, clock=clock, monotonic=clock, failure_mode="closed")
        limits = Limits(concurrent=1, tokens_per_minute=100)
        grant = await quotas.admit("a", limits, 10)
        store.down = True
        await quotas.settle(grant, 50)
        await quotas.release(grant)
        store.down = False
        clock.now += 1.0
        await quotas.admit("b", limits, 10)  # the store answers: the lease is released again
        await quotas.flush()
        await quotas.admit("a", limits, 10)

    run(main())


def test_a_store_down_at_start_up_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        clock, store = Clock(), FlakyStore()
        quotas = Quotas(store, clock=clock, monotonic=clock, failure_mode="closed")
        store.down = True
        with caplog.at_level(logging.WARNING, logger="bridge.quotas"):
            await quotas.start()
        assert "failing closed" in caplog.records[0].getMessage()
        store.down = False
        clock.now += 1.0
        await quotas.admit("a", Limits(concurrent=1), 0)

    run(main())


def test_the_settings_choose_the_store_and_the_password_never_shows() -> None:
    in_process = Quotas.from_config(BridgeConfig())
    assert str(in_process.store) == "in-process counters, per replica"
    url = Secret("redis://:hunter2@redis.internal:6379/0")
    shared = Quotas.from_config(BridgeConfig(limits_redis_url=url, limits_failure_mode="closed"))
    assert isinstance(shared.store, RedisStore)
    assert str(shared.store) == "shared in Redis at redis://:***@redis.internal:6379/0"
    assert "hunter2" not in repr(shared.store)


def test_an_unknown_failure_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="failure_mode"):
        Quotas(MemoryStore(), failure_mode="sometimes")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://user:hunter2@redis:6380", "rediss://user:***@redis:6380"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_a_redis_url_is_logged_without_its_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
