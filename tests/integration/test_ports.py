"""One bridge per port: a second `serve` on a held port refuses, in one line, with status 2.

Real processes on loopback: a first bridge (or a foreign socket) holds the
port, then `myrouter-bridge serve` is started on it with 1 and 2 workers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2
from support import CALLER_METADATA, SERVICE_KEY, BridgeProcess, free_port, stub_for

pytestmark = pytest.mark.timeout(90)


def _serve(*flags: str) -> subprocess.CompletedProcess[str]:
    """`serve` expected to fail at start-up; its stderr and status."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--upstream-url", "http://127.0.0.1:9", *flags],
        env={**os.environ, "MYROUTER_API_KEY": SERVICE_KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if '"level"' not in line]


def _assert_refused(result: subprocess.CompletedProcess[str], address: str, why: str) -> None:
    assert result.returncode == 2, result.stderr
    assert _error_lines(result) == [f"error: cannot listen on {address}: {why}"], result.stderr


def _models(target: str) -> None:
    channel, stub = stub_for(target)
    with channel:
        stub.ListModels(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA, timeout=10)


def _two_workers_bridge(upstream: Any, port: int) -> BridgeProcess:
    return BridgeProcess(
        "--upstream-url",
        upstream.base_url,
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        env={"MYROUTER_API_KEY": SERVICE_KEY},
    )


@pytest.fixture
def held_by_workers(upstream):
    port = free_port()
    bridge = _two_workers_bridge(upstream, port)
    deadline = time.monotonic() + 30  # the first worker's line came; now the supervisor's
    while "with 2 workers (pids" not in bridge.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield bridge, port
    bridge.kill()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_bridge_on_a_port_a_two_worker_bridge_serves_refuses(held_by_workers, workers):
    bridge, port = held_by_workers
    result = _serve("--listen", f"127.0.0.1:{port}", "--workers", workers)
    if workers == "2":  # the lock names the holder: the first bridge's supervisor
        why = f"another bridge (pid {bridge.proc.pid}) serves this port"
    else:
        why = "address already in use (another process holds the port)"
    _assert_refused(result, f"127.0.0.1:{port}", why)
    for _ in range(8):  # every call still reaches the first bridge's workers
        _models(f"127.0.0.1:{port}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bridge_refuses_a_port_a_single_process_bridge_serves(start_bridge_process, workers):
    first = start_bridge_process()
    result = _serve("--listen", first.target, "--workers", workers)
    _assert_refused(result, first.target, "address already in use (another process holds the port)")
    _models(first.target)


def test_workers_refuse_a_port_that_a_foreign_reuseport_listener_holds():
    """The case SO_REUSEPORT alone lets through: same user, option set, not a bridge."""
    with socket.socket() as foreign:
        foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        address = f"127.0.0.1:{foreign.getsockname()[1]}"
        result = _serve("--listen", address, "--workers", "2")
    _assert_refused(result, address, "address already in use (another process holds the port)")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_metrics_port_is_one_line_naming_it(workers):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        result = _serve(
            "--listen", "127.0.0.1:0", "--workers", workers, "--metrics-listen", address
        )
    _assert_refused(result, address, "address already in use (another process holds the port)")


def test_an_address_not_on_this_machine_is_one_line():
    result = _serve("--listen", "192.0.2.1:0", "--workers", "1")
    _assert_refused(result, "192.0.2.1:0", "no such address on this machine")


def test_the_port_is_free_again_once_the_workers_bridge_stops(held_by_workers, upstream):
    bridge, port = held_by_workers
    bridge.send_signal(15)
    assert bridge.wait(30) == 0
    again = _two_workers_bridge(upstream, port)
    try:
        _models(f"127.0.0.1:{port}")
    except grpc.RpcError as exc:  # pragma: no cover - the assertion's message
        pytest.fail(f"the restarted bridge does not answer: {exc}")
    finally:
        again.kill()
