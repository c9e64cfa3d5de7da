"""The example clients in other languages, run against a real bridge and the embedded
upstream: examples/node/client.js (@grpc/grpc-js + @grpc/proto-loader) and
examples/ruby/client.rb (the grpc gem with stubs generated from protos/). Each does a
unary call, a streamed call with authorization and x-request-id metadata, and reads a
failed call's status and google.rpc details; both print the same lines."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from support import CALLER_TOKEN, free_port, require_setup, require_tool, upstream_error_info

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# language -> (interpreter, what needs it, script, what its `make` target leaves behind)
CLIENTS = {
    "node": (
        "node",
        "the Node.js example needs Node.js 18+ and npm",
        "client.js",
        "node_modules/@grpc/grpc-js",
    ),
    "ruby": (
        "ruby",
        "the Ruby example needs Ruby and the grpc gem (Debian: ruby-grpc, ruby-grpc-tools); "
        "`make ruby-example` run as root installs them",
        "client.rb",
        "gen/myrouter/chat/v1/chat_services_pb.rb",
    ),
}


def _run_example(language: str, target: str) -> subprocess.CompletedProcess[str]:
    interpreter, why, script, installed = CLIENTS[language]
    found = require_tool(interpreter, why)
    require_setup(EXAMPLES / language / installed, f"{language}-example")
    return subprocess.run(
        [found, script, target],
        cwd=EXAMPLES / language,
        env={**os.environ, "MYROUTER_TOKEN": CALLER_TOKEN, "MYROUTER_MODEL": "myrouter/echo"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("language", sorted(CLIENTS))
def test_example_calls_unary_streaming_and_reads_error_details(language, bridge, upstream):
    result = _run_example(language, bridge.target)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    assert f"unary: You said: hello from {language}" in lines
    assert f"stream: You said: stream to {language}" in lines
    assert "usage: input 3, output 5, total 8" in lines
    if language == "node":  # over StreamChatCompletionBatches: chunks counted in messages
        assert "stream chunks: 8" in lines
        messages = next(line for line in lines if line.startswith("stream messages: "))
        assert 1 <= int(messages.split(": ")[1]) <= 8
    assert "error: NOT_FOUND (5): Model 'no-such/model' not found" in lines
    error_info = upstream_error_info(lines, 404)
    request_id = next(line for line in lines if line.startswith("  x-request-id: "))
    assert request_id.split(": ")[1] in error_info  # the same id in metadata and ErrorInfo

    # The stream's metadata reached the API: the caller's token and its own request id,
    # which the bridge also returned in the response metadata.
    match = re.search(rf"^stream x-request-id: ({language}-\S+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    streamed = [r for r in upstream.requests() if r.body and r.body.get("stream") is True]
    assert len(streamed) == 1
    assert streamed[0].headers["x-request-id"] == match.group(1)
    assert all(r.headers["authorization"] == f"Bearer {CALLER_TOKEN}" for r in upstream.requests())


@pytest.mark.parametrize("language", sorted(CLIENTS))
def test_example_reports_an_unreachable_bridge_with_its_status(language):
    result = _run_example(language, f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE (14):")
