"""Keeping credentials out of every text the bridge emits.

Upstream error messages sometimes quote the key they refused ("Incorrect API
key provided: sk-..."), and exception texts can carry headers. Everything that
leaves the process as text (status messages, error details, log lines) passes
through `redact` first: it removes the exact secrets we know of and, as a
second net, anything shaped like a bearer token or an API key. Log lines get it
from bridge/logs.py, which installs it together with the logging set-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "redact"]

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
