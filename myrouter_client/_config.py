"""Channel options and the retry policy: small frozen values, checked when built.

Retries are off by default: each layer that retries multiplies the attempts a
failing API sees (every one a new generation request), and a mesh in front of
the bridge (deploy/istio/) or the bridge itself may already retry. Turn them on
where nothing else does.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_RECEIVE_BYTES", "MAX_SEND_BYTES", "SERVICE", "Retries", "channel_options"]

SERVICE = "myrouter.chat.v1.ChatService"

MAX_SEND_BYTES = 8 * 1024 * 1024
"""The largest request sent: the bridge's default ``--max-request-bytes``. A bigger one
fails here, RESOURCE_EXHAUSTED, instead of being sent and refused."""

MAX_RECEIVE_BYTES = 64 * 1024 * 1024
"""The largest answer accepted: the bridge's default ``--max-send-bytes``. gRPC's own
default, 4 MiB, would refuse long completions the bridge sends."""

_MAX_GRPC_ATTEMPTS = 5  # gRPC clamps a retryPolicy's maxAttempts to 5, silently


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Retries:
    """When a failed call is asked again; ``AsyncClient(..., retries=Retries())``.

    Two kinds of failure are retried, and never once a stream has yielded a chunk:

    * UNAVAILABLE (the bridge unreachable or draining, the API down) by gRPC's
      own retry support: the channel's service config carries a retryPolicy with
      this backoff, and gRPC never retries a call once the server has answered
      its headers, which come with a stream's first message.
    * RESOURCE_EXHAUSTED with a RetryInfo (the API's 429 with Retry-After) by the
      client, after waiting the delay the API asked for, when that is at most
      ``max_retry_delay`` and ends before the call's deadline; a longer wait is
      the caller's to decide, so the RateLimitError is raised at once.

    ``attempts`` counts the first one: 3 is the call and two retries.
    """

    attempts: int = 3
    initial_backoff: float = 0.5
    """Seconds before the first retry of UNAVAILABLE (gRPC adds jitter)."""
    max_backoff: float = 10.0
    backoff_multiplier: float = 2.0
    max_retry_delay: float = 30.0
    """The longest RetryInfo delay waited for; a longer one is raised instead."""

    def __post_init__(self) -> None:
        if not 2 <= self.attempts <= _MAX_GRPC_ATTEMPTS:
            raise ValueError(f"attempts must be between 2 and {_MAX_GRPC_ATTEMPTS}")
        for name in ("initial_backoff", "max_backoff", "max_retry_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0")
        if not (math.isfinite(self.backoff_multiplier) and self.backoff_multiplier >= 1):
            raise ValueError("backoff_multiplier must be a finite number >= 1")

    def service_config(self) -> str:
        """The channel's gRPC service config (JSON): the retryPolicy for UNAVAILABLE."""
        policy = {
            "maxAttempts": self.attempts,
            "initialBackoff": f"{self.initial_backoff}s",
            "maxBackoff": f"{self.max_backoff}s",
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        config = {"methodConfig": [{"name": [{"service": SERVICE}], "retryPolicy": policy}]}
        return json.dumps(config)


def channel_options(
    *,
    retries: Retries | None = None,
    max_send_bytes: int = MAX_SEND_BYTES,
    max_receive_bytes: int = MAX_RECEIVE_BYTES,
    overrides: Sequence[tuple[str, Any]] = (),
) -> list[tuple[str, Any]]:
    """Options for ``grpc.insecure_channel`` / ``secure_channel`` (sync or aio) to the bridge.

    The message limits match the bridge's defaults; a bridge configured otherwise
    needs the same values here. Without ``retries`` the channel makes none of
    its own beyond gRPC's transparent ones (a call that never left this process).
    ``overrides`` (a caller's own options) replace those of the same name.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", max_send_bytes),
        ("grpc.max_receive_message_length", max_receive_bytes),
    ]
    if retries is not None:
        options += [("grpc.enable_retries", 1), ("grpc.service_config", retries.service_config())]
    given = {name for name, _ in overrides}
    return [*overrides, *(option for option in options if option[0] not in given)]
