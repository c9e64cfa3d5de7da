"""gRPC channel arguments of the server: keepalive, connection lifetime, limits.

Behind a mesh or an L4 load balancer, HTTP/2 connections live for hours and
pin their calls to whichever replica they first reached, so new replicas get
no traffic; `max_connection_age` makes clients reconnect now and then (after a
GOAWAY, with `max_connection_age_grace` for the calls in flight), which spreads
them again. Keepalive pings find dead peers behind NATs and proxies that drop
idle flows silently; the minimum client ping interval must be at most what
clients are configured with, or they get GOAWAY "too_many_pings".

grpc's receive limit is set above `--max-request-bytes` (`grpc_receive_limit`)
so that a request a little over the setting reaches the bridge's request
decoder, which refuses it with the bridge's own status (the setting named, the
request id, a log line, the metrics); only one beyond that margin gets grpc's
bare RESOURCE_EXHAUSTED, before any code of ours runs.
"""

from __future__ import annotations

from .config import BridgeConfig

__all__ = ["RECEIVE_MARGIN_BYTES", "ChannelOption", "grpc_receive_limit", "server_options"]

ChannelOption = tuple[str, int]

RECEIVE_MARGIN_BYTES = 4 * 1024 * 1024
"""At most this much more than `--max-request-bytes` is read (grpc's own default receive limit)."""

_GRPC_INT_MAX = 2**31 - 1
"""grpc's channel arguments are C ints."""


def grpc_receive_limit(max_request_bytes: int) -> int:
    """grpc's receive limit for `max_request_bytes`: the setting plus a margin of the
    setting itself, at most `RECEIVE_MARGIN_BYTES` (so 12 MiB for the default 8 MiB).

    The margin is what the bridge reads only to refuse: such a request is held by
    grpc as one buffer but never parsed. Bounded both ways, a message costs at
    most twice what the operator allowed, and never more than 4 MiB beyond it
    (what any grpc server reads by default), however big the setting.
    """
    margin = min(max_request_bytes, RECEIVE_MARGIN_BYTES)
    return min(max_request_bytes + margin, _GRPC_INT_MAX)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def server_options(config: BridgeConfig) -> list[ChannelOption]:
    """The grpc.aio.server options for `config` (message sizes included)."""
    options: list[ChannelOption] = [
        ("grpc.max_receive_message_length", grpc_receive_limit(config.max_request_bytes)),
        ("grpc.max_send_message_length", config.max_send_bytes),
        ("grpc.keepalive_permit_without_calls", int(config.keepalive_permit_without_calls)),
        (
            "grpc.http2.min_recv_ping_interval_without_data_ms",
            _ms(config.keepalive_min_client_interval),
        ),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if config.keepalive_time > 0:
        options += [
            ("grpc.keepalive_time_ms", _ms(config.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(config.keepalive_timeout)),
        ]
    if config.max_connection_idle > 0:
        options.append(("grpc.max_connection_idle_ms", _ms(config.max_connection_idle)))
    if config.max_connection_age > 0:
        options += [
            ("grpc.max_connection_age_ms", _ms(config.max_connection_age)),
            ("grpc.max_connection_age_grace_ms", _ms(config.max_connection_age_grace)),
        ]
    if config.max_concurrent_streams > 0:
        options.append(("grpc.max_concurrent_streams", config.max_concurrent_streams))
    return options
