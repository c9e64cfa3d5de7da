"""Keeping credentials out of every text the bridge emits.

Upstream error messages sometimes quote the key they refused ("Incorrect API
key provided: sk-..."), and exception texts can carry headers. Everything that
leaves the process as text (status messages, error details, log lines) passes
through `redact` first: it removes the exact secrets we know of and, as a
second net, anything shaped like a bearer token or an API key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_TOKEN_SHAPES = re.compile(
    r"(?i)(bearer\s+)[^\s,;\"']+"  # an Authorization value
    r"|\b(sk|pk|rk)-[A-Za-z0-9_\-]{8,}"  # provider-style keys
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return `text` without any of `secrets` nor anything that looks like a token."""
    # Longest first, so a secret that contains another is removed whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    lowered = text.lower()
    if "bearer" not in lowered and "k-" not in lowered:
        return text  # no token shape can match (a substring test is ~10x cheaper than the regex)
    return _TOKEN_SHAPES.sub(_replace_token, text)


def _replace_token(match: re.Match[str]) -> str:
    prefix = match.group(1)
    return f"{prefix}{REDACTED}" if prefix else REDACTED


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


def install_redaction(
    secrets: Iterable[str | None] = (), *, logger: logging.Logger | None = None
) -> RedactingFilter:
    """Attach one `RedactingFilter` to every handler of `logger` (the root by default).

    Call it after the handlers exist (after any logging configuration), and
    again whenever handlers are replaced.
    """
    target = logging.getLogger() if logger is None else logger
    redacting = RedactingFilter(secrets)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting
