"""The bridge's configuration: one frozen, validated object built once at start-up.

Each setting is written once: a field of `BridgeConfig` whose metadata (a
`Setting`) names its environment variable and says what it means. The `serve`
flags (`add_serve_arguments`), the reading of the environment
(`config_from_args`) and the reference in docs/configuration.md
(`configuration_reference`, written by ``make docs``) are generated from those
fields, so a new setting cannot be forgotten in one of them. A flag wins over its
environment variable, and an empty variable counts as unset. The result is
passed explicitly to whatever needs it; no module reads the environment on its own.

What a value must be is written in the same row (`Setting.check`); the few rules
about settings valid only together are `_RULES`, just below the fields. An error
names the setting as the operator gave it, by flag and variable
(``--workers (BRIDGE_WORKERS): must be in [1, 256]``), whichever built the config.

The service key is the one setting without a flag for its value, because flags
are visible to every user of the machine through `ps`: it comes from
``MYROUTER_API_KEY`` or from a file named by ``--api-key-file``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .callers import DEFAULT_SOURCES, IdentitySource, parse_identity_sources
from .propagation import TRACE_HEADERS, check_header_name

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_POLICY_RELOAD_INTERVAL",
    "DEFAULT_UPSTREAM_URL",
    "EVENT_LOOPS",
    "GROUPS",
    "LIMITS_FAILURE_MODES",
    "LIMITS_REDIS_SCHEMES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OPENTELEMETRY_MODES",
    "SETTINGS",
    "BridgeConfig",
    "ConfigError",
    "ListenAddress",
    "Secret",
    "Setting",
    "add_serve_arguments",
    "config_from_args",
    "configuration_reference",
    "parse_fallbacks",
    "parse_serve_config",
    "setting_label",
]

DEFAULT_UPSTREAM_URL = "https://api.myrouter.example/api/v1"
DEFAULT_LISTEN = "0.0.0.0:50051"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
LOG_FORMATS = ("auto", "json", "text")
OPENTELEMETRY_MODES = ("auto", "on", "off")
DEFAULT_POLICY_RELOAD_INTERVAL = 2.0
LIMITS_FAILURE_MODES = ("open", "closed")
LIMITS_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

_SETTING = "bridge.config.Setting"
_CHECK = "bridge.config.check"  # field metadata: the check of a field that is no setting
_T = TypeVar("_T")

_Check = Callable[[Any], "str | None"]
"""A setting's own check: None when its value is good, else what is wrong (``must be >= 1``)."""


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names the setting."""


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A credential that never prints itself, so it cannot leak through a repr or a log."""

    value: str

    def __repr__(self) -> str:
        return "Secret('[secure]')"

    __str__ = __repr__


# Parsers: the text of a flag or a variable -> the field's value. A ValueError says what is
# wrong in words that follow the setting's name (see `config_from_args`, `add_serve_arguments`).


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None


def _upper(text: str) -> str:
    return text.upper()


def parse_fallbacks(text: str) -> Mapping[str, tuple[str, ...]]:
    """``primary=fb1|fb2,other=fb3`` as {primary: (fb1, fb2), other: (fb3,)}."""
    chains: dict[str, tuple[str, ...]] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        model, equals, rest = entry.partition("=")
        model = model.strip()
        chain = tuple(name.strip() for name in rest.split("|"))
        if not equals or not model or not all(chain):
            raise ValueError(f"expected model=fallback|fallback, got {entry.strip()!r}")
        if model in chains:
            raise ValueError(f"{model!r} is given twice")
        if model in chain or len(set(chain)) != len(chain):
            raise ValueError(f"the chain of {model!r} repeats a model")
        chains[model] = chain
    return chains  # a dict: the config is pickled for --workers (a mappingproxy is not)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip().lower() for name in text.split(",") if name.strip())


@dataclasses.dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where to listen: ``host:port`` parsed once, so no user of it splits the text again."""

    host: str
    """A name or an address (IPv6 without its brackets); empty: every interface."""
    port: int
    """0: a free port the system chooses."""

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """``host:port``, ``[v6]:port`` or ``:port`` (ValueError if not)."""
        host, colon, port = text.rpartition(":")
        if not colon or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError(f"must be host:port, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def with_port(self, port: int) -> ListenAddress:
        """The same host on `port` (the one bound, when this one asked for port 0)."""
        return dataclasses.replace(self, port=port)

    @property
    def text(self) -> str:
        """As an operator writes it, and as gRPC's add_*_port takes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.text


# Checks of one value, for `Setting.check` (settings valid only together: `_RULES`).


def _check(holds: Callable[[Any], bool], problem: str) -> _Check:
    return lambda value: None if holds(value) else problem


def _at_least(low: int) -> _Check:
    return _check(lambda value: value >= low, f"must be >= {low}")


def _within(low: float, high: float) -> _Check:
    return _check(
        lambda value: math.isfinite(value) and low <= value <= high, f"must be in [{low}, {high}]"
    )


_POSITIVE = _check(lambda value: math.isfinite(value) and value > 0, "must be a positive number")
_CONNECTION_SECONDS = _within(0, 30 * 86400)  # up to 30 days
_WINDOW_SECONDS = _check(
    lambda value: math.isfinite(value) and 0 < value <= 3600, "must be in (0, 3600]"
)


def _header_names(names: tuple[str, ...]) -> str | None:
    return next(filter(None, map(check_header_name, names)), None)


GROUPS: Mapping[str, str] = {
    "Serving": "the gRPC listener and the processes behind it",
    "Upstream": "the MyRouter API and how the bridge talks to it",
    "Limits": "what one call, or all calls together, may use; each refusal is a gRPC status",
    "Shutdown": "after SIGTERM: health NOT_SERVING, delay, drain, abort",
    "Observability": "logs, metrics and tracing",
    "gRPC connections": "keepalive, connection age (rebalancing across replicas), limits",
    "TLS": "TLS/mTLS of the gRPC listener; upstream trust",
    "Callers": "who is calling, and the policy for each caller (docs/callers.md)",
}
"""The sections of `serve --help` and of docs/configuration.md, in order: title -> summary."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    """How one `BridgeConfig` field is set from outside the process, and what it means.

    The flag is the field's name in kebab case (``max_send_bytes`` ->
    ``--max-send-bytes``), so argparse stores it under the field's name. A
    `secret` has no flag for its value, which `ps` would show: its flag names a
    file holding the value (``--api-key-file``), its variable holds the value.
    """

    env: str
    """The environment variable read when the flag is absent."""
    help: str
    """What the setting does, for `serve --help` and the reference."""
    group: str
    """Its section, a key of `GROUPS`."""
    parse: Callable[[str], Any] = str
    """Turns the flag's or the variable's text into the field's value; if it cannot, a
    ValueError says what is wrong (``must be an integer, got 'abc'``)."""
    check: _Check | None = None
    """What the value must be, checked by `BridgeConfig` however it was built."""
    choices: tuple[str, ...] = ()
    """The values allowed, if only a few are (so `check` need not say it)."""
    metavar: str | None = None
    shown_default: str | None = None
    """The default in words, when the field's value says it badly (None, or per machine)."""
    secret: bool = False
    name: str = ""
    """The field's name; `SETTINGS` fills it in."""
    default: Any = None
    """The field's default value (None for a per-machine default); `SETTINGS` fills it in."""

    @property
    def flag(self) -> str:
        flag = "--" + self.name.replace("_", "-")
        return f"{flag}-file" if self.secret else flag

    @property
    def dest(self) -> str:
        """The attribute argparse stores the flag's value under."""
        return self.flag[2:].replace("-", "_")

    @property
    def label(self) -> str:
        """How an error names the setting: as the operator gave it, by flag or by variable."""
        return f"{self.flag} ({self.env})"

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this setting; None if nothing."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        return None if self.check is None else self.check(value)


def _setting(default: _T, setting: Setting) -> _T:
    """A `BridgeConfig` field that can be set by a flag and an environment variable."""
    return dataclasses.field(default=default, metadata={_SETTING: setting})


def _pem_file(env: str, help: str, shown_default: str | None = None) -> Path | None:
    """A `BridgeConfig` field naming an optional PEM file of the TLS group (unset by default)."""
    setting = Setting(
        env=env, group="TLS", parse=Path, metavar="PEM", shown_default=shown_default, help=help
    )
    return _setting(None, setting)


def _cores() -> int:
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BridgeConfig:
    """Everything the bridge process needs to know, validated on construction."""

    listen: ListenAddress = _setting(
        ListenAddress.parse(DEFAULT_LISTEN),
        Setting(
            env="BRIDGE_LISTEN",
            group="Serving",
            parse=ListenAddress.parse,
            help="host:port to serve gRPC on",
        ),
    )
    workers: int = dataclasses.field(
        default_factory=_cores,
        metadata={
            _SETTING: Setting(
                env="BRIDGE_WORKERS",
                group="Serving",
                parse=_integer,
                check=_within(1, 256),
                shown_default="the number of cores",
                help="processes serving the port together with SO_REUSEPORT, each with its own "
                "event loop and HTTP client (bridge/workers.py)",
            )
        },
    )
    event_loop: str = _setting(
        "auto",
        Setting(
            env="BRIDGE_EVENT_LOOP",
            group="Serving",
            choices=EVENT_LOOPS,
            help="the asyncio event loop: uvloop costs ~15% less CPU per relayed chunk "
            "(BENCHMARKS.md); auto = uvloop when installed",
        ),
    )
    reflection: bool = _setting(
        True,
        Setting(
            env="BRIDGE_REFLECTION",
            group="Serving",
            parse=_boolean,
            help="serve gRPC server reflection, so grpcurl and other reflection clients can "
            "list, describe and call",
        ),
    )
    upstream_url: str = _setting(
        DEFAULT_UPSTREAM_URL,
        Setting(
            env="MYROUTER_BASE_URL",
            group="Upstream",
            check=_check(
                lambda url: url.startswith(("http://", "https://")),
                "must be an http:// or https:// URL",
            ),
            help="base URL of the MyRouter API; /chat/completions and /models hang off it",
        ),
    )
    api_key: Secret | None = _setting(
        None,
        Setting(
            env="MYROUTER_API_KEY",
            group="Upstream",
            parse=Path,
            secret=True,
            check=_check(lambda key: key is None or bool(key.value), "the service key is empty"),
            help="the bridge's own service key, used when a caller sends no authorization metadata",
        ),
    )
    connect_timeout: float = _setting(
        5.0,
        Setting(
            env="BRIDGE_CONNECT_TIMEOUT",
            group="Upstream",
            parse=_number,
            check=_POSITIVE,
            help="seconds to open a TCP/TLS connection to the upstream",
        ),
    )
    request_timeout: float = _setting(
        600.0,
        Setting(
            env="BRIDGE_REQUEST_TIMEOUT",
            group="Upstream",
            parse=_number,
            check=_POSITIVE,
            help="cap in seconds on one whole upstream request; a shorter caller deadline wins "
            "(less a small margin, so the bridge's own status reaches the caller first)",
        ),
    )
    stream_idle_timeout: float = _setting(
        300.0,
        Setting(
            env="BRIDGE_STREAM_IDLE_TIMEOUT",
            group="Upstream",
            parse=_number,
            check=_POSITIVE,
            help="longest silence in seconds between bytes of an upstream stream before the "
            "call fails (keep-alive comments count as bytes)",
        ),
    )
    max_upstream_connections: int = _setting(
        1000,
        Setting(
            env="BRIDGE_MAX_UPSTREAM_CONNECTIONS",
            group="Upstream",
            parse=_integer,
            check=_at_least(1),
            help="size of the pooled HTTP client's connection pool towards the upstream",
        ),
    )
    connect_retries: int = _setting(
        2,
        Setting(
            env="BRIDGE_CONNECT_RETRIES",
            group="Upstream",
            parse=_integer,
            check=_within(0, 10),
            help="retries of an upstream connection that failed before the request was sent "
            "(nothing that may have reached the model is retried)",
        ),
    )
    connect_retry_backoff: float = _setting(
        0.1,
        Setting(
            env="BRIDGE_CONNECT_RETRY_BACKOFF",
            group="Upstream",
            parse=_number,
            check=_within(0, 10),
            help="seconds before the first connect retry, doubled for each further one",
        ),
    )
    retry_attempts: int = _setting(
        3,
        Setting(
            env="BRIDGE_RETRY_ATTEMPTS",
            group="Upstream",
            parse=_integer,
            help="tries per model of a call that fails retryably before the caller has seen "
            "anything (502, 503, 504, 408, 429, an overloaded first event; "
            "docs/reliability.md), the first included: 1 = no retries",
            check=_within(1, 10),
        ),
    )
    retry_backoff: float = _setting(
        0.1,
        Setting(
            env="BRIDGE_RETRY_BACKOFF",
            group="Upstream",
            parse=_number,
            help="most seconds before the first retry, doubled for each further one; the "
            "wait is random below it (full jitter)",
            check=_within(0, 60),
        ),
    )
    retry_max_backoff: float = _setting(
        2.0,
        Setting(
            env="BRIDGE_RETRY_MAX_BACKOFF",
            group="Upstream",
            parse=_number,
            help="cap in seconds on the doubled backoff",
            check=_within(0, 60),
        ),
    )
    retry_budget: float = _setting(
        0.1,
        Setting(
            env="BRIDGE_RETRY_BUDGET",
            group="Upstream",
            parse=_number,
            help="retries and fallbacks allowed, as a share of the calls over the budget's "
            "window (with the floor), so an outage adds at most that much load upstream",
            check=_within(0, 1),
        ),
    )
    retry_budget_floor: int = _setting(
        10,
        Setting(
            env="BRIDGE_RETRY_BUDGET_FLOOR",
            group="Upstream",
            parse=_integer,
            help="retries allowed per window on top of the share, so a quiet bridge can retry",
            check=_at_least(0),
        ),
    )
    retry_budget_window: float = _setting(
        10.0,
        Setting(
            env="BRIDGE_RETRY_BUDGET_WINDOW",
            group="Upstream",
            parse=_number,
            help="seconds of the retry budget's sliding window",
            check=_WINDOW_SECONDS,
        ),
    )
    fallback_models: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict,
        metadata={
            _SETTING: Setting(
                env="BRIDGE_FALLBACK_MODELS",
                group="Upstream",
                parse=parse_fallbacks,
                metavar="MODEL=FB|FB,...",
                help="fallback models, tried in order when a model fails retryably before the "
                "caller has seen anything: comma-separated entries model=fallback, a model's "
                "fallbacks separated by vertical bars",
            )
        },
    )
    breaker_failures: int = _setting(
        5,
        Setting(
            env="BRIDGE_BREAKER_FAILURES",
            group="Upstream",
            parse=_integer,
            help="consecutive retryable failures of a model that open its circuit breaker "
            "(0: no such rule)",
            check=_at_least(0),
        ),
    )
    breaker_failure_rate: float = _setting(
        0.5,
        Setting(
            env="BRIDGE_BREAKER_FAILURE_RATE",
            group="Upstream",
            parse=_number,
            help="share of a model's calls failing retryably over the breaker's window that "
            "opens its breaker (0: no such rule; both 0: no breakers)",
            check=_within(0, 1),
        ),
    )
    breaker_min_calls: int = _setting(
        20,
        Setting(
            env="BRIDGE_BREAKER_MIN_CALLS",
            group="Upstream",
            parse=_integer,
            help="calls of a model in the window before its failure rate counts",
            check=_at_least(0),
        ),
    )
    breaker_window: float = _setting(
        30.0,
        Setting(
            env="BRIDGE_BREAKER_WINDOW",
            group="Upstream",
            parse=_number,
            help="seconds of the breaker's sliding window",
            check=_WINDOW_SECONDS,
        ),
    )
    breaker_cooldown: float = _setting(
        10.0,
        Setting(
            env="BRIDGE_BREAKER_COOLDOWN",
            group="Upstream",
            parse=_number,
            help="seconds an open breaker fails calls at once (UNAVAILABLE, "
            "UPSTREAM_CIRCUIT_OPEN) before it lets probe calls through",
            check=_WINDOW_SECONDS,
        ),
    )
    breaker_probes: int = _setting(
        2,
        Setting(
            env="BRIDGE_BREAKER_PROBES",
            group="Upstream",
            parse=_integer,
            help="probe calls a half-open breaker lets through; that many successes close it, "
            "one failure opens it again",
            check=_at_least(1),
        ),
    )
    propagate_headers: tuple[str, ...] = _setting(
        (),
        Setting(
            env="BRIDGE_PROPAGATE_HEADERS",
            group="Upstream",
            parse=_names,
            check=_header_names,
            metavar="KEY,KEY",
            help="comma-separated metadata keys copied to the upstream request, in addition to "
            "traceparent, tracestate, baggage, b3, x-b3-* and the other trace headers",
        ),
    )
    deadline_margin: float = dataclasses.field(
        default=0.05,
        metadata={_CHECK: _check(lambda margin: 0 <= margin < 10, "must be in [0, 10)")},
    )
    """Seconds kept back from the caller's deadline so our own status reaches it first.

    Not a setting (no flag, no variable): a constant that tests can change."""
    max_concurrent_rpcs: int = _setting(
        1000,
        Setting(
            env="BRIDGE_MAX_CONCURRENT_RPCS",
            group="Limits",
            parse=_integer,
            check=_at_least(1),
            help="RPCs served at once; more fail RESOURCE_EXHAUSTED at once instead of queueing",
        ),
    )
    max_request_bytes: int = _setting(
        8 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_REQUEST_BYTES",
            group="Limits",
            parse=_integer,
            check=_at_least(1024),
            help="largest gRPC request message accepted; a bigger one fails RESOURCE_EXHAUSTED "
            "(REQUEST_TOO_LARGE, naming this setting, with the request id), or grpc's bare "
            "RESOURCE_EXHAUSTED when over this plus min(this, 4 MiB), grpc's receive limit",
        ),
    )
    max_messages: int = _setting(
        1000,
        Setting(
            env="BRIDGE_MAX_MESSAGES",
            group="Limits",
            parse=_integer,
            check=_at_least(1),
            help="most chat messages in one request (more: INVALID_ARGUMENT)",
        ),
    )
    max_response_bytes: int = _setting(
        32 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_RESPONSE_BYTES",
            group="Limits",
            parse=_integer,
            check=_at_least(1024),
            help="largest upstream answer body the bridge reads into memory (unary calls, "
            "model lists)",
        ),
    )
    max_event_bytes: int = _setting(
        8 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_EVENT_BYTES",
            group="Limits",
            parse=_integer,
            check=_at_least(1024),
            help="largest single event of an upstream stream; a bigger one fails the call "
            "RESOURCE_EXHAUSTED (it bounds what one stream can buffer)",
        ),
    )
    shutdown_delay: float = _setting(
        0.0,
        Setting(
            env="BRIDGE_SHUTDOWN_DELAY",
            group="Shutdown",
            parse=_number,
            check=_within(0, 600),
            help="on SIGTERM, seconds to keep accepting calls while health reports "
            "NOT_SERVING, before the drain starts",
        ),
    )
    shutdown_grace: float = _setting(
        25.0,
        Setting(
            env="BRIDGE_SHUTDOWN_GRACE",
            group="Shutdown",
            parse=_number,
            check=_check(lambda s: math.isfinite(s) and s >= 0, "must be a number >= 0"),
            help="seconds in-flight calls may take to finish after SIGTERM (and the delay) "
            "before they are aborted with UNAVAILABLE; a second signal exits at once",
        ),
    )
    log_level: str = _setting(
        "INFO",
        Setting(
            env="BRIDGE_LOG_LEVEL",
            group="Observability",
            parse=_upper,
            choices=LOG_LEVELS,
            help="log verbosity (any case)",
        ),
    )
    log_format: str = _setting(
        "auto",
        Setting(
            env="BRIDGE_LOG_FORMAT",
            group="Observability",
            choices=LOG_FORMATS,
            help="json: one JSON object per line; text: for people; auto: text on a terminal, "
            "json otherwise",
        ),
    )
    metrics_listen: ListenAddress | None = _setting(
        None,
        Setting(
            env="BRIDGE_METRICS_LISTEN",
            group="Observability",
            parse=ListenAddress.parse,
            metavar="HOST:PORT",
            shown_default="no metrics endpoint",
            help="serve Prometheus metrics at http://HOST:PORT/metrics",
        ),
    )
    opentelemetry: str = _setting(
        "auto",
        Setting(
            env="BRIDGE_OPENTELEMETRY",
            group="Observability",
            choices=OPENTELEMETRY_MODES,
            help="OpenTelemetry tracing (server spans with GenAI attributes, context sent "
            "upstream) and GenAI metrics: auto = tracing when the OpenTelemetry packages are "
            "installed and a tracer provider is configured, metrics when a meter provider is",
        ),
    )
    keepalive_time: float = _setting(
        60.0,
        Setting(
            env="BRIDGE_KEEPALIVE_TIME",
            group="gRPC connections",
            parse=_number,
            check=_CONNECTION_SECONDS,
            help="seconds of silence on a connection before the server pings the client (0: never)",
        ),
    )
    keepalive_timeout: float = _setting(
        20.0,
        Setting(
            env="BRIDGE_KEEPALIVE_TIMEOUT",
            group="gRPC connections",
            parse=_number,
            check=_CONNECTION_SECONDS,
            help="seconds to wait for a ping's answer before dropping the connection",
        ),
    )
    keepalive_permit_without_calls: bool = _setting(
        True,
        Setting(
            env="BRIDGE_KEEPALIVE_PERMIT_WITHOUT_CALLS",
            group="gRPC connections",
            parse=_boolean,
            help="ping, and accept client pings, on connections without calls",
        ),
    )
    keepalive_min_client_interval: float = _setting(
        10.0,
        Setting(
            env="BRIDGE_KEEPALIVE_MIN_CLIENT_INTERVAL",
            group="gRPC connections",
            parse=_number,
            check=_CONNECTION_SECONDS,
            help="shortest interval in seconds between client pings accepted (more often: "
            "GOAWAY too_many_pings)",
        ),
    )
    max_connection_idle: float = _setting(
        0.0,
        Setting(
            env="BRIDGE_MAX_CONNECTION_IDLE",
            group="gRPC connections",
            parse=_number,
            check=_CONNECTION_SECONDS,
            help="close connections idle for this many seconds (0: never)",
        ),
    )
    max_connection_age: float = _setting(
        0.0,
        Setting(
            env="BRIDGE_MAX_CONNECTION_AGE",
            group="gRPC connections",
            parse=_number,
            check=_CONNECTION_SECONDS,
            help="ask clients to reconnect after this many seconds, so long-lived HTTP/2 "
            "connections spread over new replicas (0: never)",
        ),
    )
    max_connection_age_grace: float = _setting(
        600.0,
        Setting(
            env="BRIDGE_MAX_CONNECTION_AGE_GRACE",
            group="gRPC connections",
            parse=_number,
            check=_CONNECTION_SECONDS,
            help="after the age is reached, seconds the calls in flight may still take",
        ),
    )
    max_concurrent_streams: int = _setting(
        0,
        Setting(
            env="BRIDGE_MAX_CONCURRENT_STREAMS",
            group="gRPC connections",
            parse=_integer,
            check=_at_least(0),
            help="calls at once on one HTTP/2 connection; more wait on the client (0: no limit)",
        ),
    )
    max_send_bytes: int = _setting(
        64 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_SEND_BYTES",
            group="gRPC connections",
            parse=_integer,
            check=_at_least(1024),
            help="largest gRPC response message sent (grpc.max_send_message_length)",
        ),
    )
    tls_cert_file: Path | None = _pem_file(
        "BRIDGE_TLS_CERT_FILE", "PEM certificate chain: serve gRPC over TLS (with --tls-key-file)"
    )
    tls_key_file: Path | None = _pem_file(
        "BRIDGE_TLS_KEY_FILE", "PEM private key of --tls-cert-file"
    )
    tls_client_ca_file: Path | None = _pem_file(
        "BRIDGE_TLS_CLIENT_CA_FILE",
        "PEM CA(s): require client certificates signed by them (mTLS)",
        shown_default="no client certificate asked",
    )
    upstream_ca_file: Path | None = _pem_file(
        "BRIDGE_UPSTREAM_CA_FILE",
        "PEM CA bundle trusted for the upstream's TLS",
        shown_default="the system's trust store",
    )
    limits_redis_url: Secret | None = _setting(
        None,
        Setting(
            env="BRIDGE_LIMITS_REDIS_URL",
            group="Limits",
            parse=Secret,
            check=_check(
                lambda url: url is None or url.value.startswith(LIMITS_REDIS_SCHEMES),
                "must be a redis://, rediss:// or unix:// URL",
            ),
            metavar="URL",
            shown_default="in-process counters, per replica",
            help="Redis (redis://, rediss://, unix://) holding the callers' limits and token "
            "budgets, shared by every replica; a password belongs in the variable, since "
            "flags show in ps (docs/callers.md)",
        ),
    )
    limits_redis_timeout: float = _setting(
        0.05,
        Setting(
            env="BRIDGE_LIMITS_REDIS_TIMEOUT",
            group="Limits",
            parse=_number,
            check=_check(lambda s: math.isfinite(s) and 0 < s <= 5, "must be in (0, 5] seconds"),
            help="seconds one limits decision may wait for Redis before the failure mode applies",
        ),
    )
    limits_failure_mode: str = _setting(
        "open",
        Setting(
            env="BRIDGE_LIMITS_FAILURE_MODE",
            group="Limits",
            choices=LIMITS_FAILURE_MODES,
            help="when the limits store is down or slow: open = admit uncounted (a WARNING "
            "and bridge_limits_store_failures_total), closed = refuse with UNAVAILABLE",
        ),
    )
    token_estimate: int = _setting(
        1024,
        Setting(
            env="BRIDGE_TOKEN_ESTIMATE",
            group="Limits",
            parse=_integer,
            check=_at_least(1),
            help="tokens reserved against a caller's token budgets for a request without "
            "max_tokens, until the upstream's usage settles it",
        ),
    )

    # Callers: who is calling, and the policy (bridge/callers.py, bridge/policy.py)
    caller_identity: tuple[IdentitySource, ...] = _setting(
        DEFAULT_SOURCES,
        Setting(
            env="BRIDGE_CALLER_IDENTITY",
            group="Callers",
            parse=parse_identity_sources,
            metavar="SOURCE,SOURCE",
            help="where the caller's identity comes from, first that gives one wins: tls (the "
            "client certificate), xfcc (the sidecar's x-forwarded-client-cert), header:NAME; "
            "a source not listed is never read, and its header never forwarded",
        ),
    )
    policy_file: Path | None = _setting(
        None,
        Setting(
            env="BRIDGE_POLICY_FILE",
            group="Callers",
            parse=Path,
            metavar="YAML",
            shown_default="none: every caller may use the service key, without limits",
            help="the caller policy: who may call, which models, on whose key, within which "
            "limits; a bad file stops start-up, and it is reloaded when it changes",
        ),
    )
    policy_reload_interval: float = _setting(
        DEFAULT_POLICY_RELOAD_INTERVAL,
        Setting(
            env="BRIDGE_POLICY_RELOAD_INTERVAL",
            group="Callers",
            parse=_number,
            check=_within(0.1, 3600),
            help="seconds between looks at --policy-file for a change (a ConfigMap's swap "
            "included); a bad new file keeps the last good policy",
        ),
    )
    forward_caller_header: str | None = _setting(
        None,
        Setting(
            env="BRIDGE_FORWARD_CALLER_HEADER",
            group="Callers",
            parse=str.lower,
            check=lambda name: None if name is None else check_header_name(name),
            metavar="NAME",
            shown_default="not forwarded",
            help="send the caller's identity upstream in this header",
        ),
    )

    def __post_init__(self) -> None:
        for label, name, check in _CHECKS:
            problem = check(getattr(self, name))
            if problem is not None:
                raise ConfigError(f"{label}: {problem}")
        for rule in _RULES:
            problem = rule(self)
            if problem is not None:
                raise ConfigError(problem)


# Rules about settings valid only together, each named for what it requires; a rule
# returns what is wrong, naming every setting involved, or None.


def _tls_needs_cert_and_key(config: BridgeConfig) -> str | None:
    if (config.tls_cert_file is None) == (config.tls_key_file is None):
        return None
    return f"{setting_label('tls_cert_file')} and {setting_label('tls_key_file')} go together"


def _mtls_needs_tls(config: BridgeConfig) -> str | None:
    if config.tls_client_ca_file is None or config.tls_cert_file is not None:
        return None
    return (
        f"{setting_label('tls_client_ca_file')} (mTLS) needs {setting_label('tls_cert_file')} "
        f"and {setting_label('tls_key_file')}"
    )


def _keepalive_needs_a_timeout(config: BridgeConfig) -> str | None:
    if config.keepalive_time == 0 or config.keepalive_timeout > 0:
        return None
    return (
        f"{setting_label('keepalive_timeout')} must be > 0 unless "
        f"{setting_label('keepalive_time')} is 0"
    )


def _identity_headers(config: BridgeConfig) -> set[str]:
    return {s.header or "" for s in config.caller_identity if s.kind == "header"}


def _identity_never_propagated(config: BridgeConfig) -> str | None:
    """An identity header never leaves the bridge."""
    for name in config.propagate_headers:
        if name in _identity_headers(config):
            return (
                f"{setting_label('propagate_headers')}: {name!r} names the caller "
                f"({setting_label('caller_identity')} header:{name}), and identity headers "
                "are never forwarded upstream"
            )
    return None


def _forwarded_caller_header_of_its_own(config: BridgeConfig) -> str | None:
    """The caller's identity sent upstream overwrites no other header."""
    forwarded = config.forward_caller_header
    taken = TRACE_HEADERS | set(config.propagate_headers) | _identity_headers(config)
    if forwarded is None or forwarded not in taken:
        return None
    return (
        f"{setting_label('forward_caller_header')}: {forwarded!r} is already a trace, "
        "propagated or identity header; the caller's identity needs a header of its own"
    )


_RULES: tuple[Callable[[BridgeConfig], str | None], ...] = (
    _tls_needs_cert_and_key,
    _mtls_needs_tls,
    _keepalive_needs_a_timeout,
    _identity_never_propagated,
    _forwarded_caller_header_of_its_own,
)


def _settings() -> tuple[Setting, ...]:
    out = []
    for field in dataclasses.fields(BridgeConfig):
        if _SETTING in field.metadata:
            default = None if field.default is dataclasses.MISSING else field.default
            out.append(
                dataclasses.replace(field.metadata[_SETTING], name=field.name, default=default)
            )
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _settings()
"""Every setting, in the order of `serve --help` and of docs/configuration.md."""

_BY_NAME: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}


def setting_label(name: str) -> str:
    """How an error names the setting behind field `name`: its flag and its variable."""
    return _BY_NAME[name].label


_CHECKS: tuple[tuple[str, str, _Check], ...] = (
    *(
        (setting.label, setting.name, setting.problem)
        for setting in SETTINGS
        if setting.check or setting.choices
    ),
    *(
        (field.name, field.name, field.metadata[_CHECK])
        for field in dataclasses.fields(BridgeConfig)
        if _CHECK in field.metadata
    ),
)
"""What `BridgeConfig` checks of each field alone: (how errors name it, field, check)."""


def _shown(value: object) -> str:
    """A default as an operator would type it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _default_text(setting: Setting) -> str:
    if setting.shown_default is not None:
        return setting.shown_default
    if setting.default in (None, ()):
        return "none"
    return _shown(setting.default)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `serve`, one per `Setting`, in `GROUPS` sections.

    No flag has an argparse default: an absent flag stays None, so that
    `config_from_args` can tell it from a given one and fall back to the
    environment variable.
    """
    here = BridgeConfig()
    groups = {title: parser.add_argument_group(title, text) for title, text in GROUPS.items()}
    for setting in SETTINGS:
        text = setting.help
        if setting.secret:
            text = (
                f"file holding {text} [env {setting.env} holds the value itself; there is "
                "deliberately no flag for the value, since flags show in ps]"
            )
        else:
            default = _default_text(setting)
            actual = getattr(here, setting.name)
            if setting.shown_default is not None and actual is not None:
                default = f"{default}, {_shown(actual)} here"
            text = f"{text} [env {setting.env}, default {default}]"
        groups[setting.group].add_argument(
            setting.flag,
            type=_flag_type(setting.parse),
            choices=setting.choices or None,
            metavar="true|false" if setting.parse is _boolean else setting.metavar,
            help=text.replace("%", "%%"),  # argparse formats help with %
        )


def _flag_type(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """`parse` for argparse, whose message for a bad value then says what is wrong."""

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> BridgeConfig:
    """Build the config from parsed `serve` flags, falling back to environment variables."""
    values: dict[str, object] = {}
    for setting in SETTINGS:
        raw = getattr(args, setting.dest, None)
        if setting.secret:
            values[setting.name] = _load_secret(setting, raw, environ)
            continue
        if raw is None and environ.get(setting.env):
            try:
                raw = setting.parse(environ[setting.env])
            except ValueError as exc:
                raise ConfigError(f"{setting.label}: {exc}") from None
        if raw is not None:
            values[setting.name] = raw
    return BridgeConfig(**values)  # type: ignore[arg-type]


def _load_secret(setting: Setting, path: Path | None, environ: Mapping[str, str]) -> Secret | None:
    """The secret from the file its flag names, else from its variable; None when neither."""
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{setting.flag}: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{setting.flag}: {path} is empty")
        return Secret(value)
    value = environ.get(setting.env, "").strip()
    return Secret(value) if value else None


def parse_serve_config(argv: Sequence[str], environ: Mapping[str, str]) -> BridgeConfig:
    """Parse `serve` flags alone (handy for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="myrouter-bridge serve", allow_abbrev=False)
    add_serve_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)), environ)


REFERENCE_COMMAND = "make docs"
"""How docs/configuration.md is written (python -m bridge.config --markdown)."""

_MIB = 1024 * 1024


def configuration_reference() -> str:
    """docs/configuration.md: every setting's flag, variable, default and meaning, by section."""
    lines = [
        f"<!-- Generated from the settings in bridge/config.py by `{REFERENCE_COMMAND}` "
        "(python -m bridge.config --markdown). Edit those, then run it; "
        "tests/unit/test_config.py fails when this file is stale. -->",
        "",
        "# Configuration reference",
        "",
        "`myrouter-bridge serve` takes each setting from its flag or, when the flag is "
        "absent, from its environment variable; an empty variable counts as unset. "
        "Durations are in seconds, sizes in bytes; true/false settings also accept "
        "yes/no, on/off and 1/0. `myrouter-bridge serve --help` shows the same list.",
    ]
    for title, text in GROUPS.items():
        lines += ["", f"## {title}", "", f"{text[0].upper()}{text[1:]}.", ""]
        lines += ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
        lines += [_reference_row(s) for s in SETTINGS if s.group == title]
    return "\n".join(lines) + "\n"


def _reference_row(setting: Setting) -> str:
    flag, env = f"`{setting.flag}`", f"`{setting.env}`"
    if setting.secret:
        flag, env = f"{flag} (a file holding it)", f"{env} (the value itself)"
    if setting.shown_default is not None or setting.default in (None, ()):
        default = _default_text(setting)
    else:
        default = f"`{_shown(setting.default)}`"
        if type(setting.default) is int and setting.default >= _MIB and not setting.default % _MIB:
            default += f" ({setting.default // _MIB} MiB)"
    meaning = setting.help
    if setting.choices:
        meaning += " (" + ", ".join(f"`{choice}`" for choice in setting.choices) + ")"
    elif setting.parse is _boolean:
        meaning += " (`true` or `false`)"
    if setting.secret:
        meaning += "; deliberately no flag for the value itself, since flags show in `ps`"
    cells = (flag, env, default, meaning)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m bridge.config --markdown  (prints docs/configuration.md)")
    sys.stdout.write(configuration_reference())
