"""`serve --workers 2`: two processes, one port, one metrics endpoint, clean shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import grpc
import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from prometheus_client.parser import text_string_to_metric_families

from myrouter.chat.v1 import chat_pb2_grpc
from support import CALLER_METADATA, SERVICE_KEY, bridge_serve_argv, chat_request

pytestmark = pytest.mark.timeout(90)


class Supervisor:
    def __init__(self, upstream_url: str, *flags: str) -> None:
        self.proc = subprocess.Popen(
            bridge_serve_argv("--upstream-url", upstream_url, "--log-format", "json", *flags),
            env={**os.environ, "MYROUTER_API_KEY": SERVICE_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[dict[str, object]] = []
        self.started = threading.Event()
        self.target = ""
        self.pids: list[int] = []
        self.metrics_port = 0
        threading.Thread(target=self._read, daemon=True).start()
        assert self.started.wait(60), "supervisor did not report its workers"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            self.lines.append(entry)
            message = entry.get("message", "")
            if found := re.search(r"metrics at http://[^:]+:(\d+)", message):
                self.metrics_port = int(found.group(1))
            found = re.search(r"listening on (\S+) with \d+ workers \(pids ([\d ]+);", message)
            if found:
                self.target = found.group(1)
                self.pids = [int(pid) for pid in found.group(2).split()]
                self.started.set()
        self.started.set()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def two_workers(upstream):
    supervisor = Supervisor(
        upstream.base_url,
        *("--workers", "2", "--metrics-listen", "127.0.0.1:0", "--max-concurrent-rpcs", "50"),
    )
    yield supervisor
    if supervisor.proc.poll() is None:
        supervisor.stop()


def _scrape(port: int, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that have `labels`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_two_pids_serve_one_port_and_metrics_sum_them(two_workers):
    supervisor = two_workers
    assert len(set(supervisor.pids)) == 2
    port = int(supervisor.target.rsplit(":", 1)[1])
    for pid in supervisor.pids:  # both workers listen on the one port
        listening = [
            c
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        assert any(c.laddr.port == port for c in listening), (pid, listening)

    calls = 24
    for index in range(calls):  # a new connection each time: the kernel spreads them
        with grpc.insecure_channel(
            supervisor.target, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            metadata = (*CALLER_METADATA, ("x-request-id", f"worker-call-{index}"))
            stub.CreateChatCompletion(chat_request(), metadata=metadata, timeout=10)

    deadline = time.monotonic() + 10
    served_by: dict[str, int] = {}
    while time.monotonic() < deadline and len(served_by) < calls:
        served_by = {
            entry["request_id"]: entry["pid"]
            for entry in list(supervisor.lines)
            if str(entry.get("request_id", "")).startswith("worker-call-")
        }
        time.sleep(0.05)
    assert len(served_by) == calls
    assert set(served_by.values()) == set(supervisor.pids)

    assert supervisor.metrics_port
    assert _scrape(supervisor.metrics_port, "bridge_rpcs_total", code="OK") == calls
    genai_calls = "gen_ai_server_request_duration_seconds_count"
    assert _scrape(supervisor.metrics_port, genai_calls, error_type="") == calls
    assert _scrape(supervisor.metrics_port, "bridge_max_concurrent_rpcs") == 2 * 50

    assert supervisor.stop() == 0
    for pid in supervisor.pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_worker_that_dies_brings_the_service_down(two_workers):
    supervisor = two_workers
    os.kill(supervisor.pids[0], signal.SIGKILL)
    assert supervisor.proc.wait(timeout=30) == 1
    assert not psutil.pid_exists(supervisor.pids[1]) or (
        psutil.Process(supervisor.pids[1]).status() == psutil.STATUS_ZOMBIE
    )
