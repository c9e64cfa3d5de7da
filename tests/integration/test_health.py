"""grpc.health.v1.Health over real sockets: statuses while serving and during shutdown."""

from __future__ import annotations

import signal
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bridge.server import CHAT_SERVICE_NAME
from myrouter.chat.v1 import chat_pb2_grpc
from support import CALLER_METADATA, chat_request, with_scenario

pytestmark = pytest.mark.timeout(60)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(channel: grpc.Channel, service: str = ""):
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_serving_overall_and_per_service(channel):
    assert _check(channel) == SERVING
    assert _check(channel, CHAT_SERVICE_NAME) == SERVING


def test_unknown_service_is_not_found(channel):
    with pytest.raises(grpc.RpcError) as caught:
        _check(channel, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_sends_the_current_status_first(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=CHAT_SERVICE_NAME), timeout=5)
    assert next(watch).status == SERVING
    watch.cancel()


def test_stop_turns_not_serving_before_the_listener_goes(make_bridge):
    """With a shutdown delay, Check answers NOT_SERVING while calls are still accepted."""
    bridge = make_bridge(shutdown_delay=1.5)
    with grpc.insecure_channel(bridge.target) as channel:
        assert _check(channel) == SERVING
        stopper = threading.Thread(target=bridge.stop)
        stopper.start()
        try:
            statuses = set()
            for _ in range(50):
                statuses.add(_check(channel))
                if NOT_SERVING in statuses:
                    break
                threading.Event().wait(0.02)
            assert NOT_SERVING in statuses
            assert _check(channel, CHAT_SERVICE_NAME) == NOT_SERVING
        finally:
            stopper.join(10)


def test_sigterm_not_serving_while_an_inflight_stream_completes(start_bridge_process):
    proc = start_bridge_process()
    with grpc.insecure_channel(proc.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert next(watch).status == SERVING

        chat = chat_pb2_grpc.ChatServiceStub(channel)
        request = with_scenario(chat_request(), chunks=8, chunk_delay=0.15)
        stream = chat.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=20)
        first = next(stream)
        assert first.choices

        proc.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        rest = list(stream)  # the in-flight stream still completes, OK
        assert stream.code() == grpc.StatusCode.OK
        text = "".join(c.delta.content for chunk in [first, *rest] for c in chunk.choices)
        assert text.count("tok") == 8
        assert list(watch) == []  # the watch ends so it cannot hold the drain
    assert proc.wait(timeout=15) == 0
