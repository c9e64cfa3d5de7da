"""examples/node/client.js (@grpc/grpc-js + @grpc/proto-loader) run against a real bridge
and the embedded upstream: unary, streaming with metadata, and an error's status details."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from support import CALLER_TOKEN

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node"


def _run_example(target: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "Node.js is required (the machine's node; see README)"
    assert (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run `make install`"
    return subprocess.run(
        [node, "client.js", target],
        cwd=EXAMPLE,
        env={**os.environ, "MYROUTER_TOKEN": CALLER_TOKEN, "MYROUTER_MODEL": "myrouter/echo"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_node_example_calls_unary_streaming_and_reads_error_details(bridge, upstream):
    result = _run_example(bridge.target)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    assert "unary: You said: hello from node" in lines
    assert "stream: You said: stream to node" in lines
    assert "usage: input 3, output 5, total 8" in lines
    assert "error: NOT_FOUND (5): Model 'no-such/model' not found" in lines
    error_info = next(line for line in lines if line.startswith("  ErrorInfo:"))
    assert "reason=UPSTREAM_HTTP_ERROR" in error_info
    assert "domain=bridge.myrouter.example" in error_info
    assert "http_status=404" in error_info

    # The stream's metadata reached the API: the caller's token and its own request id,
    # which the bridge also returned in the response metadata.
    match = re.search(r"^stream x-request-id: (node-\S+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    streamed = [r for r in upstream.requests() if r.body and r.body.get("stream") is True]
    assert len(streamed) == 1
    assert streamed[0].headers["x-request-id"] == match.group(1)
    assert all(r.headers["authorization"] == f"Bearer {CALLER_TOKEN}" for r in upstream.requests())


def test_node_example_reports_an_unreachable_bridge_with_its_status(unused_tcp_target):
    result = _run_example(unused_tcp_target)
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE (14):")


@pytest.fixture
def unused_tcp_target() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"
