"""gRPC connection settings: the server options each setting becomes.

What a real client sees of them over a real socket is in
tests/integration/test_server_options.py.
"""

from __future__ import annotations

import pytest

from bridge.config import BridgeConfig
from bridge.server_options import RECEIVE_MARGIN_BYTES, grpc_receive_limit, server_options

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


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("max_request_bytes", "receive_limit"),
    [
        (1024, 2048),  # twice a small setting
        (64 * 1024, 128 * 1024),
        (4 * MIB, 8 * MIB),
        (8 * MIB, 12 * MIB),  # the default: 4 MiB more, not twice
        (100 * MIB, 104 * MIB),
        (2**31 - 1, 2**31 - 1),  # a C int, whatever the setting
    ],
)
def test_grpc_reads_the_setting_plus_a_bounded_margin(max_request_bytes, receive_limit):
    assert grpc_receive_limit(max_request_bytes) == receive_limit
    assert grpc_receive_limit(max_request_bytes) - max_request_bytes <= RECEIVE_MARGIN_BYTES
    options = dict(server_options(BridgeConfig(max_request_bytes=max_request_bytes)))
    assert options["grpc.max_receive_message_length"] == receive_limit
