"""Optional OpenTelemetry: a server span continues the caller's trace; its context goes upstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import SERVICE_KEY

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def test_server_span_joins_the_callers_trace_and_is_the_upstreams_parent(upstream):
    probe = Path(__file__).with_name("otel_probe.py")
    result = subprocess.run(
        [sys.executable, str(probe), upstream.base_url, TRACEPARENT, SERVICE_KEY],
        capture_output=True,
        text=True,
        timeout=45,
        cwd=probe.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout.strip().splitlines()[-1])
    [server] = [s for s in spans if s["kind"] == "SERVER"]
    assert server["name"].endswith("ChatService/CreateChatCompletion")
    assert server["trace_id"] == TRACE_ID
    assert server["parent_id"] == CALLER_SPAN
    [recorded] = upstream.requests()
    assert recorded.headers["traceparent"] == f"00-{TRACE_ID}-{server['span_id']}-01"
