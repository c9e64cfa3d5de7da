"""Per-RPC log lines: JSON for machines, text for people, never a secret (the formatters)."""

from __future__ import annotations

import contextvars
import io
import json
import logging

import pytest

from bridge.config import BridgeConfig, Secret
from bridge.logs import CALL_CALLER, JSONFormatter, RedactingFilter, TextFormatter, setup_logging
from bridge.redaction import REDACTED

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


def test_a_line_logged_during_a_call_names_the_calls_caller():
    record = logging.LogRecord("bridge.x", logging.WARNING, "", 0, "retrying", None, None)
    named = logging.LogRecord("bridge.rpc", logging.INFO, "", 0, "rpc", None, None)
    named.caller = "its-own"

    def formatted() -> list[dict[str, object]]:
        return [json.loads(JSONFormatter().format(r)) for r in (record, named)]

    assert "caller" not in formatted()[0]  # outside a call
    context = contextvars.copy_context()
    context.run(CALL_CALLER.set, "spiffe://cluster.local/ns/a/sa/b")
    plain, own = context.run(formatted)
    assert plain["caller"] == "spiffe://cluster.local/ns/a/sa/b"
    assert own["caller"] == "its-own"
    assert "caller=spiffe://cluster.local/ns/a/sa/b" in context.run(TextFormatter().format, record)
