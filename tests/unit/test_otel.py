"""Optional OpenTelemetry: when it is on, the error when it cannot be, and what it records."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bridge import otel
from bridge.config import ConfigError
from bridge.metrics import GENAI_METRICS, GenAiCall

pytestmark = pytest.mark.timeout(60)


def test_auto_stays_off_without_a_configured_tracer_provider():
    # the packages are installed (dev extra) but nothing set a TracerProvider in this process
    assert otel.installed()
    assert not otel.enabled("auto")
    assert otel.enabled("on")
    assert not otel.enabled("off")
    assert otel.server_interceptors("auto") == []


def test_on_without_the_packages_is_a_config_error(monkeypatch):
    monkeypatch.setattr(otel, "installed", lambda: False)
    with pytest.raises(ConfigError, match="OpenTelemetry"):
        otel.enabled("on")
    assert not otel.enabled("auto")


def test_no_telemetry_unless_a_provider_is_configured_or_on():
    assert not otel.meter_configured()
    assert otel.telemetry("off") is None
    assert otel.telemetry("auto") is None  # neither a tracer nor a meter provider here
    assert otel.telemetry("on") is not None


def _published(call: GenAiCall, tokens: dict[str, int]):
    """The points a metrics-only Telemetry records for `call`, keyed as `_points` keys them."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("bridge")
    otel.Telemetry(spans=False, meter=meter).publish(call, tokens)
    return _points(reader)


def _points(reader):
    return {
        (metric.name, tuple(sorted(point.attributes.items()))): point
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "myrouter",
    "gen_ai.request.model": "asked/model",
    "gen_ai.response.model": "",
}


def test_a_failed_call_is_recorded_with_its_error_type_and_without_empty_attributes():
    call = GenAiCall(CHAT, "UNAVAILABLE", 0.5, None, None, {})
    [(name, attributes)] = _published(call, {})
    assert name == "gen_ai.server.request.duration"
    assert dict(attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "myrouter",
        "gen_ai.request.model": "asked/model",
        "error.type": "UNAVAILABLE",
    }


def test_a_stream_records_every_histogram_with_the_conventions_buckets():
    call = GenAiCall(
        {**CHAT, "gen_ai.response.model": "m/a"}, "", 2.0, 0.5, 0.1, {"input": 3, "output": 16}
    )
    points = {
        name: point for (name, _), point in _published(call, {"input": 3, "output": 16}).items()
    }
    assert set(points) == {m.name for m in GENAI_METRICS}
    assert points["gen_ai.server.time_per_output_token"].sum == 0.1
    for metric in GENAI_METRICS:
        assert tuple(points[metric.name].explicit_bounds) == metric.buckets
