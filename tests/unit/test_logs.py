"""Per-RPC log lines: JSON for machines, text for people, never a secret (the formatters)."""

from __future__ import annotations

import json
import logging

import pytest

from bridge.logs import JSONFormatter, TextFormatter

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
