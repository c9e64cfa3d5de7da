"""bridge.admission on its own: the cap, the drain, and the abort at the end of the grace.

The same rules through a real bridge are in test_limits.py (the cap) and
test_shutdown.py (drain and abort); here each is driven directly with tasks.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge.admission import Admission
from bridge.errors import BridgeOverloaded, ShuttingDown

pytestmark = pytest.mark.timeout(30)


def test_calls_over_the_cap_are_refused_until_one_is_released():
    async def main() -> None:
        admission = Admission(max_calls=2, shutdown_grace=5)
        first = admission.admit()
        assert admission.admit() is first  # the same task, counted once
        blocker = asyncio.Event()

        async def rpc() -> None:
            admission.admit()
            await blocker.wait()

        other = asyncio.create_task(rpc())
        await asyncio.sleep(0)
        assert admission.active_calls == 2

        async def refused() -> None:
            admission.admit()

        with pytest.raises(BridgeOverloaded, match="max_concurrent_rpcs"):
            await asyncio.create_task(refused())
        admission.release(first)
        await asyncio.create_task(refused())  # a slot is free again
        blocker.set()
        await other

    asyncio.run(main())


def test_draining_refuses_new_calls_and_waits_for_the_running_ones():
    async def main() -> None:
        admission = Admission(max_calls=10, shutdown_grace=5)
        done = asyncio.Event()

        async def rpc() -> None:
            task = admission.admit()
            await done.wait()
            admission.release(task)

        running = asyncio.create_task(rpc())
        await asyncio.sleep(0)
        admission.start_draining()
        with pytest.raises(ShuttingDown):
            admission.admit()
        assert not await admission.wait_idle(0.05)  # still running
        done.set()
        assert await admission.wait_idle(5)
        await running

    asyncio.run(main())


def test_abort_all_cancels_and_the_cancelled_call_ends_shutting_down():
    async def main() -> None:
        admission = Admission(max_calls=10, shutdown_grace=2.5)
        outcome: list[object] = []

        async def rpc() -> None:
            task = admission.admit()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append(admission.shutdown_abort(task))
                outcome.append(task.cancelling())
            finally:
                admission.release(task)

        running = asyncio.create_task(rpc())
        await asyncio.sleep(0)
        assert admission.abort_all() == 1
        await running
        error, cancelling = outcome
        assert isinstance(error, ShuttingDown)
        assert "grace period 2.5 s" in error.message
        assert cancelling == 0  # the cancellation was taken back: the status can still go out
        assert await admission.wait_idle(0)
        with pytest.raises(ShuttingDown):
            admission.admit()

    asyncio.run(main())


def test_a_cancellation_that_is_not_the_shutdowns_stays_a_cancellation():
    async def main() -> None:
        admission = Admission(max_calls=10, shutdown_grace=5)
        task = admission.admit()
        assert admission.shutdown_abort(task) is None
        assert admission.shutdown_abort(None) is None

    asyncio.run(main())
