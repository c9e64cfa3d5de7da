"""gRPC connection settings, seen from a real client over a real socket."""

from __future__ import annotations

import time

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2_grpc
from support import CALLER_METADATA, chat_request, with_scenario

pytestmark = pytest.mark.timeout(60)


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
