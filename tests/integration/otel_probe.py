"""Run by test_otel.py in its own process (OpenTelemetry's tracer provider is process-wide).

Sets up the OpenTelemetry SDK with in-memory span and metric exporters, starts a
bridge with the default `--opentelemetry auto`, makes one call carrying a
caller's traceparent and one stream, and prints the finished spans (with their
attributes) and the metric points as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge.config import BridgeConfig, Secret
from bridge.server import BridgeServer
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc


async def main(upstream_url: str, traceparent: str, key: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    config = BridgeConfig(listen="127.0.0.1:0", upstream_url=upstream_url, api_key=Secret(key))
    bridge = BridgeServer(config)
    port = await bridge.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            request = chat_pb2.ChatCompletionRequest(
                model="myrouter/echo", messages=[chat_pb2.ChatMessage(role="user", content="hi")]
            )
            await stub.CreateChatCompletion(
                request, metadata=(("traceparent", traceparent),), timeout=10
            )
            async for _ in stub.StreamChatCompletion(request, timeout=10):
                pass
    finally:
        await bridge.stop(grace=1)
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "attributes": dict(span.attributes or {}),
        }
        for span in exporter.get_finished_spans()
    ]
    data = reader.get_metrics_data()
    points = [
        {
            "name": metric.name,
            "unit": metric.unit,
            "scope": scope.scope.name,
            "schema_url": scope.schema_url,
            "attributes": dict(point.attributes or {}),
            "count": point.count,
            "sum": point.sum,
            "bounds": list(point.explicit_bounds),
        }
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in _histogram_points(metric.data.data_points)
    ]
    print(json.dumps({"spans": spans, "metrics": points}))


def _histogram_points(points: Any) -> list[Any]:
    """The GenAI metrics are histograms: their points, typed loosely for the JSON above."""
    return list(points)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
