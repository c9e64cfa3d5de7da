"""`--workers N`: N bridge processes serving one port, for all the machine's cores.

One Python process runs one event loop on one core. To use them all, the
supervisor (the process started by `serve`) reserves the port with
SO_REUSEPORT and starts N worker processes that each bind it too: the kernel
spreads new connections over them (the pattern of grpc's Python
multiprocessing example). Each worker is a fresh interpreter (`spawn`, never
`fork`: gRPC's threads do not survive a fork) with its own event loop, gRPC
server and pooled HTTP client.

Signals: SIGTERM or SIGINT to the supervisor is passed on to every worker,
which drains as a single process does (health NOT_SERVING, grace, abort);
the supervisor exits 0 once all have exited cleanly. A second signal kills
the workers at once (exit 1). Workers live in their own process group, so a
Ctrl-C at a terminal reaches them once, through the supervisor; and each
watches its parent, so a supervisor killed with SIGKILL leaves no orphan.
A worker that dies on its own brings the others down (exit 1): the
orchestrator restarts the pod, rather than the pod limping on with fewer cores.

Metrics: workers write prometheus-client multiprocess files into a private
directory and the supervisor serves their sum on the metrics port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from .config import BridgeConfig

log = logging.getLogger("bridge.workers")

START_TIMEOUT_SECONDS = 60.0
PARENT_POLL_SECONDS = 1.0


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def reserve_port(listen: str) -> Iterator[int]:
    """Bind (without listening) the address with SO_REUSEPORT; yield the port.

    Holding the socket keeps the port ours (port 0 becomes a fixed one) while
    the workers bind the same address with SO_REUSEPORT.
    """
    host, port = split_listen(listen)
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def run_workers(config: BridgeConfig) -> int:
    """Supervise `config.workers` worker processes until they exit; the process exit status."""
    from .metrics import MULTIPROC_ENV, MetricsServer, multiprocess_registry
    from .tls import server_credentials, upstream_ssl_context

    server_credentials(config)  # unusable TLS files: one clear ConfigError here, not N crashes
    upstream_ssl_context(config)
    count = config.workers
    metrics_dir = tempfile.mkdtemp(prefix="bridge-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")
    ready: Any = context.Queue()
    workers: list[Any] = []
    metrics_server: MetricsServer | None = None
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) == 1:
            log.info("%s: stopping %d worker(s)", signal.Signals(signum).name, len(workers))
            _send(workers, signal.SIGTERM)
        else:
            log.warning("second signal: killing the workers now")
            _send(workers, signal.SIGKILL)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with reserve_port(config.listen) as port:
            host, _ = split_listen(config.listen)
            worker_config = dataclasses.replace(config, listen=_join(host, port))
            for index in range(count):
                process = context.Process(
                    target=_worker_main,
                    args=(worker_config, ready, os.getpid()),
                    name=f"bridge-worker-{index}",
                )
                process.start()
                workers.append(process)
            pids = _await_ready(ready, workers, count)
            if config.metrics_listen:
                registry = multiprocess_registry(metrics_dir)
                metrics_server = MetricsServer(config.metrics_listen, registry)
            if pids is not None:
                log.info(
                    "bridge listening on %s with %d workers (pids %s; upstream %s)",
                    _join(host, port),
                    count,
                    " ".join(map(str, pids)),
                    config.upstream_url,
                )
            else:
                _send(workers, signal.SIGTERM)
            failed = _supervise(workers, signals)
        return 1 if failed or pids is None or len(signals) > 1 else 0
    finally:
        _send(workers, signal.SIGKILL)
        for process in workers:
            process.join(5)
        if metrics_server is not None:
            metrics_server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _send(workers: list[Any], sig: signal.Signals) -> None:
    for process in workers:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)


def _await_ready(ready: Any, workers: list[Any], count: int) -> list[int] | None:
    """The pids of all workers once each listens; None if one died first or time ran out."""
    import queue

    pids: list[int] = []
    loop_deadline = START_TIMEOUT_SECONDS
    while len(pids) < count and loop_deadline > 0:
        try:
            pids.append(ready.get(timeout=0.25))
        except queue.Empty:
            loop_deadline -= 0.25
            if any(not process.is_alive() for process in workers):
                log.error("a worker exited during start-up; stopping")
                return None
    if len(pids) < count:
        log.error("workers did not start within %g s; stopping", START_TIMEOUT_SECONDS)
        return None
    return sorted(pids)


def _supervise(workers: list[Any], signals: list[int]) -> bool:
    """Wait for every worker to exit; True if one failed or exited on its own."""
    from prometheus_client import multiprocess

    failed = False
    alive = list(workers)
    while alive:
        multiprocessing.connection.wait([p.sentinel for p in alive], timeout=0.5)
        for process in [p for p in alive if not p.is_alive()]:
            alive.remove(process)
            multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
            if process.exitcode != 0 or not signals:
                if not failed:
                    log.error(
                        "worker %s exited with status %s; stopping the others",
                        process.pid,
                        process.exitcode,
                    )
                failed = True
                _send(alive, signal.SIGTERM)
    return failed


def _worker_main(config: BridgeConfig, ready: Any, parent: int) -> None:
    """Body of a worker process: one bridge on the shared port, until told to stop."""
    os.setpgrp()  # terminal signals go to the supervisor, which passes them on once
    from .cli import setup_logging
    from .loop import run
    from .server import serve

    setup_logging(config)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()

    def started(_: object) -> None:
        ready.put(os.getpid())

    run(serve(config, reuse_port=True, on_started=started), config.event_loop)


def _watch_parent(parent: int) -> None:
    """Stop this worker gracefully if the supervisor disappears (re-parenting changes ppid)."""
    stopped = threading.Event()
    while not stopped.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return
