"""Prometheus metrics: what platform teams watch, and the token counts they bill by.

Each bridge owns its registry (no process-wide globals, so tests can run
several bridges in one process). Metrics are written once per RPC, by
`Metrics.started` and `Metrics.finished`, never per chunk: the streaming loop counts
chunks in its RPC's record and the totals are published when the call ends.

With several worker processes, prometheus_client's multiprocess mode is used:
each worker writes its values to files in the directory named by
``PROMETHEUS_MULTIPROC_DIR``, which the supervisor puts in the workers'
environment when it starts them (bridge/workers.py), and the supervisor serves
the sum (`multiprocess_registry`).

    bridge_rpcs_total{method,code}                 RPCs by method and gRPC status code
    bridge_rpc_duration_seconds{method}            whole RPC, histogram
    bridge_upstream_latency_seconds{method}        upstream request to its last byte
    bridge_time_to_first_chunk_seconds{method}     RPC start to the first streamed chunk
    bridge_active_rpcs{method}                     RPCs in flight (streams included)
    bridge_stream_chunks_total{method}             chunks relayed to callers
    bridge_upstream_errors_total{http_status,reason}  upstream failures
    bridge_tokens_total{model,kind}                usage tokens: input, output,
                                                   cache_read, cache_write, reasoning
    bridge_upstream_retries_total{reason}          upstream attempts retried, by why
    bridge_upstream_fallbacks_total{reason}        calls moved on to a fallback model
    bridge_upstream_breaker_state{model}           0 closed, 1 half-open, 2 open; with
                                                   workers, the worst live worker's

The retry and breaker metrics are written when an attempt fails or a breaker
changes state (bridge.retries), never on a call that succeeds at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from myrouter.chat.v1 import chat_pb2

__all__ = [
    "BREAKER_STATES",
    "FIRST_CHUNK_BUCKETS",
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "TOKEN_KINDS",
    "Metrics",
    "MetricsServer",
    "multiprocess_registry",
    "token_counts",
]

log = logging.getLogger("bridge.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable by which prometheus_client, in a worker, chooses its multiprocess mode."""

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
FIRST_CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""The gauge's value per breaker state (bridge.breaker): higher is worse."""


def token_counts(usage: chat_pb2.Usage) -> dict[str, int]:
    """Tokens by kind, zero kinds left out, from the decoded Usage the caller received.

    Read from the message, never from the API's JSON: which spelling of a count
    wins is `bridge.mapping`'s rule alone, so a metric always says what the
    caller was told.
    """
    counts = {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read_tokens,
        "cache_write": usage.cache_write_tokens,
        "reasoning": usage.reasoning_tokens,
    }
    return {kind: count for kind, count in counts.items() if count > 0}


class Metrics:
    """The bridge's metrics in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.rpcs = Counter(
            "bridge_rpcs",
            "RPCs handled, by method and gRPC status code",
            ["method", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "bridge_rpc_duration_seconds",
            "Duration of whole RPCs",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "bridge_upstream_latency_seconds",
            "From sending the upstream request to the end of its answer",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_chunk = Histogram(
            "bridge_time_to_first_chunk_seconds",
            "From the start of a streaming RPC to its first chunk",
            ["method"],
            buckets=FIRST_CHUNK_BUCKETS,
            registry=r,
        )
        self.active = Gauge(
            "bridge_active_rpcs",
            "RPCs in flight, streams included",
            ["method"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.chunks = Counter(
            "bridge_stream_chunks", "Stream chunks relayed to callers", ["method"], registry=r
        )
        self.upstream_errors = Counter(
            "bridge_upstream_errors",
            "Upstream failures, by HTTP status (empty when there was none) and reason",
            ["http_status", "reason"],
            registry=r,
        )
        self.tokens = Counter(
            "bridge_tokens",
            "Tokens reported in usage, by model and kind "
            "(input, output, cache_read, cache_write, reasoning)",
            ["model", "kind"],
            registry=r,
        )
        self.retries = Counter(
            "bridge_upstream_retries",
            "Upstream attempts retried before the caller saw anything, by reason",
            ["reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "bridge_upstream_fallbacks",
            "Calls moved on to a fallback model, by the reason the model before failed",
            ["reason"],
            registry=r,
        )
        self.breakers = Gauge(
            "bridge_upstream_breaker_state",
            "Circuit breaker state per upstream model: 0 closed, 1 half-open, 2 open "
            "(per process; with workers, the worst live worker's)",
            ["model"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """The labelled child, cached: `labels()` takes a lock, a dict lookup does not."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def started(self, method: str) -> None:
        self._child(self.active, method).inc()

    def finished(
        self,
        method: str,
        code: str,
        *,
        duration: float,
        upstream_latency: float | None,
        first_chunk: float | None,
        chunks: int,
        tokens: Mapping[str, int],
        model: str,
    ) -> None:
        """Publish everything about one finished RPC."""
        child = self._child
        child(self.active, method).dec()
        child(self.rpcs, method, code).inc()
        child(self.duration, method).observe(duration)
        if upstream_latency is not None:
            child(self.upstream_latency, method).observe(upstream_latency)
        if first_chunk is not None:
            child(self.first_chunk, method).observe(first_chunk)
        if chunks:
            child(self.chunks, method).inc(chunks)
        for kind, count in tokens.items():
            child(self.tokens, model, kind).inc(count)

    def upstream_error(self, http_status: str, reason: str) -> None:
        self._child(self.upstream_errors, http_status, reason).inc()

    def retried(self, reason: str) -> None:
        self._child(self.retries, reason).inc()

    def fell_back(self, reason: str) -> None:
        self._child(self.fallbacks, reason).inc()

    def breaker_state(self, model: str, state: str) -> None:
        self._child(self.breakers, model).set(BREAKER_STATES[state])


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """A registry that sums the values every worker wrote to `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class MetricsServer:
    """The /metrics HTTP endpoint, on its own port, in a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, _, port = listen.rpartition(":")
        self._httpd: WSGIServer
        self._thread: threading.Thread
        self._httpd, self._thread = start_http_server(
            int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry
        )
        self.port: int = self._httpd.server_port
        log.info("metrics at http://%s:%d/metrics", host or "0.0.0.0", self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
