"""`--workers N`: N bridge processes serving one port, for all the machine's cores.

One Python process runs one event loop on one core. To use them all, the
supervisor (the process started by `serve`) claims the port (bridge/ports:
a lock, a check that no one holds it, then a SO_REUSEPORT socket of its own)
and starts N worker processes that each bind it too: the kernel
spreads new connections over them (the pattern of grpc's Python
multiprocessing example). Each worker is a fresh interpreter (a new program,
never a `fork`: gRPC's threads do not survive a fork) with its own event loop,
gRPC server and pooled HTTP client.

Signals: SIGTERM or SIGINT to the supervisor is passed on to every worker,
which drains as a single process does (health NOT_SERVING, grace, abort);
the supervisor exits 0 once all have exited cleanly. A second signal kills
the workers at once (exit 1). Workers live in their own process group, so a
Ctrl-C at a terminal reaches them once, through the supervisor; and each
watches its parent, so a supervisor killed with SIGKILL leaves no orphan.
A worker that dies on its own brings the others down (exit 1): the
orchestrator restarts the pod, rather than the pod limping on with fewer cores.

Metrics: workers write prometheus-client multiprocess files into a private
directory and the supervisor serves their sum on the metrics port; a worker is
told explicitly not to serve its own (`serve(..., serve_metrics=False)`).

A worker is a plain `subprocess` running `worker_main`, not a
`multiprocessing.Process`, because prometheus-client switches to its
multiprocess mode only through the environment variable PROMETHEUS_MULTIPROC_DIR,
read in the worker itself: `subprocess` can give that variable to the worker
alone (``env=``), where `multiprocessing` would take it from this process's own
environment, which no module of the bridge writes. The worker's
configuration, the service key included, travels pickled on its stdin, never in
its argv or environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

from .config import BridgeConfig
from .ports import BindError, claim_for_workers

__all__ = ["WorkerJob", "run_workers", "worker_main"]

log = logging.getLogger("bridge.workers")

START_TIMEOUT_SECONDS = 60.0
PARENT_POLL_SECONDS = 1.0
SUPERVISE_POLL_SECONDS = 0.1

# The worker's first statements: take the supervisor's import path (as multiprocessing's
# spawn does), then read and run its job. Two pickles, since unpickling the job needs
# the path in place first.
_BOOTSTRAP = (
    "import pickle, sys\n"
    "sys.path[:] = pickle.load(sys.stdin.buffer)\n"
    f"from {__name__} import worker_main\n"
    "worker_main(pickle.load(sys.stdin.buffer))\n"
)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerJob:
    """What a worker process is told, on its stdin, by the supervisor."""

    config: BridgeConfig
    """The supervisor's config with the port it reserved, so that every worker binds it."""
    ready_fd: int
    """The write end of a pipe: the worker writes its pid there once it listens."""
    parent: int
    """The supervisor's pid: a worker whose parent changes stops (see `_watch_parent`)."""


def run_workers(config: BridgeConfig) -> int:
    """Supervise `config.workers` worker processes until they exit; the process exit status."""
    from .metrics import MULTIPROC_ENV, MetricsServer, multiprocess_registry
    from .policy import load_policy
    from .server import transport_security
    from .tls import server_credentials, upstream_ssl_context

    server_credentials(config)  # unusable TLS files: one clear ConfigError here, not N crashes
    upstream_ssl_context(config)
    if config.policy_file is not None:
        load_policy(config.policy_file)  # a bad policy file: PolicyError (a ConfigError) here
    count = config.workers
    metrics_dir = tempfile.mkdtemp(prefix="bridge-metrics-")
    # prometheus-client reads this variable when it is imported (to choose its
    # multiprocess mode) and at every new metric (for the directory): the library has
    # no other switch. So it goes into the workers' environment alone, at spawn.
    worker_env = {**os.environ, MULTIPROC_ENV: metrics_dir}
    ready_read, ready_write = os.pipe()
    workers: list[subprocess.Popen[bytes]] = []
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
        with claim_for_workers(config.listen) as bound:
            job = WorkerJob(dataclasses.replace(config, listen=bound), ready_write, os.getpid())
            if config.metrics_listen:  # before the workers: a busy port stops us at once
                try:
                    metrics_server = MetricsServer(
                        config.metrics_listen, multiprocess_registry(metrics_dir)
                    )
                except OSError as exc:
                    raise BindError.of(config.metrics_listen, exc) from None
            for _ in range(count):
                workers.append(_spawn(job, worker_env))
            os.close(ready_write)  # the workers hold it now: EOF once they all have gone
            ready_write = -1
            pids = _await_ready(ready_read, workers, count)
            if pids is not None:
                log.info(
                    "bridge listening on %s with %d workers (pids %s; %s; upstream %s)",
                    bound.text,
                    count,
                    " ".join(map(str, pids)),
                    transport_security(config),
                    config.upstream_url,
                )
            else:
                _send(workers, signal.SIGTERM)
            failed = _supervise(workers, signals, metrics_dir)
        return 1 if failed or pids is None or len(signals) > 1 else 0
    finally:
        _send(workers, signal.SIGKILL)
        for process in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        if metrics_server is not None:
            metrics_server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for fd in (ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _spawn(job: WorkerJob, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start one worker, in its own process group, and hand it its job on stdin."""
    process = subprocess.Popen(
        [sys.executable, "-c", _BOOTSTRAP],
        stdin=subprocess.PIPE,
        env=env,
        pass_fds=(job.ready_fd,),
        # Terminal signals (Ctrl-C) go to the supervisor, which passes them on once.
        process_group=0,
    )
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # died at once: _await_ready reports it
        process.stdin.write(pickle.dumps(sys.path) + pickle.dumps(job))
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    return process


def _send(workers: list[subprocess.Popen[bytes]], sig: signal.Signals) -> None:
    for process in workers:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)


def _await_ready(
    ready: int, workers: list[subprocess.Popen[bytes]], count: int
) -> list[int] | None:
    """The pids of all workers once each listens; None if one died first or time ran out."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    pids: list[int] = []
    received = b""
    while len(pids) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("workers did not start within %g s; stopping", START_TIMEOUT_SECONDS)
            return None
        readable, _, _ = select.select([ready], [], [], min(remaining, 0.25))
        if readable:
            chunk = os.read(ready, 4096)
            if not chunk:  # every worker closed its end: those that have not reported died
                log.error("a worker exited during start-up; stopping")
                return None
            *lines, received = (received + chunk).split(b"\n")
            pids += [int(line) for line in lines]
        elif any(process.poll() is not None for process in workers):
            log.error("a worker exited during start-up; stopping")
            return None
    return sorted(pids)


def _supervise(
    workers: list[subprocess.Popen[bytes]], signals: list[int], metrics_dir: str
) -> bool:
    """Wait for every worker to exit; True if one failed or exited on its own."""
    from prometheus_client import multiprocess

    failed = False
    alive = list(workers)
    while alive:
        time.sleep(SUPERVISE_POLL_SECONDS)
        for process in [p for p in alive if p.poll() is not None]:
            alive.remove(process)
            multiprocess.mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
            if process.returncode != 0 or not signals:
                if not failed:
                    log.error(
                        "worker %s exited with status %s; stopping the others",
                        process.pid,
                        process.returncode,
                    )
                failed = True
                _send(alive, signal.SIGTERM)
    return failed


def worker_main(job: WorkerJob) -> None:
    """Body of a worker process: one bridge on the shared port, until told to stop."""
    from .logs import setup_logging
    from .loop import run
    from .server import serve

    setup_logging(job.config)
    threading.Thread(target=_watch_parent, args=(job.parent,), daemon=True).start()

    def started(_: object) -> None:
        os.write(job.ready_fd, b"%d\n" % os.getpid())
        os.close(job.ready_fd)

    server = serve(job.config, reuse_port=True, serve_metrics=False, on_started=started)
    run(server, job.config.event_loop)


def _watch_parent(parent: int) -> None:
    """Stop this worker gracefully if the supervisor disappears (re-parenting changes ppid)."""
    stopped = threading.Event()
    while not stopped.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return
