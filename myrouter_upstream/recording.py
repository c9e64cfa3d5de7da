"""What reached the upstream, and when the client let go.

Tests of the bridge need to assert two things the bridge's own responses cannot
show: what the bridge actually sent upstream (headers, body), and whether it
closed the upstream connection when its caller went away. Each API request is
therefore recorded with its start time and, once the handler ends, its end time
and outcome.

The recorder is written by the server's event-loop thread and read by test
threads, so every access goes through one lock, and readers get copies: a
snapshot never changes under the test that holds it.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = ["Outcome", "RecordedRequest", "Recorder"]

Outcome = Literal["completed", "disconnected", "error"]
"""How a request ended.

* ``completed``: the handler ran to its end (including error answers and
  scripted faults such as a truncated or aborted stream);
* ``disconnected``: the client closed the connection before the response was
  finished;
* ``error``: the handler failed, or the server was shut down under it.
"""

REDACTED = "[redacted]"


@dataclasses.dataclass(kw_only=True, slots=True)
class RecordedRequest:
    """One request to the API. ``ended_at``, ``outcome`` and ``status`` fill in later."""

    seq: int
    """1, 2, ... in arrival order, per server; not reset by `Recorder.clear`."""
    method: str
    path: str
    headers: dict[str, str]
    """All headers, names lower-cased, repeated headers joined by ", " (auth included)."""
    body: Any
    """The decoded JSON body, or None when it was empty or not JSON."""
    raw_body: bytes
    started_at: float
    """`time.monotonic` when the request was received."""
    ended_at: float | None = None
    """`time.monotonic` when the handler finished or was cancelled.

    For an answer that ends normally it is stamped right before the last bytes
    are handed to the socket, so a client that has read a whole answer always
    finds its record finished (no polling needed for that case)."""
    outcome: Outcome | None = None
    status: int | None = None
    """The status line sent, when one was sent."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view for the HTTP control endpoint: credentials redacted."""
        headers = {
            name: REDACTED if name in ("authorization", "proxy-authorization") else value
            for name, value in self.headers.items()
        }
        return {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": self.body,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "status": self.status,
        }


class Recorder:
    """Thread-safe store of the latest `max_records` `RecordedRequest` records."""

    def __init__(self, max_records: int) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._records: collections.deque[RecordedRequest] = collections.deque(maxlen=max_records)
        self._seq = 0
        self._version = 0
        """Bumped on every change, so waiters never miss one."""

    def start(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, raw_body: bytes
    ) -> RecordedRequest:
        """Record a request that has just arrived; return the live record."""
        with self._changed:
            self._seq += 1
            record = RecordedRequest(
                seq=self._seq,
                method=method,
                path=path,
                headers=dict(headers),
                body=body,
                raw_body=raw_body,
                started_at=time.monotonic(),
            )
            self._records.append(record)
            self._changed_now()
        return record

    def set_status(self, record: RecordedRequest, status: int) -> None:
        with self._changed:
            record.status = status
            self._changed_now()

    def finish(self, record: RecordedRequest, outcome: Outcome, *, replace: bool = False) -> None:
        """Stamp the end of `record`; the first outcome wins unless `replace`."""
        with self._changed:
            if record.outcome is None or replace:
                record.outcome = outcome
                record.ended_at = time.monotonic()
                self._changed_now()

    def _changed_now(self) -> None:
        """Wake waiters; the caller holds the lock."""
        self._version += 1
        self._changed.notify_all()

    def snapshot(self) -> list[RecordedRequest]:
        """Copies of all records kept, oldest first."""
        with self._changed:
            return [_copy(record) for record in self._records]

    def clear(self) -> None:
        with self._changed:
            self._records.clear()
            self._changed_now()

    def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float
    ) -> RecordedRequest:
        """The first record (a copy) satisfying `predicate`, waiting up to `timeout` s.

        The predicate runs outside the lock (it may itself read the recorder).
        Must not be called from the server's own event-loop thread (it blocks).
        Raises `TimeoutError` when no record matches in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                version = self._version
                records = [_copy(record) for record in self._records]
            for record in records:
                if predicate(record):
                    return record
            with self._changed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no recorded request matched within {timeout} s")
                if self._version == version:
                    self._changed.wait(remaining)


def _copy(record: RecordedRequest) -> RecordedRequest:
    return dataclasses.replace(record, headers=dict(record.headers))
