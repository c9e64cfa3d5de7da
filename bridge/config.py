"""The bridge's configuration: one frozen, validated object built once at start-up.

Each setting is written once: a field of `BridgeConfig` whose metadata (a
`Setting`) names its environment variable and says what it means. The `serve`
flags (`add_serve_arguments`), the reading of the environment
(`config_from_args`) and the reference in docs/configuration.md
(`configuration_reference`, written by ``make docs``) are generated from those
fields, so a new setting cannot be forgotten in one of them. A flag wins over its
environment variable, and an empty variable counts as unset. The result is
passed explicitly to whatever needs it; no module reads the environment on its own.

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
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OPENTELEMETRY_MODES",
    "SETTINGS",
    "BridgeConfig",
    "ConfigError",
    "Secret",
    "Setting",
    "add_serve_arguments",
    "config_from_args",
    "configuration_reference",
    "parse_fallbacks",
    "parse_serve_config",
]

DEFAULT_UPSTREAM_URL = "https://api.myrouter.example/api/v1"
DEFAULT_LISTEN = "0.0.0.0:50051"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
LOG_FORMATS = ("auto", "json", "text")
OPENTELEMETRY_MODES = ("auto", "on", "off")
DEFAULT_POLICY_RELOAD_INTERVAL = 2.0

_SETTING = "bridge.config.Setting"
_T = TypeVar("_T")


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names the setting."""


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A credential that never prints itself, so it cannot leak through a repr or a log."""

    value: str

    def __repr__(self) -> str:
        return "Secret('[secure]')"

    __str__ = __repr__


def _boolean(text: str) -> bool:
    # The name shows in argparse's message for a bad flag value ("invalid _boolean value").
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


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


class _BadSettingText(argparse.ArgumentTypeError, ValueError):
    """Bad setting text whose reason argparse shows after the flag (a plain ValueError only
    says "invalid value"); `config_from_args` shows it after the variable."""


def _caller_identity(text: str) -> tuple[IdentitySource, ...]:
    try:
        return parse_identity_sources(text)
    except ValueError as exc:
        raise _BadSettingText(str(exc)) from None


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
    """Turns the flag's or the variable's text into the field's value (ValueError if bad)."""
    choices: tuple[str, ...] = ()
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

    listen: str = _setting(
        DEFAULT_LISTEN,
        Setting(env="BRIDGE_LISTEN", group="Serving", help="host:port to serve gRPC on"),
    )
    workers: int = dataclasses.field(
        default_factory=_cores,
        metadata={
            _SETTING: Setting(
                env="BRIDGE_WORKERS",
                group="Serving",
                parse=int,
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
            help="the bridge's own service key, used when a caller sends no authorization metadata",
        ),
    )
    connect_timeout: float = _setting(
        5.0,
        Setting(
            env="BRIDGE_CONNECT_TIMEOUT",
            group="Upstream",
            parse=float,
            help="seconds to open a TCP/TLS connection to the upstream",
        ),
    )
    request_timeout: float = _setting(
        600.0,
        Setting(
            env="BRIDGE_REQUEST_TIMEOUT",
            group="Upstream",
            parse=float,
            help="cap in seconds on one whole upstream request; a shorter caller deadline wins "
            "(less a small margin, so the bridge's own status reaches the caller first)",
        ),
    )
    stream_idle_timeout: float = _setting(
        300.0,
        Setting(
            env="BRIDGE_STREAM_IDLE_TIMEOUT",
            group="Upstream",
            parse=float,
            help="longest silence in seconds between bytes of an upstream stream before the "
            "call fails (keep-alive comments count as bytes)",
        ),
    )
    max_upstream_connections: int = _setting(
        1000,
        Setting(
            env="BRIDGE_MAX_UPSTREAM_CONNECTIONS",
            group="Upstream",
            parse=int,
            help="size of the pooled HTTP client's connection pool towards the upstream",
        ),
    )
    connect_retries: int = _setting(
        2,
        Setting(
            env="BRIDGE_CONNECT_RETRIES",
            group="Upstream",
            parse=int,
            help="retries of an upstream connection that failed before the request was sent "
            "(nothing that may have reached the model is retried)",
        ),
    )
    connect_retry_backoff: float = _setting(
        0.1,
        Setting(
            env="BRIDGE_CONNECT_RETRY_BACKOFF",
            group="Upstream",
            parse=float,
            help="seconds before the first connect retry, doubled for each further one",
        ),
    )
    retry_attempts: int = _setting(
        3,
        Setting(
            env="BRIDGE_RETRY_ATTEMPTS",
            group="Upstream",
            parse=int,
            help="tries per model of a call that fails retryably before the caller has seen "
            "anything (502, 503, 504, 408, 429, an overloaded first event; "
            "docs/reliability.md), the first included: 1 = no retries",
        ),
    )
    retry_backoff: float = _setting(
        0.1,
        Setting(
            env="BRIDGE_RETRY_BACKOFF",
            group="Upstream",
            parse=float,
            help="most seconds before the first retry, doubled for each further one; the "
            "wait is random below it (full jitter)",
        ),
    )
    retry_max_backoff: float = _setting(
        2.0,
        Setting(
            env="BRIDGE_RETRY_MAX_BACKOFF",
            group="Upstream",
            parse=float,
            help="cap in seconds on the doubled backoff",
        ),
    )
    retry_budget: float = _setting(
        0.1,
        Setting(
            env="BRIDGE_RETRY_BUDGET",
            group="Upstream",
            parse=float,
            help="retries and fallbacks allowed, as a share of the calls over the budget's "
            "window (with the floor), so an outage adds at most that much load upstream",
        ),
    )
    retry_budget_floor: int = _setting(
        10,
        Setting(
            env="BRIDGE_RETRY_BUDGET_FLOOR",
            group="Upstream",
            parse=int,
            help="retries allowed per window on top of the share, so a quiet bridge can retry",
        ),
    )
    retry_budget_window: float = _setting(
        10.0,
        Setting(
            env="BRIDGE_RETRY_BUDGET_WINDOW",
            group="Upstream",
            parse=float,
            help="seconds of the retry budget's sliding window",
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
            parse=int,
            help="consecutive retryable failures of a model that open its circuit breaker "
            "(0: no such rule)",
        ),
    )
    breaker_failure_rate: float = _setting(
        0.5,
        Setting(
            env="BRIDGE_BREAKER_FAILURE_RATE",
            group="Upstream",
            parse=float,
            help="share of a model's calls failing retryably over the breaker's window that "
            "opens its breaker (0: no such rule; both 0: no breakers)",
        ),
    )
    breaker_min_calls: int = _setting(
        20,
        Setting(
            env="BRIDGE_BREAKER_MIN_CALLS",
            group="Upstream",
            parse=int,
            help="calls of a model in the window before its failure rate counts",
        ),
    )
    breaker_window: float = _setting(
        30.0,
        Setting(
            env="BRIDGE_BREAKER_WINDOW",
            group="Upstream",
            parse=float,
            help="seconds of the breaker's sliding window",
        ),
    )
    breaker_cooldown: float = _setting(
        10.0,
        Setting(
            env="BRIDGE_BREAKER_COOLDOWN",
            group="Upstream",
            parse=float,
            help="seconds an open breaker fails calls at once (UNAVAILABLE, "
            "UPSTREAM_CIRCUIT_OPEN) before it lets probe calls through",
        ),
    )
    breaker_probes: int = _setting(
        2,
        Setting(
            env="BRIDGE_BREAKER_PROBES",
            group="Upstream",
            parse=int,
            help="probe calls a half-open breaker lets through; that many successes close it, "
            "one failure opens it again",
        ),
    )
    propagate_headers: tuple[str, ...] = _setting(
        (),
        Setting(
            env="BRIDGE_PROPAGATE_HEADERS",
            group="Upstream",
            parse=_names,
            metavar="KEY,KEY",
            help="comma-separated metadata keys copied to the upstream request, in addition to "
            "traceparent, tracestate, baggage, b3, x-b3-* and the other trace headers",
        ),
    )
    deadline_margin: float = 0.05
    """Seconds kept back from the caller's deadline so our own status reaches it first.

    Not a setting (no flag, no variable): a constant that tests can change."""
    max_concurrent_rpcs: int = _setting(
        1000,
        Setting(
            env="BRIDGE_MAX_CONCURRENT_RPCS",
            group="Limits",
            parse=int,
            help="RPCs served at once; more fail RESOURCE_EXHAUSTED at once instead of queueing",
        ),
    )
    max_request_bytes: int = _setting(
        8 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_REQUEST_BYTES",
            group="Limits",
            parse=int,
            help="largest gRPC request message accepted (grpc.max_receive_message_length); "
            "a bigger one fails RESOURCE_EXHAUSTED",
        ),
    )
    max_messages: int = _setting(
        1000,
        Setting(
            env="BRIDGE_MAX_MESSAGES",
            group="Limits",
            parse=int,
            help="most chat messages in one request (more: INVALID_ARGUMENT)",
        ),
    )
    max_response_bytes: int = _setting(
        32 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_RESPONSE_BYTES",
            group="Limits",
            parse=int,
            help="largest upstream answer body the bridge reads into memory (unary calls, "
            "model lists)",
        ),
    )
    max_event_bytes: int = _setting(
        8 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_EVENT_BYTES",
            group="Limits",
            parse=int,
            help="largest single event of an upstream stream; a bigger one fails the call "
            "RESOURCE_EXHAUSTED (it bounds what one stream can buffer)",
        ),
    )
    shutdown_delay: float = _setting(
        0.0,
        Setting(
            env="BRIDGE_SHUTDOWN_DELAY",
            group="Shutdown",
            parse=float,
            help="on SIGTERM, seconds to keep accepting calls while health reports "
            "NOT_SERVING, before the drain starts",
        ),
    )
    shutdown_grace: float = _setting(
        25.0,
        Setting(
            env="BRIDGE_SHUTDOWN_GRACE",
            group="Shutdown",
            parse=float,
            help="seconds in-flight calls may take to finish after SIGTERM (and the delay) "
            "before they are aborted with UNAVAILABLE; a second signal exits at once",
        ),
    )
    log_level: str = _setting(
        "INFO",
        Setting(
            env="BRIDGE_LOG_LEVEL",
            group="Observability",
            choices=LOG_LEVELS,
            help="log verbosity",
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
    metrics_listen: str | None = _setting(
        None,
        Setting(
            env="BRIDGE_METRICS_LISTEN",
            group="Observability",
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
            parse=float,
            help="seconds of silence on a connection before the server pings the client (0: never)",
        ),
    )
    keepalive_timeout: float = _setting(
        20.0,
        Setting(
            env="BRIDGE_KEEPALIVE_TIMEOUT",
            group="gRPC connections",
            parse=float,
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
            parse=float,
            help="shortest interval in seconds between client pings accepted (more often: "
            "GOAWAY too_many_pings)",
        ),
    )
    max_connection_idle: float = _setting(
        0.0,
        Setting(
            env="BRIDGE_MAX_CONNECTION_IDLE",
            group="gRPC connections",
            parse=float,
            help="close connections idle for this many seconds (0: never)",
        ),
    )
    max_connection_age: float = _setting(
        0.0,
        Setting(
            env="BRIDGE_MAX_CONNECTION_AGE",
            group="gRPC connections",
            parse=float,
            help="ask clients to reconnect after this many seconds, so long-lived HTTP/2 "
            "connections spread over new replicas (0: never)",
        ),
    )
    max_connection_age_grace: float = _setting(
        600.0,
        Setting(
            env="BRIDGE_MAX_CONNECTION_AGE_GRACE",
            group="gRPC connections",
            parse=float,
            help="after the age is reached, seconds the calls in flight may still take",
        ),
    )
    max_concurrent_streams: int = _setting(
        0,
        Setting(
            env="BRIDGE_MAX_CONCURRENT_STREAMS",
            group="gRPC connections",
            parse=int,
            help="calls at once on one HTTP/2 connection; more wait on the client (0: no limit)",
        ),
    )
    max_send_bytes: int = _setting(
        64 * 1024 * 1024,
        Setting(
            env="BRIDGE_MAX_SEND_BYTES",
            group="gRPC connections",
            parse=int,
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

    # Callers: who is calling, and the policy (bridge/callers.py, bridge/policy.py)
    caller_identity: tuple[IdentitySource, ...] = _setting(
        DEFAULT_SOURCES,
        Setting(
            env="BRIDGE_CALLER_IDENTITY",
            group="Callers",
            parse=_caller_identity,
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
            parse=float,
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
            metavar="NAME",
            shown_default="not forwarded",
            help="send the caller's identity upstream in this header",
        ),
    )

    def __post_init__(self) -> None:
        _require(":" in self.listen, "listen must be host:port")
        _require(
            self.upstream_url.startswith(("http://", "https://")),
            "upstream_url must be an http:// or https:// URL",
        )
        for name in ("connect_timeout", "request_timeout", "stream_idle_timeout"):
            value = getattr(self, name)
            _require(math.isfinite(value) and value > 0, f"{name} must be a positive number")
        _require(0 <= self.deadline_margin < 10, "deadline_margin must be in [0, 10)")
        _require(
            math.isfinite(self.shutdown_delay) and 0 <= self.shutdown_delay <= 600,
            "shutdown_delay must be in [0, 600]",
        )
        _require(
            self.metrics_listen is None or ":" in self.metrics_listen,
            "metrics_listen must be host:port",
        )
        _require(
            self.log_format in LOG_FORMATS, f"log_format must be one of {', '.join(LOG_FORMATS)}"
        )
        for name in (
            "keepalive_time",
            "keepalive_timeout",
            "keepalive_min_client_interval",
            "max_connection_idle",
            "max_connection_age",
            "max_connection_age_grace",
        ):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 <= value <= 30 * 86400, f"{name} must be >= 0")
        _require(
            self.keepalive_time == 0 or self.keepalive_timeout > 0, "keepalive_timeout must be > 0"
        )
        _require(
            (self.tls_cert_file is None) == (self.tls_key_file is None),
            "tls_cert_file and tls_key_file go together",
        )
        _require(
            self.tls_client_ca_file is None or self.tls_cert_file is not None,
            "tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file",
        )
        _require(self.opentelemetry in OPENTELEMETRY_MODES, "opentelemetry must be auto, on or off")
        _require(1 <= self.workers <= 256, "workers must be in [1, 256]")
        _require(self.max_concurrent_streams >= 0, "max_concurrent_streams must be >= 0")
        _require(self.max_send_bytes >= 1024, "max_send_bytes must be >= 1024")
        for name in self.propagate_headers:
            problem = check_header_name(name)
            _require(problem is None, f"propagate_headers: {problem}")
        _require(self.max_upstream_connections >= 1, "max_upstream_connections must be >= 1")
        _require(self.max_response_bytes >= 1024, "max_response_bytes must be >= 1024")
        for name in ("max_event_bytes", "max_request_bytes"):
            _require(getattr(self, name) >= 1024, f"{name} must be >= 1024")
        for name in ("max_messages", "max_concurrent_rpcs"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1")
        _require(
            math.isfinite(self.shutdown_grace) and self.shutdown_grace >= 0,
            "shutdown_grace must be a number >= 0",
        )
        _require(0 <= self.connect_retries <= 10, "connect_retries must be in [0, 10]")
        _require(
            math.isfinite(self.connect_retry_backoff) and 0 <= self.connect_retry_backoff <= 10,
            "connect_retry_backoff must be in [0, 10]",
        )
        _require(1 <= self.retry_attempts <= 10, "retry_attempts must be in [1, 10]")
        for name in ("retry_backoff", "retry_max_backoff"):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 <= value <= 60, f"{name} must be in [0, 60]")
        for name in ("retry_budget", "breaker_failure_rate"):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 <= value <= 1, f"{name} must be in [0, 1]")
        for name in ("retry_budget_floor", "breaker_failures", "breaker_min_calls"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        for name in ("retry_budget_window", "breaker_window", "breaker_cooldown"):
            value = getattr(self, name)
            _require(math.isfinite(value) and 0 < value <= 3600, f"{name} must be in (0, 3600]")
        _require(self.breaker_probes >= 1, "breaker_probes must be >= 1")
        _require(isinstance(self.fallback_models, Mapping), "fallback_models must be a mapping")
        _require(self.log_level in LOG_LEVELS, f"log_level must be one of {', '.join(LOG_LEVELS)}")
        _require(
            self.event_loop in EVENT_LOOPS, f"event_loop must be one of {', '.join(EVENT_LOOPS)}"
        )
        _require(self.api_key is None or bool(self.api_key.value), "the service key is empty")
        self._check_callers()

    def _check_callers(self) -> None:
        """The Callers group: an identity header never leaves the bridge, nor is it overwritten."""
        identity_headers = {s.header or "" for s in self.caller_identity if s.kind == "header"}
        for name in self.propagate_headers:
            _require(
                name not in identity_headers,
                f"--propagate-headers: {name!r} names the caller (--caller-identity "
                f"header:{name}), and identity headers are never forwarded upstream",
            )
        _require(
            math.isfinite(self.policy_reload_interval)
            and 0.1 <= self.policy_reload_interval <= 3600,
            "--policy-reload-interval must be in [0.1, 3600] seconds",
        )
        forwarded = self.forward_caller_header
        if forwarded is not None:
            problem = check_header_name(forwarded)
            _require(problem is None, f"--forward-caller-header: {problem}")
            taken = TRACE_HEADERS | set(self.propagate_headers) | identity_headers
            _require(
                forwarded not in taken,
                f"--forward-caller-header: {forwarded!r} is already a trace, propagated or "
                "identity header; the caller's identity needs a header of its own",
            )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


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
            type=setting.parse,
            choices=setting.choices or None,
            metavar="true|false" if setting.parse is _boolean else setting.metavar,
            help=text.replace("%", "%%"),  # argparse formats help with %
        )


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
                raise ConfigError(f"{setting.env}: {exc}") from None
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
        "tests/test_config.py fails when this file is stale. -->",
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
