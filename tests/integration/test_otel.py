"""Optional OpenTelemetry: a server span continues the caller's trace; its context goes upstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import otel
from bridge.config import ConfigError
from support import SERVICE_KEY

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


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
