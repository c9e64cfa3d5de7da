"""Open files: the soft RLIMIT_NOFILE raised to the hard limit, and a warning when short.

Every open stream holds a socket towards the upstream, and every caller's
connection one more; at the usual soft limit of 1024 a bridge fails past
about a thousand streams, with errors ("Too many open files") that name
neither the limit nor the setting. The soft limit is ours to raise, up to the
hard one, which only the administrator (or the container runtime) sets; so
the bridge raises it at start-up, before any worker starts (children inherit
it), and says once, with the figures, when even the hard limit is short of
what the configured maximums may hold open. See docs/operations.md.
"""

from __future__ import annotations

import dataclasses
import logging
import resource

from .config import BridgeConfig

__all__ = ["HEADROOM", "FileLimit", "needed", "raise_file_limit"]

log = logging.getLogger("bridge.open_files")

HEADROOM = 256
"""Descriptors beyond calls and upstream connections: grpc's and the event loop's own
(epoll, wake-up pipes), the metrics listener and its scrapes, logs, imports."""


@dataclasses.dataclass(frozen=True, slots=True)
class FileLimit:
    """RLIMIT_NOFILE before and after `raise_file_limit`, and what the config needs."""

    before: int
    soft: int
    hard: int
    needed: int

    @property
    def short(self) -> bool:
        return self.soft < self.needed


def needed(config: BridgeConfig) -> int:
    """Descriptors one bridge process may hold at its configured maximums.

    At most one caller connection per call (callers usually share far fewer),
    the upstream pool, and `HEADROOM`.
    """
    return config.max_concurrent_rpcs + config.max_upstream_connections + HEADROOM


def raise_file_limit(config: BridgeConfig) -> FileLimit:
    """Raise the soft limit to the hard one; log one WARNING if it is still short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, needed(config))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep what we have
            pass
    limit = FileLimit(before=before, soft=soft, hard=hard, needed=needed(config))
    if limit.short:
        log.warning(
            "open files: the limit is %d (hard limit %d), but --max-concurrent-rpcs %d + "
            "--max-upstream-connections %d + %d spare may need %d; raise the hard limit "
            "(ulimit -Hn, systemd LimitNOFILE=, the container runtime's nofile) or lower "
            "those settings (docs/operations.md, Open files)",
            soft,
            hard,
            config.max_concurrent_rpcs,
            config.max_upstream_connections,
            HEADROOM,
            limit.needed,
        )
    return limit
