"""Logging set-up: one JSON object per line for machines, plain lines for people.

In a cluster the log pipeline wants JSON (one line per event, fields it can
index); at a terminal a person wants to read. `auto` picks by whether stderr
is a terminal. Every line passes through `redact` at the end, whatever put the
text there, so a credential cannot reach the logs even through an exception
message or a field someone adds later.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any

import orjson

from .redaction import redact

# attributes every LogRecord has; anything else was passed with `extra=` and is a field
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:  # already formatted (and redacted) by the RedactingFilter
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        text = orjson.dumps(entry, default=str).decode()
        return redact(text)


class TextFormatter(logging.Formatter):
    """The classic line, with the `extra` fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS and not key.startswith("_") and value is not None
        ]
        if fields:
            text = f"{text} {' '.join(fields)}"
        return redact(text)


def configure_logging(level: str, log_format: str = "auto") -> logging.Handler:
    """Send the process's logs to stderr in `log_format`; return the handler installed."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
