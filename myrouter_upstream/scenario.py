"""Fault scenarios: what the embedded upstream should do wrong, and when.

A `Scenario` is a plain, frozen, validated value. It arrives as a JSON object,
either inside a chat request (member ``"scenario"``) or on the control
endpoint, so parsing is strict: unknown members and wrong types are refused
with a message naming the member, because a typo that silently selected the
happy path would make a fault-injection test pass for the wrong reason.

Why integral floats are accepted wherever an int is expected: the bridge relays
the per-request scenario through a ``google.protobuf.Struct``, whose only number
type is a double, so ``3`` comes back as ``3.0``. ``3.5`` is still refused.

This module is pure: no I/O, no clock, no state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

__all__ = [
    "DEFAULT_AFTER",
    "DEFAULT_OVERSIZED_SIZE",
    "Dialect",
    "Kind",
    "Scenario",
    "ScenarioError",
    "parse_scenario",
]

Kind = Literal[
    "ok",
    "status",
    "midstream_error",
    "truncate",
    "malformed",
    "hang",
    "non_sse",
    "non_json",
    "oversized",
]
"""Every behaviour the upstream can be switched to."""

Dialect = Literal["myrouter", "openai"]
"""Which spelling of the ``usage`` object answers carry."""

KINDS: Final[tuple[str, ...]] = get_args(Kind)
DIALECTS: Final[tuple[str, ...]] = get_args(Dialect)

DEFAULT_AFTER: Final[Mapping[str, int]] = MappingProxyType(
    {
        "midstream_error": 2,
        "truncate": 2,
        "malformed": 1,
    }
)
"""Content chunks sent before the fault, per kind, when ``after`` is not given."""

DEFAULT_OVERSIZED_SIZE: Final = 10 * 1024 * 1024
"""Bytes of ``"x"`` an ``oversized`` answer carries by default (10 MiB)."""

MAX_OVERSIZED_SIZE: Final = 1024 * 1024 * 1024
"""Upper bound on ``size``, so a typo cannot make the test process swap."""


class ScenarioError(ValueError):
    """A scenario object is invalid; the message names the offending member."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    """One upstream behaviour. All members are optional; the default is the happy path.

    Counting convention used by ``after`` and ``stall_after``: position ``p`` is
    "after ``p`` content chunks" (token chunks, or tool-argument pieces). Position
    0 is before any ``data:`` event at all, so ``midstream_error`` with
    ``after=0`` sends the error as the very first event. A position past the last
    content chunk means "after all content, before the finishing chunk".

    ``metadata`` is a mapping, so a `Scenario` carrying one is not hashable.
    """

    kind: Kind = "ok"
    # -- kind "status"
    status: int = 500
    """HTTP status to answer with (400-599)."""
    error_code: int | str | None = None
    """``error.code`` of the error body/event; defaults to the status ("status") or
    ``"server_error"`` ("midstream_error")."""
    message: str | None = None
    """``error.message``; a default per status / "Provider disconnected" when absent."""
    metadata: Mapping[str, Any] | None = None
    """``error.metadata``, sent as given."""
    body: str | None = None
    """Raw error body to send instead of the JSON error object (e.g. an HTML page)."""
    content_type: str | None = None
    """Content-Type of a raw ``body``; ``text/html; charset=utf-8`` when absent."""
    retry_after: str | None = None
    """Value of a ``Retry-After`` header (numbers are accepted and rendered as text)."""
    # -- kinds "midstream_error", "truncate", "malformed"
    after: int | None = None
    """Content chunks streamed before the fault; see `DEFAULT_AFTER`."""
    abort: bool = False
    """"truncate": drop the TCP connection (RST) instead of ending the body cleanly."""
    # -- kind "oversized"
    size: int = DEFAULT_OVERSIZED_SIZE
    """Bytes of ``"x"`` in the single oversized content."""
    # -- timing knobs, usable with any kind
    first_byte_delay: float = 0.0
    """Seconds to wait before the status line is sent."""
    chunk_delay: float | None = None
    """Seconds between two ``data:`` events; None = the server's configured default."""
    rate: float | None = None
    """Events per second on a fixed schedule, one event per write: event ``k`` of the
    stream is due ``k / rate`` seconds after the first (after a stall the schedule
    starts again). Unlike ``chunk_delay``, the time a write takes does not slow the
    stream down, so N such streams offer the load of N live streams at that pace;
    a stream that fell behind its schedule catches up without waiting. Excludes
    ``chunk_delay``."""
    stamp: bool = False
    """Stream events: each JSON ``data:`` event carries the time it is written, as
    ``system_fingerprint`` (wall-clock nanoseconds since the Unix epoch, decimal
    text), read right before its write. A client on the same machine compares it
    with its own clock on arrival: the latency of that event's whole path. A
    modelled string member, so a relay maps it without extra work per event."""
    stall_after: int | None = None
    """Position (see above) at which to sleep ``stall`` seconds; 0 when only ``stall`` is set."""
    stall: float = 0.0
    """Seconds to stall; may be huge (effectively forever)."""
    keepalive: int | None = None
    """Send ``: MYROUTER PROCESSING`` before the first event and after every k events."""
    chunks: int | None = None
    """Replace the answer by exactly this many tokens ``"tok0 "``, ``"tok1 "``, ..."""
    pad: int = 0
    """With ``chunks``: append this many ``"x"`` to every token (big events, for
    backpressure tests that must outgrow every buffer on the way)."""
    batch: int = 1
    """Events per socket write when neither a chunk delay nor a rate applies."""
    dialect: Dialect = "myrouter"
    """``"openai"`` spells usage as prompt_tokens/completion_tokens/..."""
    reasoning: bool = False
    """Stream reasoning deltas before the content (and add them to unary messages)."""
    # -- when the fault applies, usable with any kind (a retrying client's tests)
    times: int | None = None
    """Apply the fault to only the first ``times`` requests carrying the same
    ``x-request-id`` (counted by the server), then answer normally: "fail twice,
    then succeed" for a client that retries under one request id."""
    models: tuple[str, ...] | None = None
    """Apply the fault only to requests for these models; others answer normally
    (a primary that is down beside a fallback that is up)."""
    # -- what sits in front of a real API, usable with any kind
    set_cookie: str | None = None
    """A ``Set-Cookie`` header on the answer, as the CDN in front of a public API adds."""
    compress: bool = False
    """Compress the answer (event streams included) when the request accepts gzip or
    deflate, as a CDN or an nginx with gzip on may; never when it does not."""

    def __post_init__(self) -> None:
        _check(self.kind in KINDS, "kind", f"must be one of {', '.join(KINDS)}")
        _check(400 <= self.status <= 599, "status", "must be between 400 and 599")
        _check(self.dialect in DIALECTS, "dialect", f"must be one of {', '.join(DIALECTS)}")
        for name in ("after", "stall_after", "chunks", "pad", "times"):
            value = getattr(self, name)
            _check(value is None or value >= 0, name, "must be >= 0")
        _check(self.keepalive is None or self.keepalive >= 1, "keepalive", "must be >= 1")
        _check(self.batch >= 1, "batch", "must be >= 1")
        _check(
            0 <= self.size <= MAX_OVERSIZED_SIZE,
            "size",
            f"must be between 0 and {MAX_OVERSIZED_SIZE}",
        )
        _check(
            self.rate is None or (math.isfinite(self.rate) and self.rate > 0),
            "rate",
            "must be a finite number > 0",
        )
        _check(
            self.rate is None or self.chunk_delay is None,
            "rate",
            "excludes 'chunk_delay' (one paces the stream by a schedule, the other by gaps)",
        )
        for name in ("first_byte_delay", "chunk_delay", "stall"):
            delay = getattr(self, name)
            _check(
                delay is None or (math.isfinite(delay) and delay >= 0),
                name,
                "must be a finite number >= 0",
            )

    @property
    def effective_after(self) -> int:
        """Where the fault of this kind happens (see the class docstring)."""
        if self.after is not None:
            return self.after
        return DEFAULT_AFTER.get(self.kind, 0)

    @property
    def effective_stall_after(self) -> int | None:
        """Where to stall, or None when there is no stall."""
        if self.stall <= 0:
            return None
        return 0 if self.stall_after is None else self.stall_after

    def to_json(self) -> dict[str, Any]:
        """The members that differ from the defaults, as a JSON object.

        Round-trips through `parse_scenario`; used to echo the active scenario.
        """
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                if isinstance(value, Mapping):
                    value = dict(value)
                elif isinstance(value, tuple):
                    value = list(value)
                out[field.name] = value
        return out


def parse_scenario(obj: object) -> Scenario:
    """Build a `Scenario` from a decoded JSON value, refusing anything unexpected."""
    if not isinstance(obj, Mapping):
        raise ScenarioError("scenario must be a JSON object")
    known = {field.name for field in dataclasses.fields(Scenario)}
    unknown = sorted(str(key) for key in obj if key not in known)
    if unknown:
        raise ScenarioError(f"unknown scenario member(s): {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None:
            continue  # JSON null means "not given", as an absent member would
        kwargs[key] = _PARSERS[key](key, value)
    try:
        return Scenario(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the member check above
        raise ScenarioError(str(exc)) from exc


def _check(ok: bool, name: str, requirement: str) -> None:
    if not ok:
        raise ScenarioError(f"scenario member {name!r} {requirement}")


def _int(name: str, value: object) -> int:
    # bool is an int subclass in Python, but true/false is not a count in JSON.
    if isinstance(value, bool):
        raise ScenarioError(f"scenario member {name!r} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ScenarioError(f"scenario member {name!r} must be an integer")


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"scenario member {name!r} must be a number")
    return float(value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"scenario member {name!r} must be true or false")
    return value


def _str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"scenario member {name!r} must be a string")
    return value


def _code(name: str, value: object) -> int | str:
    if isinstance(value, str):
        return value
    return _int(name, value)


def _text_or_number(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    number = _float(name, value)
    return str(int(number)) if number.is_integer() else repr(number)


def _strings(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ScenarioError(f"scenario member {name!r} must be a list of strings")
    return tuple(value)


def _object(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"scenario member {name!r} must be a JSON object")
    return {str(key): item for key, item in value.items()}


_PARSERS: Final[Mapping[str, Callable[[str, object], object]]] = MappingProxyType(
    {
        "kind": _str,
        "status": _int,
        "error_code": _code,
        "message": _str,
        "metadata": _object,
        "body": _str,
        "content_type": _str,
        "retry_after": _text_or_number,
        "after": _int,
        "abort": _bool,
        "size": _int,
        "first_byte_delay": _float,
        "chunk_delay": _float,
        "rate": _float,
        "stamp": _bool,
        "stall_after": _int,
        "stall": _float,
        "keepalive": _int,
        "chunks": _int,
        "pad": _int,
        "batch": _int,
        "dialect": _str,
        "reasoning": _bool,
        "times": _int,
        "models": _strings,
        "set_cookie": _str,
        "compress": _bool,
    }
)
