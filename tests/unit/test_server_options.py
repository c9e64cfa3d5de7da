"""gRPC connection settings: the server options each setting becomes.

What a real client sees of them over a real socket is in
tests/integration/test_server_options.py.
"""

from __future__ import annotations

import pytest

from bridge.config import BridgeConfig
from bridge.server_options import server_options

pytestmark = pytest.mark.timeout(60)


def test_options_follow_the_config():
    options = dict(
        server_options(
            BridgeConfig(
                keepalive_time=30,
                keepalive_timeout=5,
                keepalive_permit_without_calls=False,
                keepalive_min_client_interval=2.5,
                max_connection_idle=100,
                max_connection_age=300,
                max_connection_age_grace=60,
                max_concurrent_streams=50,
                max_send_bytes=4096,
            )
        )
    )
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.keepalive_permit_without_calls"] == 0
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] == 2_500
    assert options["grpc.max_connection_idle_ms"] == 100_000
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 60_000
    assert options["grpc.max_concurrent_streams"] == 50
    assert options["grpc.max_send_message_length"] == 4096


def test_zero_means_off():
    options = dict(server_options(BridgeConfig(keepalive_time=0)))
    for name in (
        "grpc.keepalive_time_ms",
        "grpc.max_connection_idle_ms",
        "grpc.max_connection_age_ms",
        "grpc.max_concurrent_streams",
    ):
        assert name not in options
