"""Per-RPC log lines: JSON for machines, text for people, never a secret."""

from __future__ import annotations

import io
import json
import logging
import signal
import threading

import grpc
import pytest

from bridge.config import BridgeConfig, Secret
from bridge.logs import JSONFormatter, RedactingFilter, TextFormatter, setup_logging
from bridge.redaction import REDACTED
from support import (
    CALLER_METADATA,
    CALLER_TOKEN,
    SERVICE_KEY,
    BridgeProcess,
    chat_request,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("bridge.rpc", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_the_fields_and_no_secret():
    line = JSONFormatter().format(
        _record("upstream said Bearer sk-live-0123456789abcdef", method="M", tokens={"input": 3})
    )
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "bridge.rpc"
    assert entry["method"] == "M"
    assert entry["tokens"] == {"input": 3}
    assert "sk-live-0123456789abcdef" not in line
    assert "[redacted]" in entry["message"]


def test_text_line_is_readable_and_redacted():
    line = TextFormatter().format(_record("hi", method="M", note="key sk-abcdefghijklmnop"))
    assert "INFO bridge.rpc: hi" in line
    assert "method=M" in line
    assert "sk-abcdefghijklmnop" not in line


@pytest.fixture
def root_logging():
    """The root logger as the test found it, restored after `setup_logging` replaced it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_setup_logging_installs_the_redaction_with_the_handler(root_logging, log_format):
    key = "plain-service-key-0123"  # shaped like no token: only the filter knows it
    handler = setup_logging(BridgeConfig(api_key=Secret(key), log_format=log_format))
    assert root_logging.handlers == [handler]
    assert [type(f) for f in handler.filters] == [RedactingFilter]
    out = io.StringIO()
    handler.setStream(out)
    logging.getLogger("test.setup").warning("upstream refused %s", key, extra={"detail": key})
    assert key not in out.getvalue()
    assert REDACTED in out.getvalue()


def test_setup_logging_takes_level_and_format_from_the_config(root_logging):
    handler = setup_logging(BridgeConfig(log_level="WARNING", log_format="json"))
    assert root_logging.level == logging.WARNING
    assert isinstance(handler.formatter, JSONFormatter)
    assert isinstance(setup_logging(BridgeConfig(log_format="text")).formatter, TextFormatter)


@pytest.fixture
def rpc_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("bridge.rpc")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


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


def test_serve_writes_json_lines_without_the_token(upstream):
    proc = BridgeProcess(
        "--upstream-url",
        upstream.base_url,
        "--log-format",
        "json",
        env={"MYROUTER_API_KEY": SERVICE_KEY},
    )
    try:
        channel, stub = stub_for(proc.target)
        with channel:
            stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    rest = proc.output()
    entries = [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert any(e.get("method") == "CreateChatCompletion" and e["status"] == "OK" for e in entries)
    assert CALLER_TOKEN not in rest
    assert SERVICE_KEY not in rest
