"""Optional OpenTelemetry: a server span continues the caller's trace; its context goes upstream.

With a MeterProvider configured, the GenAI histograms are recorded on it, and the
chat RPCs' spans carry the GenAI attributes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.metrics import GENAI_REQUEST_DURATION, GENAI_SEMCONV, GENAI_TOKEN_USAGE
from support import SERVICE_KEY

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture(scope="module")
def probed(upstream):
    """The probe's spans and metric points, and the upstream's recorded requests."""
    upstream.clear()
    probe = Path(__file__).with_name("otel_probe.py")
    result = subprocess.run(
        [sys.executable, str(probe), upstream.base_url, TRACEPARENT, SERVICE_KEY],
        capture_output=True,
        text=True,
        timeout=45,
        cwd=probe.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), upstream.requests()


def _server_span(spans, method):
    [span] = [s for s in spans if s["kind"] == "SERVER" and s["name"].endswith(method)]
    return span


def test_server_span_joins_the_callers_trace_and_is_the_upstreams_parent(probed):
    output, requests = probed
    server = _server_span(output["spans"], "ChatService/CreateChatCompletion")
    assert server["trace_id"] == TRACE_ID
    assert server["parent_id"] == CALLER_SPAN
    assert requests[0].headers["traceparent"] == f"00-{TRACE_ID}-{server['span_id']}-01"


@pytest.mark.parametrize("method", ["CreateChatCompletion", "StreamChatCompletion"])
def test_chat_spans_carry_the_genai_attributes(probed, method):
    attributes = _server_span(probed[0]["spans"], f"ChatService/{method}")["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "myrouter"
    assert attributes["gen_ai.request.model"] == "myrouter/echo"
    assert attributes["gen_ai.response.model"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert "error.type" not in attributes


def test_genai_histograms_reach_the_configured_meter_provider(probed):
    points = probed[0]["metrics"]
    assert {p["scope"] for p in points} == {"bridge"}
    assert {p["schema_url"] for p in points} == {GENAI_SEMCONV}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        by_name.setdefault(point["name"], []).append(point)
    assert set(by_name) == {
        "gen_ai.client.token.usage",
        "gen_ai.server.request.duration",
        "gen_ai.server.time_to_first_token",
        "gen_ai.server.time_per_output_token",
    }
    [duration] = by_name[GENAI_REQUEST_DURATION.name]
    assert duration["unit"] == "s"
    assert duration["count"] == 2  # the unary call and the stream, same attributes
    assert duration["bounds"] == list(GENAI_REQUEST_DURATION.buckets)
    assert duration["attributes"]["gen_ai.request.model"] == "myrouter/echo"
    tokens = {p["attributes"]["gen_ai.token.type"]: p for p in by_name[GENAI_TOKEN_USAGE.name]}
    assert set(tokens) == {"input", "output"}
    assert tokens["output"]["unit"] == "{token}"
    assert tokens["output"]["count"] == 2 and tokens["output"]["sum"] > 0
    [first] = by_name["gen_ai.server.time_to_first_token"]
    assert first["count"] == 1  # the stream only
