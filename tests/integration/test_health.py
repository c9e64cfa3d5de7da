"""grpc.health.v1.Health over real sockets: statuses while serving and during shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

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


def _health_command(*args: str) -> subprocess.CompletedProcess[str]:
    """`myrouter-bridge health`, as a probe runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", "health", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_health_command_exits_0_and_prints_serving_for_a_serving_bridge(bridge):
    result = _health_command("--target", bridge.target)
    assert (result.returncode, result.stdout, result.stderr) == (0, "SERVING\n", "")
    per_service = _health_command("--target", bridge.target, "--service", CHAT_SERVICE_NAME)
    assert (per_service.returncode, per_service.stdout) == (0, "SERVING\n")


def test_health_command_exits_1_for_a_stopped_bridge(make_bridge):
    bridge = make_bridge()
    target = bridge.target
    bridge.stop()
    result = _health_command("--target", target, "--timeout", "3")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: UNAVAILABLE: ")


def test_health_command_exits_1_for_not_serving_and_unknown_services(make_bridge):
    bridge = make_bridge(shutdown_delay=3.0)
    stopping = threading.Thread(target=bridge.stop)
    stopping.start()  # health turns NOT_SERVING for shutdown_delay while the listener stays
    try:
        deadline = time.monotonic() + 10
        result = _health_command("--target", bridge.target)
        while result.stdout != "NOT_SERVING\n" and time.monotonic() < deadline:
            result = _health_command("--target", bridge.target)
        assert (result.returncode, result.stdout) == (1, "NOT_SERVING\n")
    finally:
        stopping.join(30)


def test_health_command_speaks_tls_and_mtls(make_bridge, certs, tmp_path):
    bridge = make_bridge(
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.client_ca_file,
    )
    key, chain = certs.client_pair(certs.client_ca)
    (tmp_path / "c.key").write_bytes(key)
    (tmp_path / "c.pem").write_bytes(chain)
    tls = ("--target", bridge.target, "--ca-file", str(certs.server_ca_file))
    mtls = (*tls, "--cert-file", str(tmp_path / "c.pem"), "--key-file", str(tmp_path / "c.key"))
    assert _health_command(*mtls).stdout == "SERVING\n"
    refused = _health_command(*tls)
    assert refused.returncode == 1
    assert "add --cert-file FILE --key-file FILE" in refused.stderr
