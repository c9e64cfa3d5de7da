"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.breaker import (
    CLOSED,
    HALF_OPEN,
    MAX_BREAKERS,
    OPEN,
    Breaker,
    Breakers,
    BreakerSettings,
    SlidingCounts,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(**settings: Any) -> tuple[Breaker, Clock, list[tuple[str, str]]]:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    given: dict[str, Any] = {
        "failures": 3,
        "failure_rate": 0.0,
        "cooldown": 5.0,
        "probes": 2,
        **settings,
    }
    breaker = Breaker(
        "m",
        BreakerSettings(**given),
        clock,
        lambda m, s: changes.append((m, s)),
    )
    return breaker, clock, changes


def test_consecutive_failures_open_it_and_a_success_between_resets_the_count():
    breaker, _, changes = _breaker()
    for ok in (False, False, True, False, False):
        assert breaker.admit() is None
        breaker.record(ok)
    assert breaker.state is CLOSED
    breaker.record(False)
    assert breaker.state is OPEN
    assert changes == [("m", OPEN)]


def test_open_fails_fast_with_the_cool_down_left_then_lets_probes_through():
    breaker, clock, changes = _breaker()
    for _ in range(3):
        breaker.record(False)
    clock.now += 2
    assert breaker.admit() == pytest.approx(3.0)
    clock.now += 3
    assert breaker.admit() is None  # probe 1
    assert breaker.state is HALF_OPEN
    assert breaker.admit() is None  # probe 2
    assert breaker.admit() is not None  # the probes are out
    breaker.record(True)
    assert breaker.state is HALF_OPEN
    breaker.record(True)
    assert breaker.state is CLOSED
    assert changes == [("m", OPEN), ("m", HALF_OPEN), ("m", CLOSED)]


def test_a_failed_probe_opens_it_again_for_a_whole_cool_down():
    breaker, clock, _ = _breaker()
    for _ in range(3):
        breaker.record(False)
    clock.now += 5
    assert breaker.admit() is None
    breaker.record(False)
    assert breaker.state is OPEN
    assert breaker.admit() == pytest.approx(5.0)


def test_a_probe_without_an_outcome_frees_its_slot():
    breaker, clock, _ = _breaker(probes=1)
    for _ in range(3):
        breaker.record(False)
    clock.now += 5
    assert breaker.admit() is None
    assert breaker.admit() is not None
    breaker.release()
    assert breaker.admit() is None


def test_the_failure_rate_opens_it_only_with_enough_calls_in_the_window():
    breaker, _, _ = _breaker(failures=0, failure_rate=0.5, min_calls=10, window=10.0)
    for _ in range(4):
        breaker.record(False)
        breaker.record(True)
    assert breaker.state is CLOSED  # 4 of 8: too few calls
    breaker.record(True)
    breaker.record(False)
    assert breaker.state is OPEN  # 5 of 10


def test_old_calls_leave_the_window():
    breaker, clock, _ = _breaker(failures=0, failure_rate=0.5, min_calls=4, window=10.0)
    breaker.record(False)
    breaker.record(False)
    breaker.record(False)
    clock.now += 11
    for _ in range(3):
        breaker.record(True)
    breaker.record(False)
    assert breaker.state is CLOSED  # 1 of 4 in the window


def test_sliding_counts_total_the_last_window_only():
    counts = SlidingCounts(10.0)
    counts.add(0.5, 1, 1)
    counts.add(5.5, 2)
    assert counts.totals(9.9) == (3, 1)
    assert counts.totals(10.5) == (2, 0)
    assert counts.totals(30) == (0, 0)


def test_breakers_are_made_at_a_first_failure_and_bounded():
    breakers = Breakers(BreakerSettings())
    assert breakers.get("a") is None
    assert breakers.failing("") is None  # no model: no breaker
    for n in range(MAX_BREAKERS + 5):
        breakers.failing(f"m{n}")
    assert len(breakers.states()) == MAX_BREAKERS
    off = Breakers(BreakerSettings(failures=0, failure_rate=0.0))
    assert off.failing("a") is None


def test_a_new_breaker_reports_its_closed_state_once():
    changes: list[tuple[str, str]] = []
    breakers = Breakers(BreakerSettings(failures=2), on_change=lambda m, s: changes.append((m, s)))
    breakers.failing("a")
    breakers.failing("a")
    assert changes == [("a", CLOSED)]  # the gauge's series exists, at 0, before any opening
    breaker = breakers.get("a")
    assert breaker is not None
    breaker.record(False)
    breaker.record(False)
    assert changes == [("a", CLOSED), ("a", OPEN)]
