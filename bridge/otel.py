"""Optional OpenTelemetry tracing: a server span per RPC, its context sent upstream.

Off unless the OpenTelemetry packages are installed (``pip install
'myrouter-bridge[otel]'``) and tracing is configured: ``auto`` (the default)
turns it on only when a real TracerProvider is set, for example by running
under ``opentelemetry-instrument`` with an exporter, so an unconfigured
install costs nothing per call. ``on`` insists (a ConfigError if the packages
are missing), ``off`` never traces.

When on, the gRPC server interceptor continues the caller's trace (W3C or
whatever propagator is configured) in a server span, and the upstream request
carries that span's context, so the MyRouter API's spans hang under the
bridge's rather than beside it. When off, the caller's trace headers are still
copied as they are (bridge/propagation.py).

Each chat RPC's span also gets the GenAI conventions' attributes (operation,
provider, models, usage), and when a MeterProvider is configured (``auto``; ``on``
always uses the global one) the GenAI histograms are recorded on it too, from
the same `GenAiCall` the Prometheus registry reads. Both happen once per RPC,
when it ends.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from .config import ConfigError
from .metrics import (
    GENAI_REQUEST_DURATION,
    GENAI_SEMCONV,
    GENAI_TIME_PER_OUTPUT_TOKEN,
    GENAI_TIME_TO_FIRST_TOKEN,
    GENAI_TOKEN_USAGE,
    SEMCONV_PACKAGE_VERSION,
    GenAiCall,
    GenAiMetric,
)

__all__ = [
    "USAGE_ATTRIBUTES",
    "Telemetry",
    "enabled",
    "inject_current_context",
    "installed",
    "meter_configured",
    "server_interceptors",
    "telemetry",
]


def installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.instrumentation.grpc") is not None
    except ModuleNotFoundError:
        return False


def enabled(mode: str) -> bool:
    """Whether tracing is on for `mode` in this process."""
    if mode == "off":
        return False
    if not installed():
        if mode == "on":
            raise ConfigError(
                "opentelemetry: 'on' needs the OpenTelemetry packages "
                "(pip install 'myrouter-bridge[otel]')"
            )
        return False
    if mode == "on":
        return True
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def meter_configured() -> bool:
    """Whether something (the SDK, ``opentelemetry-instrument``) set a MeterProvider."""
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    provider = metrics.get_meter_provider()
    return not isinstance(provider, _ProxyMeterProvider | metrics.NoOpMeterProvider)


def telemetry(mode: str) -> Telemetry | None:
    """What OpenTelemetry receives of each chat RPC for `mode`; None when nothing."""
    spans = enabled(mode)
    meter = None
    if mode == "on" or (mode == "auto" and meter_configured()):
        meter = metrics.get_meter("bridge", SEMCONV_PACKAGE_VERSION, schema_url=GENAI_SEMCONV)
    if not spans and meter is None:
        return None
    return Telemetry(spans=spans, meter=meter)


USAGE_ATTRIBUTES: Mapping[str, str] = {
    "input": gen_ai.GEN_AI_USAGE_INPUT_TOKENS,
    "output": gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cache_read": gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "cache_write": gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "reasoning": gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
}
"""The span attribute of each token kind (`bridge.metrics.TOKEN_KINDS`)."""


class Telemetry:
    """The GenAI attributes of the current server span, and the GenAI histograms."""

    def __init__(self, *, spans: bool, meter: Meter | None) -> None:
        self._spans = spans
        self._histograms: tuple[Histogram, Histogram, Histogram, Histogram] | None = None
        if meter is not None:
            self._histograms = (
                _histogram(meter, GENAI_TOKEN_USAGE),
                _histogram(meter, GENAI_REQUEST_DURATION),
                _histogram(meter, GENAI_TIME_TO_FIRST_TOKEN),
                _histogram(meter, GENAI_TIME_PER_OUTPUT_TOKEN),
            )

    def publish(self, call: GenAiCall, usage: Mapping[str, int]) -> None:
        """Record one finished chat RPC; `usage` is its token counts by kind."""
        attributes = {name: value for name, value in call.attributes.items() if value}
        if self._spans:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(attributes)
                span.set_attributes({USAGE_ATTRIBUTES[k]: n for k, n in usage.items()})
                if call.error_type:
                    span.set_attribute(ERROR_TYPE, call.error_type)
        if self._histograms is None:
            return
        tokens, duration, first_token, per_output_token = self._histograms
        failed = {**attributes, ERROR_TYPE: call.error_type} if call.error_type else attributes
        duration.record(call.duration, failed)
        if call.first_token is not None:
            first_token.record(call.first_token, attributes)
        if call.per_output_token is not None:
            per_output_token.record(call.per_output_token, attributes)
        for token_type, count in call.tokens.items():
            tokens.record(count, {**attributes, gen_ai.GEN_AI_TOKEN_TYPE: token_type})


def _histogram(meter: Meter, metric: GenAiMetric) -> Histogram:
    return meter.create_histogram(
        metric.name,
        metric.unit,
        metric.description,
        explicit_bucket_boundaries_advisory=metric.buckets,
    )


def server_interceptors(mode: str) -> list[Any]:
    """The grpc.aio interceptors that open a server span per RPC (none when off)."""
    if not enabled(mode):
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def inject_current_context(headers: dict[str, str]) -> dict[str, str]:
    """Write the current span's context into `headers` (traceparent, ...); return them."""
    from opentelemetry import propagate

    propagate.inject(headers)
    return headers
