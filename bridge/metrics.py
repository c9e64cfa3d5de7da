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
    bridge_caller_rpcs_total{caller,method,code}   RPCs by caller (its policy label)
    bridge_caller_tokens_total{caller,model,kind}  usage tokens by caller
    bridge_upstream_retries_total{reason}          upstream attempts retried, by why
    bridge_upstream_fallbacks_total{reason}        calls moved on to a fallback model
    bridge_upstream_breaker_state{model}           0 closed, 1 half-open, 2 open; with
                                                   workers, the worst live worker's
    bridge_max_concurrent_rpcs                     the admission cap (max_concurrent_rpcs)
    bridge_policy_reloads_total{result}            policy file reloads: ok, error
                                                   (an error keeps the last good policy)
    bridge_limits_store_failures_total{mode}       calls and settlements the caller-limits
                                                   store (Redis) failed, by failure mode

Beside them, the chat RPCs are published under the OpenTelemetry GenAI semantic
conventions (`GENAI_SEMCONV`), named by the Prometheus mapping of the
OpenTelemetry compatibility spec (`prometheus_name`): `gen_ai_client_token_usage`,
`gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`,
`gen_ai_server_time_per_output_token_seconds`. Their names, units and descriptions
come from the `opentelemetry-semantic-conventions` package, never written out here,
and a `GenAiCall` carries one RPC's values to every exporter (this registry and
OpenTelemetry's, bridge/otel.py), so both say the same.

The retry and breaker metrics are written when an attempt fails or a breaker
changes state (bridge.retries), never on a call that succeeds at once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast
from wsgiref.simple_server import WSGIServer

from opentelemetry.metrics import Histogram as OtelHistogram
from opentelemetry.metrics import Meter
from opentelemetry.semconv import version as semconv_version
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.schemas import Schemas
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from myrouter.chat.v1 import chat_pb2

from .config import LIMITS_FAILURE_MODES, ListenAddress

__all__ = [
    "BREAKER_STATES",
    "CALL_LABELS",
    "FIRST_CHUNK_BUCKETS",
    "GENAI_ATTRIBUTES",
    "GENAI_METRICS",
    "GENAI_REQUEST_DURATION",
    "GENAI_SEMCONV",
    "GENAI_TIME_PER_OUTPUT_TOKEN",
    "GENAI_TIME_TO_FIRST_TOKEN",
    "GENAI_TOKEN_USAGE",
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "SEMCONV_PACKAGE_VERSION",
    "TOKEN_KINDS",
    "GenAiCall",
    "GenAiMetric",
    "Metrics",
    "MetricsServer",
    "multiprocess_registry",
    "prometheus_label",
    "prometheus_name",
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

SEMCONV_PACKAGE_VERSION: str = semconv_version.__version__
"""The `opentelemetry-semantic-conventions` release the GenAI names come from."""

GENAI_SEMCONV: str = Schemas.V1_44_0.value
"""The semantic-conventions schema the GenAI metrics and span attributes follow: the
newest one `opentelemetry-semantic-conventions` (pinned in pyproject.toml) knows."""

CALL_LABELS: tuple[str, ...] = ("caller",)
"""Labels of the callers' metrics (``bridge_caller_rpcs_total``,
``bridge_caller_tokens_total``) and of every GenAI metric and span, on Prometheus and
OpenTelemetry alike; the older ``bridge_*`` metrics keep their label sets (a contract).
Adding one is one name here; its value is ``RpcRecord.labels[name]``. ``caller``: the
caller's policy label (`bridge.policy`: an entry's id, ``anonymous`` or ``other``), so
its cardinality is the policy's; empty for a call refused before its caller was known."""

GENAI_ATTRIBUTES: tuple[str, ...] = (
    gen_ai.GEN_AI_OPERATION_NAME,
    gen_ai.GEN_AI_PROVIDER_NAME,
    gen_ai.GEN_AI_REQUEST_MODEL,
    gen_ai.GEN_AI_RESPONSE_MODEL,
    *CALL_LABELS,
)
"""The attributes of every GenAI metric, in label order (`GenAiCall.attributes`' keys)."""


class GenAiMetric(NamedTuple):
    """One GenAI histogram as the conventions define it, with the buckets they advise."""

    name: str
    unit: str
    description: str
    buckets: tuple[float, ...]

    @classmethod
    def of(
        cls, create: Callable[[Meter], OtelHistogram], buckets: tuple[float, ...]
    ) -> GenAiMetric:
        """The definition the package's `create_gen_ai_*` function would register.

        The package has the name, unit and description only inside those functions,
        so one is called with a stand-in meter that keeps what it was asked for.
        """
        return cast(GenAiMetric, create(cast(Meter, _DefinitionMeter(buckets))))


class _DefinitionMeter:
    """The part of a Meter that `create_gen_ai_*` calls: returns the definition it gets."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._buckets = buckets

    def create_histogram(self, name: str, unit: str = "", description: str = "") -> GenAiMetric:
        return GenAiMetric(name, unit, description, self._buckets)


GENAI_TOKEN_USAGE = GenAiMetric.of(
    gen_ai_metrics.create_gen_ai_client_token_usage,
    (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
)
GENAI_REQUEST_DURATION = GenAiMetric.of(
    gen_ai_metrics.create_gen_ai_server_request_duration,
    (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
)
GENAI_TIME_TO_FIRST_TOKEN = GenAiMetric.of(
    gen_ai_metrics.create_gen_ai_server_time_to_first_token,
    (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
GENAI_TIME_PER_OUTPUT_TOKEN = GenAiMetric.of(
    gen_ai_metrics.create_gen_ai_server_time_per_output_token,
    (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5),
)
GENAI_METRICS = (
    GENAI_TOKEN_USAGE,
    GENAI_REQUEST_DURATION,
    GENAI_TIME_TO_FIRST_TOKEN,
    GENAI_TIME_PER_OUTPUT_TOKEN,
)
"""The GenAI histograms the bridge publishes, with the buckets the conventions advise."""


_PROMETHEUS_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


def prometheus_name(name: str, unit: str) -> str:
    """An OpenTelemetry metric's Prometheus name, by the compatibility spec's mapping.

    Characters Prometheus does not allow become ``_``; the unit is added as a suffix
    in its Prometheus spelling (``s`` -> ``_seconds``), unless the name already ends
    with it; annotations in braces (``{token}``) are dropped. Histograms only here:
    a counter's ``_total`` is prometheus_client's.
    """
    base = prometheus_label(name)
    unit = re.sub(r"\{[^}]*\}", "", unit)
    suffix = prometheus_label(_PROMETHEUS_UNITS.get(unit, unit)).strip("_")
    if suffix and not base.endswith(f"_{suffix}"):
        base = f"{base}_{suffix}"
    return base


def prometheus_label(attribute: str) -> str:
    """An OpenTelemetry attribute's (or name's) Prometheus spelling: ``gen_ai.token.type``
    -> ``gen_ai_token_type``."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)


class GenAiCall(NamedTuple):
    """One chat RPC as the GenAI conventions see it: built once, by the observer, and read
    by every exporter, so Prometheus and OpenTelemetry always agree."""

    attributes: Mapping[str, str]
    """`GENAI_ATTRIBUTES` -> value, in that order."""
    error_type: str
    """`error.type` of the request duration ("" when the call succeeded)."""
    duration: float
    first_token: float | None
    per_output_token: float | None
    tokens: Mapping[str, int]
    """`gen_ai.token.type` -> count."""


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
        self.caller_rpcs = Counter(
            "bridge_caller_rpcs",
            "RPCs handled, by caller (its policy label), method and gRPC status code",
            [*CALL_LABELS, "method", "code"],
            registry=r,
        )
        self.caller_tokens = Counter(
            "bridge_caller_tokens",
            "Tokens reported in usage, by caller (its policy label), model and kind",
            [*CALL_LABELS, "model", "kind"],
            registry=r,
        )
        self.admission_cap = Gauge(
            "bridge_max_concurrent_rpcs",
            "The admission cap (max_concurrent_rpcs): RPCs in flight beyond it are refused",
            multiprocess_mode="livesum",
            registry=r,
        )
        call = [prometheus_label(name) for name in GENAI_ATTRIBUTES]
        self.genai_tokens = _genai_histogram(
            GENAI_TOKEN_USAGE, [*call, prometheus_label(gen_ai.GEN_AI_TOKEN_TYPE)], r
        )
        self.genai_duration = _genai_histogram(
            GENAI_REQUEST_DURATION, [*call, prometheus_label(ERROR_TYPE)], r
        )
        self.genai_first_token = _genai_histogram(GENAI_TIME_TO_FIRST_TOKEN, call, r)
        self.genai_per_output_token = _genai_histogram(GENAI_TIME_PER_OUTPUT_TOKEN, call, r)
        self.policy_reloads = Counter(
            "bridge_policy_reloads",
            "Reloads of the caller policy file, by result (ok; error: the last good one is kept)",
            ["result"],
            registry=r,
        )
        self.limits_store_failures = Counter(
            "bridge_limits_store_failures",
            "Admissions, settlements and releases the caller-limits store failed or was "
            "skipped for while down, by failure mode (open: admitted uncounted; closed: refused)",
            ["mode"],
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
        # At 0 from the start, so the first failure is an increase the alerts see
        # (a series that appears at 1 has no increase for Prometheus).
        for result in ("ok", "error"):
            self._child(self.policy_reloads, result)
        for mode in LIMITS_FAILURE_MODES:
            self._child(self.limits_store_failures, mode)

    def _child(self, metric: Any, *labels: str) -> Any:
        """The labelled child, cached: `labels()` takes a lock, a dict lookup does not."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def started(self, method: str) -> None:
        self._child(self.active, method).inc()

    def admission(self, max_calls: int) -> None:
        """Publish the cap `Admission` enforces (summed over workers, as the calls are)."""
        self.admission_cap.set(max_calls)

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
        labels: tuple[str, ...] = (),
        genai: GenAiCall | None = None,
    ) -> None:
        """Publish everything about one finished RPC; `labels` are `CALL_LABELS`' values."""
        child = self._child
        child(self.active, method).dec()
        child(self.rpcs, method, code).inc()
        child(self.caller_rpcs, *labels, method, code).inc()
        child(self.duration, method).observe(duration)
        if upstream_latency is not None:
            child(self.upstream_latency, method).observe(upstream_latency)
        if first_chunk is not None:
            child(self.first_chunk, method).observe(first_chunk)
        if chunks:
            child(self.chunks, method).inc(chunks)
        for kind, count in tokens.items():
            child(self.tokens, model, kind).inc(count)
            child(self.caller_tokens, *labels, model, kind).inc(count)
        if genai is not None:
            self._genai(genai)

    def _genai(self, call: GenAiCall) -> None:
        child = self._child
        values = tuple(call.attributes[name] for name in GENAI_ATTRIBUTES)
        child(self.genai_duration, *values, call.error_type).observe(call.duration)
        if call.first_token is not None:
            child(self.genai_first_token, *values).observe(call.first_token)
        if call.per_output_token is not None:
            child(self.genai_per_output_token, *values).observe(call.per_output_token)
        for token_type, count in call.tokens.items():
            child(self.genai_tokens, *values, token_type).observe(count)

    def upstream_error(self, http_status: str, reason: str) -> None:
        self._child(self.upstream_errors, http_status, reason).inc()

    def policy_reloaded(self, result: str) -> None:
        """Count a policy file reload (`bridge.policy.PolicyFile`'s ``on_result``)."""
        self._child(self.policy_reloads, result).inc()

    def limits_store_failure(self, mode: str) -> None:
        """Count a call or a call's end the caller-limits store failed (bridge/quotas.py)."""
        self._child(self.limits_store_failures, mode).inc()

    def retried(self, reason: str) -> None:
        self._child(self.retries, reason).inc()

    def fell_back(self, reason: str) -> None:
        self._child(self.fallbacks, reason).inc()

    def breaker_state(self, model: str, state: str) -> None:
        self._child(self.breakers, model).set(BREAKER_STATES[state])


def _genai_histogram(
    metric: GenAiMetric, labels: list[str], registry: CollectorRegistry
) -> Histogram:
    return Histogram(
        prometheus_name(metric.name, metric.unit),
        metric.description,
        labels,
        buckets=metric.buckets,
        registry=registry,
    )


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """A registry that sums the values every worker wrote to `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


class MetricsServer:
    """The /metrics HTTP endpoint, on its own port, in a daemon thread."""

    def __init__(self, listen: ListenAddress, registry: CollectorRegistry) -> None:
        host = listen.host or "0.0.0.0"
        self._httpd: WSGIServer
        self._thread: threading.Thread
        self._httpd, self._thread = start_http_server(listen.port, addr=host, registry=registry)
        self.port: int = self._httpd.server_port
        log.info("metrics at http://%s/metrics", ListenAddress(host, self.port).text)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
