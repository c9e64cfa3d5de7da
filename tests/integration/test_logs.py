"""Per-RPC log lines: JSON for machines, text for people, never a secret."""

from __future__ import annotations

import json
import signal
import threading

import grpc
import pytest

from support import (
    CALLER_METADATA,
    CALLER_TOKEN,
    SERVICE_KEY,
    chat_request,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)


def test_one_line_per_rpc_with_model_status_times_and_tokens(stub, rpc_lines):
    metadata = (*CALLER_METADATA, ("x-request-id", "log-me-1"))
    chunks = list(
        stub.StreamChatCompletion(
            with_scenario(chat_request(), chunks=4), metadata=metadata, timeout=10
        )
    )
    usage = [c.usage for c in chunks if c.HasField("usage")][-1]
    [line] = [entry for entry in rpc_lines() if entry.get("request_id") == "log-me-1"]
    assert line["method"] == "StreamChatCompletion"
    assert line["model"] == "myrouter/echo"
    assert line["status"] == "OK"
    assert line["duration_ms"] >= line["ttfc_ms"] >= 0
    assert line["chunks"] == len(chunks)
    assert line["tokens"]["input"] == usage.input_tokens
    assert line["tokens"]["output"] == usage.output_tokens


def test_failed_rpc_line_has_code_and_reason(stub, rpc_lines):
    metadata = (*CALLER_METADATA, ("x-request-id", "log-me-2"))
    with pytest.raises(grpc.RpcError):
        stub.CreateChatCompletion(
            with_scenario(chat_request(), kind="status", status=429), metadata=metadata, timeout=10
        )
    # an aborted call's status can reach the caller just before its line is written
    for _ in range(100):
        lines = [entry for entry in rpc_lines() if entry.get("request_id") == "log-me-2"]
        if lines:
            break
        threading.Event().wait(0.02)
    [line] = lines
    assert line["status"] == "RESOURCE_EXHAUSTED"
    assert line["reason"] == "UPSTREAM_HTTP_ERROR"


def test_serve_writes_json_lines_without_the_token(start_bridge_process):
    proc = start_bridge_process("--log-format", "json")
    channel, stub = stub_for(proc.target)
    with channel:
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    rest = proc.output()
    entries = [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert any(e.get("method") == "CreateChatCompletion" and e["status"] == "OK" for e in entries)
    assert CALLER_TOKEN not in rest
    assert SERVICE_KEY not in rest


def test_every_line_of_a_call_names_its_caller(start_bridge_process):
    """Not only the RPC's own line: the failure line too (and any other a call logs)."""
    proc = start_bridge_process("--log-format", "json", "--caller-identity", "header:x-test-caller")
    channel, stub = stub_for(proc.target)
    metadata = (*CALLER_METADATA, ("x-test-caller", "svc-logs"), ("x-request-id", "who-1"))
    with channel, pytest.raises(grpc.RpcError):
        stub.CreateChatCompletion(
            with_scenario(chat_request(), kind="status", status=400), metadata=metadata, timeout=10
        )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    entries = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
    mine = [e for e in entries if "who-1" in e["message"] or e.get("request_id") == "who-1"]
    assert len(mine) >= 2  # the failure line and the RPC line
    assert all(e.get("caller") == "svc-logs" for e in mine), mine
    startup = [e for e in entries if "listening on" in e["message"]]
    assert startup and "caller" not in startup[0]  # outside a call: no caller
