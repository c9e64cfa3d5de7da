"""bridge.quotas against a real redis-server: two engines, each with its own
connections as two replicas would have, share one caller's limits; Redis killed,
paused and restarted on the same port takes the configured failure mode and
enforcement comes back by itself.

The decision rules themselves (windows, settlement, retry delays) are tested
exhaustively with the in-process store in tests/unit/test_quotas.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from bridge.errors import LimitsUnavailable, QuotaExceeded
from bridge.metrics import Metrics
from bridge.policy import Limits
from bridge.quotas import Grant, Quotas, RedisStore
from support import RedisServer, require_tool

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.25  # the default is 0.05 s; a loaded test machine can take longer to answer
STALL_BOUND = 5.0
"""Far above the timeout, far below a stall: a call that hangs on Redis takes forever."""


class Rest:
    """The engines' monotonic clock: real time, plus what a test skips ahead."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped


async def replica(
    redis: RedisServer,
    *,
    mode: str = "open",
    metrics: Metrics | None = None,
    rest: Rest | None = None,
    lease_seconds: float = 600.0,
    store_timeout: float = TIMEOUT,
) -> Quotas:
    """An engine as one replica has it: its own connections to the shared Redis, started."""
    store = RedisStore(redis.url, timeout=store_timeout, lease_seconds=lease_seconds)
    quotas = Quotas(store, failure_mode=mode, metrics=metrics, monotonic=rest or time.monotonic)
    await quotas.start()
    return quotas


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


async def refused(quotas: Quotas, limits: Limits, reserve: int = 0) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as caught:
        await quotas.admit("team-a", limits, reserve)
    return caught.value


async def timed_admit(quotas: Quotas, limits: Limits) -> tuple[Grant | BaseException, float]:
    started = time.monotonic()
    try:
        outcome: Grant | BaseException = await asyncio.wait_for(
            quotas.admit("team-a", limits, 0), 30
        )
    except (LimitsUnavailable, QuotaExceeded) as exc:
        outcome = exc
    return outcome, time.monotonic() - started


def test_requests_per_minute_hold_across_two_replicas(redis_server: RedisServer) -> None:
    async def main() -> None:
        a, b = await replica(redis_server), await replica(redis_server)
        limits = Limits(requests_per_minute=4)
        for quotas in (a, b, a, b):
            await quotas.admit("team-a", limits, 0)
        for quotas in (a, b):
            error = await refused(quotas, limits)
            assert [v.limit for v in error.violations] == ["requests_per_minute"]
            assert error.retry_after is not None and 0 < error.retry_after <= 120
        await a.admit("team-b", limits, 0)  # another caller has its own counters
        await a.close()
        await b.close()

    run(main)


def test_racing_admissions_on_two_replicas_never_exceed_a_limit(redis_server: RedisServer) -> None:
    async def main() -> None:
        # A burst opens a connection per call; this test is about atomicity, not timeouts.
        a = await replica(redis_server, mode="closed", store_timeout=5.0)
        b = await replica(redis_server, mode="closed", store_timeout=5.0)

        async def admitted(limits: Limits, reserve: int) -> int:
            calls = [q.admit("team-a", limits, reserve) for q in (a, b) for _ in range(20)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(o, Grant | QuotaExceeded) for o in outcomes), outcomes
            return sum(isinstance(o, Grant) for o in outcomes)

        assert await admitted(Limits(concurrent=5), 0) == 5
        assert await admitted(Limits(requests_per_minute=7), 0) == 7
        assert await admitted(Limits(tokens_per_day=1000), 100) == 10
        await a.close()
        await b.close()

    run(main)


def test_token_budgets_hold_across_replicas_and_settle_from_usage(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        a, b = await replica(redis_server), await replica(redis_server)
        limits = Limits(tokens_per_minute=1000, tokens_per_day=5000)
        grant = await a.admit("team-a", limits, 600)
        error = await refused(b, limits, 401)  # 600 reserved on a counts on b
        assert [v.limit for v in error.violations] == ["tokens_per_minute"]
        await a.settle(grant, 100)  # the upstream reported 100: 500 given back
        await a.flush()
        other = await b.admit("team-a", limits, 900)
        await refused(a, limits, 1)
        await b.settle(other, 1400)  # a finished call's surplus counts, over the limit
        await b.flush()
        error = await refused(a, limits, 0)
        assert error.retry_after is not None and error.retry_after > 0
        day = await refused(a, Limits(tokens_per_day=5000), 3501)  # 1500 counted today
        assert [v.limit for v in day.violations] == ["tokens_per_day"]
        await a.admit("team-a", Limits(tokens_per_day=5000), 3500)
        await a.close()
        await b.close()

    run(main)


def test_concurrent_leases_are_shared_released_and_expire_with_a_dead_replica(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        a, b = await replica(redis_server), await replica(redis_server)
        limits = Limits(concurrent=2)
        on_a = await a.admit("team-a", limits, 0)
        await b.admit("team-a", limits, 0)
        error = await refused(a, limits)
        assert [v.limit for v in error.violations] == ["concurrent"]
        await a.release(on_a)
        await a.flush()
        await a.release(on_a)  # idempotent
        await a.flush()
        await b.admit("team-a", limits, 0)
        await refused(b, limits)
        await a.close()
        await b.close()

        # A replica that dies holding a lease: it expires on its own.
        dying, survivor = (
            await replica(redis_server, lease_seconds=0.5),
            await replica(redis_server),
        )
        await dying.admit("team-c", Limits(concurrent=1), 0)
        with pytest.raises(QuotaExceeded):
            await survivor.admit("team-c", Limits(concurrent=1), 0)
        await asyncio.sleep(0.6)
        await survivor.admit("team-c", Limits(concurrent=1), 0)
        await dying.close()
        await survivor.close()

    run(main)


def test_redis_killed_fails_open_with_a_warning_and_a_metric_then_resumes(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quotas")

    async def main() -> None:
        metrics, rest = Metrics(), Rest()
        a = await replica(redis_server, metrics=metrics, rest=rest)
        limits = Limits(requests_per_minute=1, concurrent=5)
        first = await a.admit("team-a", limits, 0)
        await refused(a, limits)
        redis_server.kill()
        grants = []
        for _ in range(3):
            outcome, took = await timed_admit(a, limits)
            assert isinstance(outcome, Grant) and not outcome.counted
            assert took < STALL_BOUND
            grants.append(outcome)
        await a.settle(first, 5)  # never raises
        await a.flush()
        await a.release(first)
        await a.flush()
        for grant in grants:
            await a.release(grant)
            await a.flush()
        value = metrics.registry.get_sample_value(
            "bridge_limits_store_failures_total", {"mode": "open"}
        )
        assert value is not None and value >= 3
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "failing open" in warnings[0]

        redis_server.start()  # the same port: the URL a replica has does not change
        rest.skipped += 1.0  # past the rest after a failure
        await a.admit("team-a", limits, 0)  # counted again (the restarted Redis is empty)
        await refused(a, limits)
        await a.close()

    run(main)


def test_redis_killed_fails_closed_with_unavailable_then_resumes(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        metrics, rest = Metrics(), Rest()
        a = await replica(redis_server, mode="closed", metrics=metrics, rest=rest)
        b = await replica(redis_server, mode="closed", rest=rest)
        limits = Limits(requests_per_minute=2)
        await a.admit("team-a", limits, 0)
        redis_server.kill()
        for quotas in (a, a, b):
            outcome, took = await timed_admit(quotas, limits)
            assert isinstance(outcome, LimitsUnavailable)
            assert took < STALL_BOUND
        value = metrics.registry.get_sample_value(
            "bridge_limits_store_failures_total", {"mode": "closed"}
        )
        assert value == 2
        redis_server.start()
        rest.skipped += 1.0
        await a.admit("team-a", limits, 0)
        await b.admit("team-a", limits, 0)
        await refused(a, limits)
        await a.close()
        await b.close()

    run(main)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_a_redis_that_does_not_answer_costs_a_call_the_timeout_not_a_stall(
    redis_server: RedisServer, mode: str
) -> None:
    async def main() -> None:
        rest = Rest()
        a = await replica(redis_server, mode=mode, rest=rest)
        limits = Limits(requests_per_minute=1)
        grant = await a.admit("team-a", limits, 0)
        redis_server.pause()
        try:
            outcome, took = await timed_admit(a, limits)
            if mode == "open":
                assert isinstance(outcome, Grant) and not outcome.counted
            else:
                assert isinstance(outcome, LimitsUnavailable)
            assert TIMEOUT * 0.9 <= took < STALL_BOUND
            # Resting after the failure: the next call does not wait for the timeout again.
            again, _ = await timed_admit(a, limits)
            assert type(again) is type(outcome)
            started = time.monotonic()
            await a.settle(grant, 3)
            await a.flush()
            await a.release(grant)
            await a.flush()
            assert time.monotonic() - started < STALL_BOUND
        finally:
            redis_server.resume()
        rest.skipped += 1.0
        await refused(a, limits)  # the request admitted before the pause still counts
        await a.close()

    run(main)


def test_a_redis_with_a_password_is_shared_and_a_wrong_one_never_shows_in_logs(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    executable = require_tool("redis-server", "the shared caller limits (bridge/quotas.py)")
    server = RedisServer(
        executable, tmp_path_factory.mktemp("redis"), "--requirepass", "right-horse-battery"
    ).start()
    caplog.set_level(logging.INFO, logger="bridge.quotas")

    async def main() -> None:
        good = f"redis://:right-horse-battery@127.0.0.1:{server.port}/0"
        bad = f"redis://:wrong-staple-4242@127.0.0.1:{server.port}/0"
        a, b = (Quotas(RedisStore(good, timeout=TIMEOUT, lease_seconds=60)) for _ in range(2))
        wrong = Quotas(RedisStore(bad, timeout=TIMEOUT, lease_seconds=60), failure_mode="closed")
        for quotas in (a, b, wrong):
            await quotas.start()
        await a.admit("team-a", Limits(requests_per_minute=1), 0)
        await refused(b, Limits(requests_per_minute=1))
        with pytest.raises(LimitsUnavailable):
            await wrong.admit("team-a", Limits(requests_per_minute=1), 0)
        for quotas in (a, b, wrong):
            await quotas.close()

    try:
        run(main)
    finally:
        server.kill()
    text = caplog.text
    assert "redis://:***@127.0.0.1" in text  # the start-up line names the store ...
    assert "failing closed" in text  # ... and the wrong password's failure is logged ...
    assert "wrong-staple-4242" not in text and "right-horse-battery" not in text  # ... masked
