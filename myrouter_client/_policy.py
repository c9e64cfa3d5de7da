"""What the sync and async clients decide alike: when to ask again, and how long is left.

Pure, apart from reading the monotonic clock, so both clients follow one rule.
"""

from __future__ import annotations

import dataclasses
import time

import grpc

from ._config import Retries
from ._errors import ChatCallError
from ._requests import call_metadata

__all__ = ["Call", "CallDefaults", "Deadline", "lacks_the_method", "retry_delay"]


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """A call's whole budget in seconds (None: no limit), read on the monotonic clock once."""

    ends_at: float | None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def left(self) -> float | None:
        """The seconds left, for the next attempt's gRPC timeout (never negative)."""
        return None if self.ends_at is None else max(self.ends_at - time.monotonic(), 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """What every attempt of one call sends, the budget they share and the retry policy."""

    metadata: tuple[tuple[str, str], ...]
    deadline: Deadline
    retries: Retries | None

    def retry_delay(self, error: ChatCallError, attempt: int) -> float | None:
        """`retry_delay` for this call."""
        return retry_delay(self.retries, error, attempt, self.deadline)


@dataclasses.dataclass(frozen=True, slots=True)
class CallDefaults:
    """A client's token, deadline (seconds) and retry policy: where each of its calls starts."""

    token: str | None = dataclasses.field(repr=False)  # never the token
    deadline: float | None = None
    retries: Retries | None = None

    def call(self, request_id: str | None = None, deadline: float | None = None) -> Call:
        """A call starting now; ``deadline`` (seconds), if given, instead of the client's."""
        return Call(
            tuple(call_metadata(self.token, request_id)),
            Deadline.after(self.deadline if deadline is None else deadline),
            self.retries,
        )


def retry_delay(
    retries: Retries | None, error: ChatCallError, attempt: int, deadline: Deadline
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` of a call that failed with ``error``,
    or None to raise it.

    Only a rate limit that says how long to wait (RetryInfo) is retried here;
    UNAVAILABLE is retried by gRPC itself (`Retries.service_config`). A caller
    that must never wait past its deadline, or longer than it allowed, gets the
    error at once instead of a sleep that cannot end in an answer.
    """
    if retries is None or attempt >= retries.attempts:
        return None
    delay = error.retry_delay
    if error.code is not grpc.StatusCode.RESOURCE_EXHAUSTED or delay is None:
        return None
    if delay > retries.max_retry_delay:
        return None
    left = deadline.left()
    if left is not None and delay >= left:
        return None
    return delay


def lacks_the_method(error: ChatCallError) -> bool:
    """Whether the server lacks the RPC: UNIMPLEMENTED from gRPC itself, not the bridge's
    own answer (an upstream HTTP 501 also maps to UNIMPLEMENTED, with ErrorInfo), which
    must not send the request upstream a second time."""
    return error.code is grpc.StatusCode.UNIMPLEMENTED and error.error_info is None
