"""gRPC connection settings, seen from a real client over a real socket."""

from __future__ import annotations

import time

import grpc
import pytest

from bridge.config import BridgeConfig
from bridge.connections import server_options
from myrouter.chat.v1 import chat_pb2_grpc
from support import CALLER_METADATA, chat_request, with_scenario

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


def _watch_states(channel: grpc.Channel) -> list[grpc.ChannelConnectivity]:
    states: list[grpc.ChannelConnectivity] = []
    channel.subscribe(states.append, try_to_connect=False)
    return states


def test_max_connection_age_closes_the_connection_after_in_flight_calls(make_bridge):
    bridge = make_bridge(max_connection_age=0.5, max_connection_age_grace=10)
    with grpc.insecure_channel(bridge.target) as channel:
        states = _watch_states(channel)
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        # a stream that outlives the connection's age still finishes, thanks to the grace
        request = with_scenario(chat_request(), chunks=6, chunk_delay=0.2)
        chunks = list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=20))
        assert len(chunks) >= 6
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready = [i for i, s in enumerate(states) if s == grpc.ChannelConnectivity.READY]
            if ready and grpc.ChannelConnectivity.IDLE in states[ready[0] :]:
                break
            time.sleep(0.05)
        ready_at = states.index(grpc.ChannelConnectivity.READY)
        assert grpc.ChannelConnectivity.IDLE in states[ready_at:], states
        # and the client simply reconnects for the next call
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)


def test_without_a_connection_age_the_connection_stays(make_bridge):
    bridge = make_bridge()
    with grpc.insecure_channel(bridge.target) as channel:
        states = _watch_states(channel)
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)
        time.sleep(1.0)
        ready_at = states.index(grpc.ChannelConnectivity.READY)
        assert grpc.ChannelConnectivity.IDLE not in states[ready_at:], states


def test_max_concurrent_streams_queues_further_calls_on_the_connection(make_bridge):
    bridge = make_bridge(max_concurrent_streams=1)
    with grpc.insecure_channel(bridge.target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        slow = with_scenario(chat_request(), chunks=5, chunk_delay=0.4)
        stream = stub.StreamChatCompletion(slow, metadata=CALLER_METADATA, timeout=20)
        next(stream)  # the one allowed stream is now open
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(list(stream)) >= 4
        # once the stream is done the connection takes calls again
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA, timeout=10)


def test_max_send_bytes_limits_responses(make_bridge):
    bridge = make_bridge(max_send_bytes=2048)
    with grpc.insecure_channel(bridge.target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        stub.CreateChatCompletion(chat_request("short"), metadata=CALLER_METADATA, timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateChatCompletion(
                chat_request("word " * 1000), metadata=CALLER_METADATA, timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
