"""The bridge's configuration: one frozen, validated object built once at start-up.

Every setting comes from a command-line flag or an environment variable (the
flag wins), and the result is passed explicitly to whatever needs it; no module
reads the environment on its own. The service key is the one setting that has
no flag, because flags are visible to every user of the machine through `ps`:
it comes from ``MYROUTER_API_KEY`` or from a file named by ``--api-key-file``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .propagation import check_header_name

DEFAULT_UPSTREAM_URL = "https://api.myrouter.example/api/v1"
DEFAULT_LISTEN = "0.0.0.0:50051"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
LOG_FORMATS = ("auto", "json", "text")


class ConfigError(ValueError):
    """A setting is missing or out of range; the message names the setting."""


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A credential that never prints itself, so it cannot leak through a repr or a log."""

    value: str

    def __repr__(self) -> str:
        return "Secret('[secure]')"

    __str__ = __repr__


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class BridgeConfig:
    """Everything the bridge process needs to know, validated on construction."""

    listen: str = DEFAULT_LISTEN
    """host:port the gRPC server binds."""
    upstream_url: str = DEFAULT_UPSTREAM_URL
    """Base URL of the MyRouter API; /chat/completions and /models hang off it."""
    api_key: Secret | None = None
    """The bridge's own service key, used when a caller sends no authorization."""
    connect_timeout: float = 5.0
    """Seconds to open a TCP/TLS connection to the upstream."""
    request_timeout: float = 600.0
    """Cap, in seconds, on one whole upstream request; a caller's deadline can only shorten it."""
    stream_idle_timeout: float = 300.0
    """Longest silence, in seconds, tolerated between bytes of an upstream stream."""
    deadline_margin: float = 0.05
    """Seconds kept back from the caller's deadline so our own status reaches it first."""
    max_upstream_connections: int = 1000
    """Size of the pooled HTTP client's connection pool."""
    max_response_bytes: int = 32 * 1024 * 1024
    """Largest upstream answer body read into memory (unary calls and model lists)."""
    max_event_bytes: int = 8 * 1024 * 1024
    """Largest single server-sent event of a stream; bounds what one stream can buffer."""
    max_request_bytes: int = 8 * 1024 * 1024
    """Largest gRPC request message accepted (grpc.max_receive_message_length)."""
    max_messages: int = 1000
    """Most chat messages one request may carry."""
    max_concurrent_rpcs: int = 1000
    """RPCs served at once; above it a call fails RESOURCE_EXHAUSTED at once, never queues."""
    shutdown_grace: float = 25.0
    """Seconds in-flight calls may take to finish after SIGTERM before they are aborted."""
    connect_retries: int = 2
    """Retries of an upstream connection that failed before the request was sent."""
    connect_retry_backoff: float = 0.1
    """Seconds before the first connect retry; doubled for each further one."""
    log_level: str = "INFO"
    event_loop: str = "auto"
    """"uvloop", "asyncio", or "auto" (uvloop when installed): see bridge/loop.py."""
    reflection: bool = True
    """Serve grpc.reflection so grpcurl and other reflection clients can list and call."""
    shutdown_delay: float = 0.0
    """Seconds between turning health NOT_SERVING and stopping accepting calls on shutdown."""
    metrics_listen: str | None = None
    """host:port of the Prometheus /metrics endpoint; None serves none."""
    log_format: str = "auto"
    """json (one object per line), text, or auto: text on a terminal, json otherwise."""
    propagate_headers: tuple[str, ...] = ()
    """Metadata keys copied to the upstream request besides the trace headers (x-b3-*, ...)."""
    # -- gRPC connections (bridge/connections.py); 0 means "off" for the durations
    keepalive_time: float = 60.0
    """Seconds of silence on a connection before the server pings the client."""
    keepalive_timeout: float = 20.0
    """Seconds to wait for the ping's answer before closing the connection."""
    keepalive_permit_without_calls: bool = True
    """Keep pinging (and accept clients' pings) on connections with no call in flight."""
    keepalive_min_client_interval: float = 10.0
    """Shortest interval between client pings the server accepts (more often: GOAWAY)."""
    max_connection_idle: float = 0.0
    """Close a connection with no call for this many seconds (0: never)."""
    max_connection_age: float = 0.0
    """Ask clients to reconnect after this many seconds, to rebalance replicas (0: never)."""
    max_connection_age_grace: float = 600.0
    """After max_connection_age, seconds the calls in flight may still take."""
    max_concurrent_streams: int = 0
    """Calls at once on one HTTP/2 connection; more queue on the client (0: no limit)."""
    max_send_bytes: int = 64 * 1024 * 1024
    """Largest gRPC response message sent (grpc.max_send_message_length)."""
    opentelemetry: str = "auto"
    """Tracing: auto (on when OpenTelemetry is installed and configured), on, off."""
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    """Processes serving the port together (SO_REUSEPORT); default: one per core."""
    # -- TLS (bridge/tls.py)
    tls_cert_file: Path | None = None
    """PEM certificate chain of the gRPC listener; with tls_key_file, the listener is TLS."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: Path | None = None
    """PEM CA(s) whose client certificates are required (mTLS); None: no client certificate."""
    upstream_ca_file: Path | None = None
    """PEM CA bundle trusted for the upstream's TLS instead of the system store."""

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
        _require(
            self.opentelemetry in ("auto", "on", "off"), "opentelemetry must be auto, on or off"
        )
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
        _require(self.log_level in LOG_LEVELS, f"log_level must be one of {', '.join(LOG_LEVELS)}")
        _require(
            self.event_loop in EVENT_LOOPS, f"event_loop must be one of {', '.join(EVENT_LOOPS)}"
        )
        _require(self.api_key is None or bool(self.api_key.value), "the service key is empty")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip().lower() for name in text.split(",") if name.strip())


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of `serve`; each flag's default comes from its environment variable."""
    d = BridgeConfig()
    parser.add_argument(
        "--listen",
        help=f"host:port to serve gRPC on [env BRIDGE_LISTEN, default {d.listen}]",
    )
    parser.add_argument(
        "--upstream-url",
        help=f"base URL of the MyRouter API [env MYROUTER_BASE_URL, default {d.upstream_url}]",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        help="file holding the service key, used when a caller sends no authorization "
        "metadata [env MYROUTER_API_KEY holds the key itself; there is deliberately no "
        "flag for the key, since flags show in ps]",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        help="seconds to connect to the upstream "
        f"[env BRIDGE_CONNECT_TIMEOUT, default {d.connect_timeout}]",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        help="cap in seconds on one upstream request; a shorter caller deadline wins "
        f"[env BRIDGE_REQUEST_TIMEOUT, default {d.request_timeout}]",
    )
    parser.add_argument(
        "--stream-idle-timeout",
        type=float,
        help="longest silence in seconds between bytes of an upstream stream before the "
        f"call fails [env BRIDGE_STREAM_IDLE_TIMEOUT, default {d.stream_idle_timeout}]",
    )
    parser.add_argument(
        "--max-upstream-connections",
        type=int,
        help="connection pool size towards the upstream "
        f"[env BRIDGE_MAX_UPSTREAM_CONNECTIONS, default {d.max_upstream_connections}]",
    )
    parser.add_argument(
        "--reflection",
        type=_boolean,
        metavar="true|false",
        help="serve gRPC server reflection (grpcurl list/describe) "
        f"[env BRIDGE_REFLECTION, default {str(d.reflection).lower()}]",
    )
    parser.add_argument(
        "--shutdown-delay",
        type=float,
        help="on SIGTERM, seconds to keep serving while health reports NOT_SERVING, "
        "before the drain starts [env BRIDGE_SHUTDOWN_DELAY, default "
        f"{d.shutdown_delay}]",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics "
        "[env BRIDGE_METRICS_LISTEN, default: no metrics endpoint]",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="json: one JSON object per line; text: for people; auto: text on a terminal, "
        f"json otherwise [env BRIDGE_LOG_FORMAT, default {d.log_format}]",
    )
    parser.add_argument(
        "--propagate-headers",
        type=_names,
        metavar="KEY,KEY",
        help="metadata keys copied to the upstream request, in addition to traceparent, "
        "tracestate, baggage, b3, x-b3-* and the other trace headers "
        "[env BRIDGE_PROPAGATE_HEADERS, default none]",
    )
    parser.add_argument(
        "--max-response-bytes",
        type=int,
        help="largest upstream answer body (unary calls, model lists) the bridge reads "
        f"[env BRIDGE_MAX_RESPONSE_BYTES, default {d.max_response_bytes}]",
    )
    parser.add_argument(
        "--max-event-bytes",
        type=int,
        help="largest single event of an upstream stream; a bigger one fails the call "
        f"RESOURCE_EXHAUSTED [env BRIDGE_MAX_EVENT_BYTES, default {d.max_event_bytes}]",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        help="largest gRPC request message accepted "
        f"[env BRIDGE_MAX_REQUEST_BYTES, default {d.max_request_bytes}]",
    )
    parser.add_argument(
        "--max-messages",
        type=int,
        help="most chat messages in one request "
        f"[env BRIDGE_MAX_MESSAGES, default {d.max_messages}]",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        help="RPCs served at once; more fail RESOURCE_EXHAUSTED at once instead of queueing "
        f"[env BRIDGE_MAX_CONCURRENT_RPCS, default {d.max_concurrent_rpcs}]",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds in-flight calls may take to finish after SIGTERM before they are "
        "aborted with UNAVAILABLE; a second signal exits at once "
        f"[env BRIDGE_SHUTDOWN_GRACE, default {d.shutdown_grace}]",
    )
    parser.add_argument(
        "--connect-retries",
        type=int,
        help="retries of an upstream connection that failed before the request was sent "
        "(nothing that may have reached the model is retried) "
        f"[env BRIDGE_CONNECT_RETRIES, default {d.connect_retries}]",
    )
    parser.add_argument(
        "--connect-retry-backoff",
        type=float,
        help="seconds before the first connect retry, doubled for each further one "
        f"[env BRIDGE_CONNECT_RETRY_BACKOFF, default {d.connect_retry_backoff}]",
    )
    parser.add_argument(
        "--opentelemetry",
        choices=("auto", "on", "off"),
        help="OpenTelemetry tracing (server spans, context sent upstream): auto = on when the "
        "OpenTelemetry packages are installed and a tracer provider is configured "
        f"[env BRIDGE_OPENTELEMETRY, default {d.opentelemetry}]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes serving the port together with SO_REUSEPORT, each with its own "
        "event loop and HTTP client [env BRIDGE_WORKERS, default: the number of cores, "
        f"{d.workers} here]",
    )
    _add_connection_arguments(parser, d)
    group = parser.add_argument_group("TLS", "TLS/mTLS of the gRPC listener; upstream trust")
    for flag, env, _, text in _TLS_FLAGS:
        group.add_argument(flag, type=Path, metavar="PEM", help=f"{text} [env {env}]")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help=f"log verbosity [env BRIDGE_LOG_LEVEL, default {d.log_level}]",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        help="the asyncio event loop: uvloop costs ~15%% less CPU per relayed chunk "
        "(BENCHMARKS.md); auto = uvloop when installed "
        f"[env BRIDGE_EVENT_LOOP, default {d.event_loop}]",
    )


_CONNECTION_FLAGS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
    (
        "--keepalive-time",
        "BRIDGE_KEEPALIVE_TIME",
        float,
        "seconds of silence on a connection before the server pings the client (0: never)",
    ),
    (
        "--keepalive-timeout",
        "BRIDGE_KEEPALIVE_TIMEOUT",
        float,
        "seconds to wait for a ping's answer before dropping the connection",
    ),
    (
        "--keepalive-permit-without-calls",
        "BRIDGE_KEEPALIVE_PERMIT_WITHOUT_CALLS",
        _boolean,
        "true|false: ping, and accept client pings, on connections without calls",
    ),
    (
        "--keepalive-min-client-interval",
        "BRIDGE_KEEPALIVE_MIN_CLIENT_INTERVAL",
        float,
        "shortest interval between client pings accepted (more often: GOAWAY too_many_pings)",
    ),
    (
        "--max-connection-idle",
        "BRIDGE_MAX_CONNECTION_IDLE",
        float,
        "close connections idle for this many seconds (0: never)",
    ),
    (
        "--max-connection-age",
        "BRIDGE_MAX_CONNECTION_AGE",
        float,
        "ask clients to reconnect after this many seconds, so long-lived HTTP/2 "
        "connections spread over new replicas (0: never)",
    ),
    (
        "--max-connection-age-grace",
        "BRIDGE_MAX_CONNECTION_AGE_GRACE",
        float,
        "after the age is reached, seconds the calls in flight may still take",
    ),
    (
        "--max-concurrent-streams",
        "BRIDGE_MAX_CONCURRENT_STREAMS",
        int,
        "calls at once on one HTTP/2 connection; more wait on the client (0: no limit)",
    ),
    ("--max-send-bytes", "BRIDGE_MAX_SEND_BYTES", int, "largest gRPC response message sent"),
)
"""(flag, environment variable, converter, help) of the gRPC connection settings."""


_TLS_FLAGS: tuple[tuple[str, str, Callable[[str], object], str], ...] = (
    ("--tls-cert-file", "BRIDGE_TLS_CERT_FILE", Path, "certificate chain: serve gRPC over TLS"),
    ("--tls-key-file", "BRIDGE_TLS_KEY_FILE", Path, "private key of --tls-cert-file"),
    (
        "--tls-client-ca-file",
        "BRIDGE_TLS_CLIENT_CA_FILE",
        Path,
        "require client certificates signed by these CAs (mTLS)",
    ),
    (
        "--upstream-ca-file",
        "BRIDGE_UPSTREAM_CA_FILE",
        Path,
        "CA bundle trusted for the upstream's TLS [default: the system's trust store]",
    ),
)


def _field_of(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _add_connection_arguments(parser: argparse.ArgumentParser, d: BridgeConfig) -> None:
    group = parser.add_argument_group(
        "gRPC connections", "keepalive, connection age (rebalancing across replicas), limits"
    )
    for flag, env, kind, text in _CONNECTION_FLAGS:
        default = getattr(d, _field_of(flag))
        shown = str(default).lower() if isinstance(default, bool) else default
        group.add_argument(
            flag,
            type=kind,
            metavar="true|false" if kind is _boolean else None,
            help=f"{text} [env {env}, default {shown}]",
        )


# flag attribute -> (environment variable, config field, converter)
_ENV_SOURCES: dict[str, tuple[str, str, Callable[[str], object]]] = {
    "listen": ("BRIDGE_LISTEN", "listen", str),
    "upstream_url": ("MYROUTER_BASE_URL", "upstream_url", str),
    "connect_timeout": ("BRIDGE_CONNECT_TIMEOUT", "connect_timeout", float),
    "request_timeout": ("BRIDGE_REQUEST_TIMEOUT", "request_timeout", float),
    "stream_idle_timeout": ("BRIDGE_STREAM_IDLE_TIMEOUT", "stream_idle_timeout", float),
    "max_upstream_connections": (
        "BRIDGE_MAX_UPSTREAM_CONNECTIONS",
        "max_upstream_connections",
        int,
    ),
    "log_level": ("BRIDGE_LOG_LEVEL", "log_level", str),
    "event_loop": ("BRIDGE_EVENT_LOOP", "event_loop", str),
    "reflection": ("BRIDGE_REFLECTION", "reflection", _boolean),
    "shutdown_delay": ("BRIDGE_SHUTDOWN_DELAY", "shutdown_delay", float),
    "metrics_listen": ("BRIDGE_METRICS_LISTEN", "metrics_listen", str),
    "log_format": ("BRIDGE_LOG_FORMAT", "log_format", str),
    "workers": ("BRIDGE_WORKERS", "workers", int),
    "opentelemetry": ("BRIDGE_OPENTELEMETRY", "opentelemetry", str),
    "propagate_headers": ("BRIDGE_PROPAGATE_HEADERS", "propagate_headers", _names),
    "max_response_bytes": ("BRIDGE_MAX_RESPONSE_BYTES", "max_response_bytes", int),
    "max_event_bytes": ("BRIDGE_MAX_EVENT_BYTES", "max_event_bytes", int),
    "max_request_bytes": ("BRIDGE_MAX_REQUEST_BYTES", "max_request_bytes", int),
    "max_messages": ("BRIDGE_MAX_MESSAGES", "max_messages", int),
    "max_concurrent_rpcs": ("BRIDGE_MAX_CONCURRENT_RPCS", "max_concurrent_rpcs", int),
    "shutdown_grace": ("BRIDGE_SHUTDOWN_GRACE", "shutdown_grace", float),
    "connect_retries": ("BRIDGE_CONNECT_RETRIES", "connect_retries", int),
    "connect_retry_backoff": ("BRIDGE_CONNECT_RETRY_BACKOFF", "connect_retry_backoff", float),
}
_ENV_SOURCES.update(
    {
        _field_of(flag): (env, _field_of(flag), kind)
        for flag, env, kind, _ in (*_CONNECTION_FLAGS, *_TLS_FLAGS)
    }
)


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> BridgeConfig:
    """Build the config from parsed `serve` flags, falling back to environment variables."""
    values: dict[str, object] = {}
    for attr, (env_name, field, convert) in _ENV_SOURCES.items():
        raw = getattr(args, attr, None)
        if raw is None and environ.get(env_name):
            try:
                raw = convert(environ[env_name])
            except ValueError as exc:
                raise ConfigError(f"{env_name}: {exc}") from None
        if raw is not None:
            values[field] = raw
    values["api_key"] = _load_api_key(getattr(args, "api_key_file", None), environ)
    return BridgeConfig(**values)  # type: ignore[arg-type]


def _load_api_key(path: Path | None, environ: Mapping[str, str]) -> Secret | None:
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"--api-key-file: cannot read {path}: {exc.strerror}") from None
        if not key:
            raise ConfigError(f"--api-key-file: {path} is empty")
        return Secret(key)
    key = environ.get("MYROUTER_API_KEY", "").strip()
    return Secret(key) if key else None


def parse_serve_config(argv: Sequence[str], environ: Mapping[str, str]) -> BridgeConfig:
    """Parse `serve` flags alone (handy for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="myrouter-bridge serve", allow_abbrev=False)
    add_serve_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)), environ)
