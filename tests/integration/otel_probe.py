"""Run by test_otel.py in its own process (OpenTelemetry's tracer provider is process-wide).

Sets up the OpenTelemetry SDK with an in-memory exporter, starts a bridge with
the default `--opentelemetry auto`, makes one call carrying a caller's
traceparent, and prints the finished spans as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge.config import BridgeConfig, ListenAddress, Secret
from bridge.server import BridgeServer
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc


async def main(upstream_url: str, traceparent: str, key: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    config = BridgeConfig(
        listen=ListenAddress("127.0.0.1", 0), upstream_url=upstream_url, api_key=Secret(key)
    )
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
    finally:
        await bridge.stop(grace=1)
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        }
        for span in exporter.get_finished_spans()
    ]
    print(json.dumps(spans))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
