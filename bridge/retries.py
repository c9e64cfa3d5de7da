"""Retries, fallback models and breakers: one upstream call as a few attempts, within a budget.

gRPC's rule is followed: an attempt may be retried only until the caller has
seen any of the answer (the RPC is "committed" then). `Retries.run` tries
`attempt` (one upstream request: for a unary call the whole answer, for a
stream the stream read up to its first event, `EventStream.prime`) and
returns the first that succeeds; the stream it hands over is never retried.

* Retried (`retry_reason`): a connect that failed after its own connect
  retries (`UpstreamUnreachable`; tried on the next model only), HTTP 408,
  429 (when its Retry-After fits in the time left), 502, 503 and 504, an
  ``error`` event with such a code (or an "overloaded"-like name) arriving as
  the first event or as a whole answer, and a stream that ends or breaks
  before its first event. Nothing else: not a 500, not another 4xx.
* Each model gets `retry_attempts` tries with exponential backoff and full
  jitter; then the next model of its fallback chain (`fallbacks`, filtered
  by `UpstreamCall.model_allowed`). No attempt starts unless its wait and
  `MIN_ATTEMPT_SECONDS` fit in the call's time left.
* Every attempt after a call's first spends from one `RetryBudget` (at most
  ``retry_budget`` x calls + ``retry_budget_floor`` per window), so a
  sustained outage adds at most that much load upstream (gRPC's
  retryThrottling, Envoy's retry budgets).
* A model whose breaker is open (`bridge.breaker`) is skipped without a
  request; a call with nothing left to try fails with `UpstreamCircuitOpen`.
* A caller sending ``x-bridge-retry: off`` gets one attempt, no fallback
  (`upstream_call.RETRY_KEY`); every attempt carries its number upstream
  (`upstream_call.ATTEMPT_HEADER`) and the call's one request id.

Each attempt's model and outcome go to `UpstreamCall.attempts` (the call's
log line), the retries and fallbacks by reason to the metrics.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from .breaker import Breaker, Breakers, BreakerSettings, SlidingCounts
from .config import BridgeConfig
from .errors import (
    BridgeError,
    UpstreamCircuitOpen,
    UpstreamHTTPError,
    UpstreamReportedError,
    UpstreamUnreachable,
    numeric_error_code,
)
from .metrics import Metrics
from .upstream_call import UpstreamCall

__all__ = [
    "MIN_ATTEMPT_SECONDS",
    "RETRYABLE_ERROR_NAMES",
    "RETRYABLE_STATUSES",
    "Retries",
    "RetryBudget",
    "StreamCut",
    "retry_reason",
]

RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
RETRYABLE_ERROR_NAMES = frozenset(
    {
        "overloaded",
        "overloaded_error",
        "service_unavailable",
        "bad_gateway",
        "gateway_timeout",
        "request_timeout",
        "rate_limit_exceeded",
        "rate_limit_error",
        "rate_limited",
        "too_many_requests",
    }
)
"""Upstream error codes by name that say "try again", as the statuses above do."""
MIN_ATTEMPT_SECONDS = 0.05
"""The least time an attempt needs: none starts with less left before the deadline."""

_T = TypeVar("_T")
Attempt = Callable[[str, int], Awaitable[_T]]
"""One upstream request for (model, attempt number); raises a BridgeError on failure."""


class StreamCut(Exception):
    """A stream that ended or broke before its first event: `error` is what it raised.

    Raised by the stream's attempt so that the cut is retried there and only
    there (a cut later, or a unary answer's, may have been generated, and billed,
    whole); `Retries.run` raises `error` itself when it gives up.
    """

    def __init__(self, error: BridgeError) -> None:
        super().__init__(error.message)
        self.error = error


def retry_reason(error: BaseException) -> str | None:
    """Why `error` may be tried again (the metrics' ``reason``), or None if it may not."""
    if isinstance(error, StreamCut):
        return "stream_cut"
    if isinstance(error, UpstreamHTTPError):
        status = error.http_status
        return f"http_{status}" if status in RETRYABLE_STATUSES else None
    if isinstance(error, UpstreamReportedError):
        code = error.metadata.get("code")
        if code is None:
            return None
        numeric = numeric_error_code(code)
        if numeric in RETRYABLE_STATUSES or code.strip().lower() in RETRYABLE_ERROR_NAMES:
            return "error_event"
        return None
    if isinstance(error, UpstreamUnreachable):
        return "connect"
    if isinstance(error, UpstreamCircuitOpen):
        return "circuit_open"
    return None


class RetryBudget:
    """Retries allowed over a sliding window: at most `ratio` x calls + `floor`."""

    __slots__ = ("_clock", "_counts", "floor", "ratio")

    def __init__(
        self, ratio: float, floor: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ratio = ratio
        self.floor = floor
        self._clock = clock
        self._counts = SlidingCounts(window)  # (calls, retries)

    def called(self, now: float) -> None:
        self._counts.add(now, 1)

    def spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        now = self._clock()
        calls, retries = self._counts.totals(now)
        if retries + 1 > self.ratio * calls + self.floor:
            return False
        self._counts.add(now, 0, 1)
        return True


class Retries:
    """The bridge's retry, fallback and breaker rules, read from its config once."""

    __slots__ = ("_attempts", "_backoff", "_budget", "_chains", "_clock", "_max_backoff",
                 "_metrics", "_random", "_sleep", "breakers")  # fmt: skip

    def __init__(
        self,
        config: BridgeConfig,
        fallbacks: Mapping[str, tuple[str, ...]],
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._attempts = config.retry_attempts
        self._backoff = config.retry_backoff
        self._max_backoff = config.retry_max_backoff
        self._chains: dict[str, tuple[str, ...]] = {}
        self.use_fallbacks(fallbacks)
        self._metrics = metrics
        self._clock = clock
        self._random = rand
        self._sleep = sleep
        self._budget = RetryBudget(
            config.retry_budget, config.retry_budget_floor, config.retry_budget_window, clock
        )
        settings = BreakerSettings(
            failures=config.breaker_failures,
            failure_rate=config.breaker_failure_rate,
            min_calls=config.breaker_min_calls,
            window=config.breaker_window,
            cooldown=config.breaker_cooldown,
            probes=config.breaker_probes,
        )
        self.breakers = Breakers(
            settings, clock, None if metrics is None else metrics.breaker_state
        )

    def use_fallbacks(self, fallbacks: Mapping[str, tuple[str, ...]]) -> None:
        """Take a new fallback table (model -> the models after it, in order): the
        setting's at start-up, or a reloaded policy file's (its ``fallbacks``)."""
        self._chains = {model: (model, *chain) for model, chain in fallbacks.items()}

    def chain(self, call: UpstreamCall) -> tuple[str, ...]:
        """The models to try for `call`, in order: its own, then its fallbacks that the
        caller may use (a call that opted out of retries: its own alone)."""
        chain = self._chains.get(call.model)
        if chain is None or not call.retry:
            return (call.model,)
        allowed = call.model_allowed
        if allowed is None:
            return chain
        return (call.model, *(model for model in chain[1:] if allowed(model)))

    async def run(self, call: UpstreamCall, attempt: Attempt[_T]) -> _T:
        """`attempt`'s first success, or the last attempt's failure (`UpstreamCircuitOpen`
        when no model could be tried)."""
        now = self._clock()
        self._budget.called(now)
        deadline = now + call.timeout
        if call.model not in self._chains and self.breakers.get(call.model) is None:
            try:  # the common case, kept short: one model that has never failed
                return await attempt(call.model, 1)
            except BaseException as exc:
                reason = retry_reason(exc)
                self._failed(call, call.model, None, exc, reason)
                if reason is None:
                    raise _unwrapped(exc) from None
                return await self._again(call, attempt, deadline, exc, reason)
        return await self._again(call, attempt, deadline, None, "")

    async def _again(
        self,
        call: UpstreamCall,
        attempt: Attempt[_T],
        deadline: float,
        failure: BaseException | None,
        reason: str,
    ) -> _T:
        """The general case: the fallback chain, breakers and retries, after `failure` (the
        first attempt's, which `run` made; None when no attempt was made yet)."""
        number = 0 if failure is None else 1
        for index, model in enumerate(self.chain(call)):
            tries = 1 if failure is not None and index == 0 else 0
            while True:
                if tries:
                    delay = self._delay(tries, failure)
                    if not self._may_retry(call, tries, delay, deadline, reason):
                        break
                    await self._sleep(delay)
                elif index and not self._may_fall_back(deadline, reason):
                    raise _unwrapped(failure) from None
                breaker = self.breakers.get(model)
                if breaker is not None and (left := breaker.admit()) is not None:
                    call.attempts.append((model, "circuit_open"))
                    if failure is None or isinstance(failure, UpstreamCircuitOpen):
                        failure, reason = UpstreamCircuitOpen(model, left), "circuit_open"
                    break
                number += 1
                tries += 1
                try:
                    result = await attempt(model, number)
                except BaseException as exc:
                    failure, found = exc, retry_reason(exc)
                    self._failed(call, model, breaker, exc, found)
                    if found is None:
                        raise _unwrapped(exc) from None
                    reason = found
                    continue
                if breaker is not None:
                    breaker.record(True)
                if number > 1:
                    call.attempts.append((model, "ok"))
                return result
        raise _unwrapped(failure) from None

    def _failed(
        self,
        call: UpstreamCall,
        model: str,
        breaker: Breaker | None,
        error: BaseException,
        reason: str | None,
    ) -> None:
        """Note a failed attempt: in the call's trail, and for the model's breaker."""
        if reason is not None:
            call.attempts.append((model, reason))
            breaker = self.breakers.failing(model)
            if breaker is not None:
                breaker.record(False)
            return
        outcome = error.reason if isinstance(error, BridgeError) else "cancelled"
        call.attempts.append((model, outcome))
        if breaker is not None:
            if isinstance(error, (UpstreamHTTPError, UpstreamReportedError)):
                breaker.record(True)  # an answer, if not the one hoped for: the model is up
            else:
                breaker.release()

    def _delay(self, tries: int, failure: BaseException | None) -> float:
        """Full jitter: a random wait up to the doubled backoff (a 429's Retry-After instead)."""
        if isinstance(failure, UpstreamHTTPError) and failure.retry_after is not None:
            return failure.retry_after
        return self._random() * min(self._max_backoff, self._backoff * (1 << (tries - 1)))

    def _may_retry(
        self, call: UpstreamCall, tries: int, delay: float, deadline: float, reason: str
    ) -> bool:
        if not call.retry or tries >= self._attempts or reason in ("connect", "circuit_open"):
            return False  # a connect was retried already, by its own rules
        if delay + MIN_ATTEMPT_SECONDS > deadline - self._clock():
            return False
        if not self._budget.spend():
            return False
        if self._metrics is not None:
            self._metrics.retried(reason)
        return True

    def _may_fall_back(self, deadline: float, reason: str) -> bool:
        if deadline - self._clock() < MIN_ATTEMPT_SECONDS:
            return False
        if reason != "circuit_open" and not self._budget.spend():
            return False
        if self._metrics is not None:
            self._metrics.fell_back(reason)
        return True


def _unwrapped(error: BaseException | None) -> BaseException:
    assert error is not None
    return error.error if isinstance(error, StreamCut) else error
