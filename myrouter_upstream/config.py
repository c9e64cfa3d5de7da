"""Server-wide settings of the embedded upstream, fixed when it starts."""

from __future__ import annotations

import dataclasses
import math

from .scenario import Scenario

__all__ = ["DEFAULT_MAX_RECORDS", "UpstreamConfig"]

DEFAULT_MAX_RECORDS = 10_000
"""`UpstreamConfig.max_records` unless set (the command line's default too)."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class UpstreamConfig:
    """How to listen, whom to let in, and how to behave by default."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free ephemeral port; read it back from `EmbeddedUpstream.port`."""
    api_keys: frozenset[str] | None = None
    """Accepted bearer tokens; None accepts any non-empty token."""
    default_scenario: Scenario = dataclasses.field(default_factory=Scenario)
    """The scenario in force when a request names none (``DELETE /_control/scenario``
    returns to it)."""
    chunk_delay: float = 0.0
    """Seconds between stream events unless a scenario says otherwise; 0 never sleeps."""
    base_path: str = "/api/v1"
    """Prefix of the API routes (``/models``, ``/chat/completions``)."""
    max_records: int = DEFAULT_MAX_RECORDS
    """How many of the latest requests the recorder keeps (older ones are dropped), so a
    long-lived upstream (a demo, a benchmark serving millions of requests) holds bounded
    memory, and its garbage collector a bounded heap to scan."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if not (math.isfinite(self.chunk_delay) and self.chunk_delay >= 0):
            raise ValueError("chunk_delay must be a finite number >= 0")
        if not self.base_path.startswith("/") or self.base_path.endswith("/"):
            raise ValueError("base_path must start with '/' and not end with '/'")
        if self.max_records < 1:
            raise ValueError("max_records must be at least 1")
        if self.api_keys is not None and not isinstance(self.api_keys, frozenset):
            raise TypeError("api_keys must be a frozenset or None")
