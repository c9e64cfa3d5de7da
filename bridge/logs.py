"""The process's logging: its format, and the redaction of secrets, installed together.

In a cluster the log pipeline wants JSON (one line per event, fields it can
index); at a terminal a person wants to read. `auto` picks by whether stderr
is a terminal. Two nets keep credentials out: the `RedactingFilter` on the
handler removes the configured secrets (the service key) and anything
token-shaped from every record, and every formatted line passes through
`redact` again at the end, whatever put the text there. `setup_logging` is the
one place that installs the handler, and it always installs the filter with it,
so no later change to the set-up can forget the redaction.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import orjson

from .config import BridgeConfig
from .redaction import redact

__all__ = [
    "CALL_CALLER",
    "GrpcMetadataDecoding",
    "JSONFormatter",
    "RedactingFilter",
    "TextFormatter",
    "install_redaction",
    "quiet_grpc_metadata_decoding",
    "setup_logging",
]

# attributes every LogRecord has; anything else was passed with `extra=` and is a field
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


CALL_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("bridge_caller", default="")
"""The caller of the RPC whose task is running (its identity, `bridge.access`), set once
the RPC knows it: grpc.aio runs each RPC in a task of its own, so it is per call."""


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra` fields, and the running RPC's caller (`CALL_CALLER`) when the
    record names none: so every line logged during a call (a retry, a failure, a limits
    warning), whatever logger logs it, says whom it was for."""
    fields = {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD_ATTRS and not key.startswith("_")
    }
    caller = CALL_CALLER.get()
    if caller and "caller" not in fields:
        fields["caller"] = caller
    return fields


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
        entry.update(_fields(record))
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
        fields = [f"{key}={value}" for key, value in _fields(record).items() if value is not None]
        if fields:
            text = f"{text} {' '.join(fields)}"
        return redact(text)


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs credentials from every log record, whoever logged it.

    Why a filter on the handlers and not care at each call site: third-party
    loggers (httpx, httpcore, asyncio, grpc) and exception tracebacks can carry
    header values we never formatted ourselves. A filter attached to a handler
    sees every record that handler emits, including those propagated from child
    loggers, and at every level. It rewrites the formatted message, the
    exception and stack texts, and any string attribute a structured formatter
    might emit, replacing the known `secrets` and anything token-shaped.
    Records are per RPC at most, never per stream chunk, so the cost is nil.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        message = record.getMessage()
        record.msg = redact(message, secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        for name, value in vars(record).items():
            if type(value) is str and name not in _PLAIN_ATTRIBUTES:
                setattr(record, name, redact(value, secrets))
        return True


_FORMATTER = logging.Formatter()
_PLAIN_ATTRIBUTES = frozenset(
    {
        "name",
        "levelname",
        "pathname",
        "filename",
        "module",
        "funcName",
        "threadName",
        "processName",
        "taskName",
        "msg",
    }
)


class GrpcMetadataDecoding(logging.Filter):
    """grpc's "Invalid encoding on <bytes>" (a caller's metadata value that is not UTF-8)
    as one WARNING without the value and without a traceback.

    grpc logs it at ERROR with the raw bytes and a UnicodeDecodeError traceback
    each time a handler reads the metadata; it is the caller's mistake (answered
    INVALID_ARGUMENT by `bridge.upstream_call`), not an error of the bridge, and the
    bytes may be a credential.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _GRPC_INVALID_ENCODING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "a caller sent a metadata value that is not UTF-8 (value not logged)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_GRPC_INVALID_ENCODING = "Invalid encoding on %s"
GRPC_CORE_LOGGER = "grpc._cython.cygrpc"


def quiet_grpc_metadata_decoding() -> None:
    """Install `GrpcMetadataDecoding` on grpc's logger, once per process (idempotent)."""
    logger = logging.getLogger(GRPC_CORE_LOGGER)
    if not any(isinstance(f, GrpcMetadataDecoding) for f in logger.filters):
        logger.addFilter(GrpcMetadataDecoding())


def install_redaction(
    secrets: Iterable[str | None] = (), *, logger: logging.Logger | None = None
) -> RedactingFilter:
    """Attach one `RedactingFilter` to every handler of `logger` (the root by default).

    `setup_logging` calls it for the process's handler; call it yourself only
    for a handler you add elsewhere (a test's, an embedding program's).
    """
    target = logging.getLogger() if logger is None else logger
    redacting = RedactingFilter(secrets)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting


def setup_logging(config: BridgeConfig) -> logging.StreamHandler[TextIO]:
    """Send the process's logs to stderr in the configured format, redacted; return the handler.

    Replaces the root logger's handlers with one, filtered by a `RedactingFilter`
    that knows the service key.
    """
    log_format = config.log_format
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log_level)
    install_redaction([config.api_key.value if config.api_key else None], logger=root)
    return handler
