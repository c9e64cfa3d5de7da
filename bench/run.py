"""`make bench`: the bridge against the direct-HTTP baseline, side by side, in one run.

Processes (all on this machine, loopback only):

* one embedded upstream (``python -m myrouter_upstream``), in fast mode: each
  request names its scenario (``chunks``, no delay), so the direct client and
  the bridge read byte-identical streams from the same server;
* the bridge (``python -m bridge serve``), a separate process;
* for each measurement, a fresh load-generator process (``bench/load.py``):
  httpx against the upstream (direct) or grpc.aio against the bridge; or, where
  a Python client would bound the figure, the compiled one (``bench/goload``,
  Go, built here from Debian's packages; its rows are skipped, saying why, when
  the toolchain is missing).

Phases: the pairs (closed loop: unary latency and capacity, streaming chunks/s,
time to first chunk, each direct / bridge / floor; the streams also through the
batched RPC against the batched floor, and in bursts of 16 events a write), unary
latency in open loop at half the bridge's measured capacity, the saturation
streams again with the compiled client (each variant against its RPC's floor),
the open loop (thousands of streams paced by the upstream, latency per chunk from
the upstream's stamps, the bridge's CPU per chunk over the steady window),
capacity (RSS of 2,000 open streams), scale (`--workers`), and callers: what a caller
policy (in process, on Redis) and today's retries add, bridges side by side
(``--only callers`` runs that phase alone, about 65-70 s).

For every phase the harness records the CPU share of each process (client,
bridge, upstream), so a reader can see which one bounded the figure and that
the load generator was not the bottleneck. Prints Markdown tables and writes
the same figures as JSON (``--json``, default ``bench/results.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MYROUTER_API_KEY": "bench-service-key"}

UNARY_SCENARIO = {"chunks": 16}
STREAM_CHUNKS = 500
STREAM_SCENARIO = {"chunks": STREAM_CHUNKS, "batch": 1}
BURST_SCENARIO = {"chunks": STREAM_CHUNKS, "batch": 16}
"""The same answer in bursts of 16 events a socket write (the last write the rest): what a
relay reads from an upstream that flushes several tokens at once (a model emitting a few
tokens per step, a proxy or CDN buffering a few KiB). 16 events (~2.5 KiB) fill no 16 KiB
read, so every read still ends on whole writes; and at 16 chunks a message the batched
RPC's cost per message (~20 µs of grpc.aio) falls below its cost per chunk (~3.5 µs of
parsing and mapping), so larger bursts would change little."""
TTFC_SCENARIO = {"chunks": 4, "batch": 1}
HOLD_SCENARIO = {"chunks": 120, "chunk_delay": 1.0}
"""Two minutes of one chunk a second: the upstream renders a whole answer up front."""
BRIDGE_SETTINGS = (
    # Room for the 2,000-stream capacity test (defaults: 1,000 each).
    "--max-upstream-connections",
    "4096",
    "--max-concurrent-rpcs",
    "4096",
    "--log-level",
    "WARNING",
)
"""The bridge's `serve` flags in every phase; the floor gets them too (same gRPC server)."""
VERSIONS = ("grpcio", "protobuf", "httpx", "aiohttp", "orjson", "uvloop", "psutil")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One of the bridge's streaming RPCs, as the open-loop and saturation phases drive
    it: `rpc` is the load clients' ``--rpc`` (`bench.load.RPCS`, and goload's `rpcs`),
    `flags` any further client options (a caller-chosen delay, say), `cores_target`
    the most bridge cores per 1,000 streams at 50 chunks/s it should need."""

    name: str
    rpc: str
    flags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cores_target: float | None = None


VARIANTS: Final[tuple[Variant, ...]] = (
    Variant("per_event", "per_event", cores_target=1.25),
    Variant("batches_0", "batches", {"max_delay": "0"}),
    Variant("batches_100ms", "batches", {"max_delay": "0.1"}, cores_target=0.6),
)
"""The bridge side of the open-loop and compiled-client saturation phases runs once per
variant; each gets its own rows (a new RPC is one more entry, plus its ``--rpc`` in
both clients)."""
PAIR_VARIANTS: Final[tuple[Variant, ...]] = tuple(
    variant for variant in VARIANTS if variant.name in ("per_event", "batches_0")
)
"""The variants the pairs' streaming phases run with the Python client (``batches_100ms``
is left out for time: at these rates its wait changes little but what a message holds).
The per-event one keeps the pairs' historical side name ``bridge``."""
BATCHED_FLOOR: Final = "floor_batches"
"""The side that calls the floor's StreamChatCompletionBatches: the floor of every
variant whose RPC is ``batches``, replaying messages grouped as the upstream writes."""


@dataclasses.dataclass(frozen=True)
class OpenLoop:
    """`streams` streams at once, each paced by the upstream at `rate` chunks/s."""

    streams: int
    rate: float
    p99_target_ms: float | None = None
    """The most latency per chunk the bridge may add at p99 (ms)."""
    clients: tuple[str, ...] = ("go", "python")
    """The load clients that run it by default (a shape given by --open-loop runs with all)."""

    @property
    def label(self) -> str:
        return f"{self.streams}x{self.rate:g}"

    @classmethod
    def parse(cls, text: str) -> OpenLoop:
        """``"1000x20"``; a default shape's label keeps its target."""
        for shape in OPEN_LOOPS:
            if shape.label == text:
                return shape
        streams, _, rate = text.partition("x")
        try:
            shape = cls(int(streams), float(rate))
        except ValueError:
            shape = cls(0, 0.0)
        if shape.streams < 1 or not (math.isfinite(shape.rate) and shape.rate > 0):
            raise argparse.ArgumentTypeError(f"{text!r} is not STREAMSxRATE, e.g. 1000x20")
        return shape

    @property
    def offered(self) -> float:
        return self.streams * self.rate


OPEN_LOOPS: Final[tuple[OpenLoop, ...]] = (
    OpenLoop(1000, 20, p99_target_ms=5.0),
    OpenLoop(2000, 10, clients=("go",)),
    OpenLoop(400, 50, clients=("go",)),
)
"""The issue's two shapes, and the sizing figure's own rate: at 50 chunks/s per stream a
bounded wait gathers what it would in production (5 chunks per 100 ms); 20,000 chunks/s
in all, as the other two offer, since CPU per chunk depends on the load (an idle loop
pays its wake-ups per event: 77-83 µs per chunk at 200 x 50 against ~50 at 400 x 50).
The Python client runs the first alone (its rows are what Python callers see; past
20,000 chunks/s it lags by itself, see "fell behind")."""


def open_loops_of(client: str) -> tuple[OpenLoop, ...]:
    """The default open-loop shapes `client` runs."""
    return tuple(shape for shape in OPEN_LOOPS if client in shape.clients)


COST_RATE: Final = 50.0
"""Chunks/s per stream of the sizing figure "bridge cores per 1,000 streams"."""
KEPT_UP: Final = 0.98
"""Delivered / offered chunks/s at or above which a side kept up with the open loop."""
LAG_LIMIT_MS: Final = 5.0
"""A client whose own lag (p99) exceeds this fell behind: its latencies are its own."""
CLIENT_SATURATED: Final = 0.9
"""Cores of CPU at or above which a client is the bound of what it received."""
GOLOAD: Final = ROOT / "bench" / "goload"
GO_TOOLS: Final = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
GO_SOURCES: Final = (
    "google.golang.org/grpc",
    "google.golang.org/protobuf",
    "github.com/golang/protobuf",
)


@dataclasses.dataclass(frozen=True)
class Client:
    """A load generator's command, up to its mode: bench/load.py or bench/goload."""

    name: str
    command: tuple[str, ...]


PYTHON_CLIENT: Final = Client("python", (PY, str(ROOT / "bench" / "load.py")))


def client_argv(
    client: Client, mode: str, target: str, scenario: Mapping[str, Any], **options: Any
) -> list[str]:
    """Both clients share one command line: MODE --target --scenario JSON --key value..."""
    argv = [*client.command, mode, "--target", target, "--scenario", json.dumps(scenario)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The compiled client, or why there is none."""

    client: Client | None
    reason: str = ""


def goload_missing() -> list[str]:
    """What bench/goload/build.sh needs and this machine lacks (Debian's Go packages)."""
    missing = [tool for tool in GO_TOOLS if shutil.which(tool) is None]
    return missing + [
        source for source in GO_SOURCES if not (Path("/usr/share/gocode/src") / source).is_dir()
    ]


def build_goload(build: Path = GOLOAD / "gen") -> Compiled:
    """bench/goload/build.sh (seconds with a warm Go cache), or the reason it cannot run."""
    missing = goload_missing()
    if missing:
        return Compiled(
            None,
            f"Go toolchain or sources missing ({', '.join(missing)}; .ci/run installs them)",
        )
    done = subprocess.run(
        ["bash", str(GOLOAD / "build.sh"), str(build)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return Compiled(None, f"bench/goload/build.sh failed: {done.stderr.strip()[-300:]}")
    return Compiled(Client("go", (str(build / "bin" / "goload"),)))


# --------------------------------------------------------------------------- #
# Processes
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    address: str

    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def cpu(self) -> float:
        """CPU seconds of the process and its children (workers)."""
        try:
            proc = self.ps()
            total = sum(proc.cpu_times()[:2])
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += sum(child.cpu_times()[:2])
            return total
        except psutil.Error:
            return 0.0

    def rss(self) -> int:
        proc = self.ps()
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


Cpus = frozenset[int] | None
"""The cores a process may run on; None leaves it to the scheduler."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Which cores the pairs run on: `tested` for the process a figure measures (the
    bridge, the floor, or the direct client), `load` for the others (the upstream, and
    the client of the bridge and the floor). Both None: no pinning."""

    tested: Cpus = None
    load: Cpus = None

    @classmethod
    def for_machine(cls, pin: bool) -> Placement:
        cores = sorted(os.sched_getaffinity(0))
        if not pin or len(cores) < 2:
            return cls()
        return cls(tested=frozenset(cores[:1]), load=frozenset(cores[1:]))


def _on(cpus: Cpus) -> Callable[[], None] | None:
    """A `preexec_fn` that confines the child (and every thread it starts) to `cpus`."""
    if cpus is None:
        return None
    return functools.partial(os.sched_setaffinity, 0, cpus)


def _announced(name: str, argv: list[str], pattern: str, cpus: Cpus) -> Server:
    """Start a server that prints its address on its first line; `pattern` finds it."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, env=ENV, cwd=ROOT, preexec_fn=_on(cpus)
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(pattern, line)
    if not match:
        process.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return Server(name, process, match.group(1))


def start_upstream(cpus: Cpus = None) -> Server:
    # The bench reads no recording: keep just a few, or millions of records would grow
    # the upstream's heap, and its full garbage collections (100-230 ms by the end of a
    # run) would stall whichever side it was serving.
    argv = [PY, "-m", "myrouter_upstream", "--port", "0", "--max-records", "100"]
    upstream = _announced("upstream", argv, r"(http://\S+)", cpus)
    upstream.address += "/"
    return upstream


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_bridge(
    upstream: Server, *extra: str, workers: int = 1, cpus: Cpus = None, root: Path = ROOT
) -> Server:
    """A bridge process; one worker unless asked (the per-process figures need one).
    Its code comes from `root`: this tree, or another one to compare with."""
    port = _free_port()
    process = subprocess.Popen(
        [
            PY,
            "-m",
            "bridge",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream-url",
            upstream.address,
            *BRIDGE_SETTINGS,
            *(["--workers", str(workers)] if bridge_has_workers() else []),
            *extra,
        ],
        env=ENV if root == ROOT else {**ENV, "PYTHONPATH": str(root)},
        cwd=root,
        preexec_fn=_on(cpus),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bridge exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            time.sleep(0.3)  # all workers up, not only the first
            name = "bridge" if root == ROOT else f"bridge@{root.name}"
            return Server(name, process, f"127.0.0.1:{port}")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("bridge did not listen within 30 s")


def floor_argv(upstream_url: str) -> list[str]:
    """The floor's command line: its answers to the bench's scenarios are fetched before
    it listens, so no phase, even without warm-up, measures an upstream call through it."""
    prefetch = [
        arg
        for scenario in (UNARY_SCENARIO, STREAM_SCENARIO, BURST_SCENARIO, TTFC_SCENARIO)
        for arg in ("--prefetch", json.dumps(scenario))
    ]
    return [PY, str(ROOT / "bench" / "floor.py"), "--upstream-url", upstream_url, *prefetch]


def start_floor(upstream: Server, cpus: Cpus = None) -> Server:
    """The grpc.aio floor (bench/floor.py): the bridge's gRPC server replaying its messages."""
    argv = [*floor_argv(upstream.address), *BRIDGE_SETTINGS]
    return _announced("floor", argv, r"listening on (\S+)", cpus)


@functools.cache
def bridge_has_workers() -> bool:
    out = subprocess.run(
        [PY, "-m", "bridge", "serve", "--help"], capture_output=True, env=ENV, cwd=ROOT, check=True
    ).stdout.decode()
    return "--workers" in out


def load(
    mode: str,
    target: str,
    scenario: dict[str, Any],
    clients: int = 1,
    cpus: Cpus = None,
    servers: Sequence[Server] = (),
    **options: Any,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run `clients` load-generator processes at once (concurrency split between them);
    their merged result, and each of `servers`' CPU share (cores) over the window.

    The processes start together with the same warm-up and duration, so the first
    one's window edges (``{"window": ...}`` lines) stand for all of them: the
    servers' CPU is read at those moments, without the start-up, the warm-up or
    the teardown (the clients cancel what is in flight when the window ends).
    """
    if "concurrency" in options:
        options["concurrency"] = max(1, int(options["concurrency"]) // clients)
    argv = client_argv(PYTHON_CLIENT, mode, target, scenario, **options)
    with contextlib.ExitStack() as files:
        errs = [files.enter_context(tempfile.TemporaryFile()) for _ in range(clients)]
        procs = [
            subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, env=ENV, cwd=ROOT, preexec_fn=_on(cpus)
            )
            for err in errs
        ]
        edges: dict[str, tuple[float, dict[str, float]]] = {}
        outputs: list[list[str]] = []
        for index, proc in enumerate(procs):
            assert proc.stdout is not None
            lines: list[str] = []
            for line in proc.stdout:
                lines.append(line)
                if index == 0 and b'"window"' in line:
                    edge = json.loads(line)["window"]
                    edges[edge] = (time.perf_counter(), {s.name: s.cpu() for s in servers})
            proc.wait(180)
            if proc.returncode != 0:
                errs[index].seek(0)
                tail = errs[index].read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{mode} failed: {tail}")
            outputs.append(lines)
    results = [json.loads(lines[-1]) for lines in outputs]
    merged = dict(results[0])
    for other in results[1:]:
        for key in ("count", "cpu", "errors"):
            merged[key] += other[key]
        merged["lat_ms"] = merged.get("lat_ms", []) + other.get("lat_ms", [])
        merged["seconds"] = max(merged["seconds"], other["seconds"])
    shares: dict[str, float] = {}
    if set(edges) == {"start", "end"}:
        (t0, before), (t1, after) = edges["start"], edges["end"]
        shares = {name: (after[name] - before[name]) / (t1 - t0) for name in before}
    return merged, shares


def windowed(
    client: Client,
    mode: str,
    target: str,
    scenario: Mapping[str, Any],
    servers: list[Server],
    cpus: Cpus = None,
    **options: Any,
) -> dict[str, Any]:
    """One load-generator process that prints its window's edges (``{"window": "start"}``,
    ``{"window": "end"}``): the servers' CPU is read at those moments, so a figure per
    chunk covers the steady state only (no ramp, no warm-up, no teardown)."""
    argv = client_argv(client, mode, target, scenario, **options)
    edges: dict[str, tuple[float, dict[str, float]]] = {}
    result: dict[str, Any] | None = None
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, env=ENV, cwd=ROOT, preexec_fn=_on(cpus)
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                message = json.loads(line)
                if "window" in message:
                    edges[message["window"]] = (
                        time.perf_counter(),
                        {server.name: server.cpu() for server in servers},
                    )
                else:
                    result = message
            process.wait(120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if process.returncode != 0 or result is None or set(edges) != {"start", "end"}:
        raise RuntimeError(f"{client.name} {mode} failed ({process.returncode}): {errors[-2000:]}")
    (t0, before), (t1, after) = edges["start"], edges["end"]
    server_cpu = {name: after[name] - before[name] for name in before}
    return summarize(result, server_cpu, t1 - t0)


def summarize(
    result: Mapping[str, Any], server_cpu: Mapping[str, float], wall: float
) -> dict[str, Any]:
    """A windowed client's result with the servers' CPU seconds over the same window:
    rate, CPU shares (cores), latency and client-lag percentiles."""
    seconds = float(result["seconds"])
    count = int(result["count"])
    out: dict[str, Any] = {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds if seconds > 0 else 0.0,
        "errors": result["errors"],
        "cpu_seconds": {"client": result["cpu"], **server_cpu},
        "cpu": {
            "client": result["cpu"] / seconds if seconds > 0 else 0.0,
            **{name: cpu / wall if wall > 0 else 0.0 for name, cpu in server_cpu.items()},
        },
        "latency": latency_summary(result.get("lat_ms") or []),
        "lag": latency_summary(result.get("lag_ms") or []),
    }
    if result["errors"]:
        out["first_error"] = result["first_error"]
    return out


def latency_summary(values: list[float]) -> dict[str, float | int]:
    """min, p50, p99, p99.9 and max (ms) of `values`, and how many there were."""
    return {
        "samples": len(values),
        "min_ms": min(values) if values else float("nan"),
        "p50_ms": percentile(values, 0.50),
        "p99_ms": percentile(values, 0.99),
        "p999_ms": percentile(values, 0.999),
        "max_ms": max(values) if values else float("nan"),
    }


@contextlib.contextmanager
def cpu_window(servers: list[Server]) -> Iterator[dict[str, float]]:
    """CPU share (cores) of each server process over the block."""
    shares: dict[str, float] = {}
    before = {server.name: server.cpu() for server in servers}
    start = time.perf_counter()
    yield shares
    seconds = time.perf_counter() - start
    for server in servers:
        shares[server.name] = (server.cpu() - before[server.name]) / seconds


# --------------------------------------------------------------------------- #
# Phases
# --------------------------------------------------------------------------- #


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure(
    mode: str,
    target: str,
    scenario: dict[str, Any],
    servers: list[Server],
    clients: int = 1,
    label: str = "",
    cpus: Cpus = None,
    **options: Any,
) -> dict[str, Any]:
    """One load phase; `label` names it in the progress line (default: the client mode)."""
    result, shares = load(mode, target, scenario, clients, cpus, servers, **options)
    latencies = result.pop("lat_ms", [])
    out: dict[str, Any] = {
        "mode": mode,
        "options": options,
        "clients": clients,
        "rate": result["count"] / result["seconds"],
        "count": result["count"],
        "errors": result["errors"],
        "cpu": {"client": result["cpu"] / result["seconds"], **shares},
    }
    if result["errors"]:
        out["first_error"] = result["first_error"]
    if latencies or not mode.startswith(("stream", "hold")):
        # A latency mode with no sample (no call answered in the window) reads nan.
        out["p50_ms"] = percentile(latencies, 0.50)
        out["p99_ms"] = percentile(latencies, 0.99)
        out["samples"] = len(latencies)
    note = f"{label or mode:14} {options} x{clients} client(s): {out['rate']:9.0f}/s"
    if latencies:
        note += f"  p50 {out['p50_ms']:.3f} ms  p99 {out['p99_ms']:.3f} ms"
    cpu = "  ".join(f"{k} {v:.2f}" for k, v in out["cpu"].items())
    print(f"  {note}  cpu[{cpu}]  errors {out['errors']}", file=sys.stderr, flush=True)
    return out


def median_run(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (a real run: its CPU shares are its own), plus every
    round's rate under ``rounds``."""
    ordered = sorted(entries, key=lambda entry: entry["rate"])
    return {**ordered[(len(ordered) - 1) // 2], "rounds": [entry["rate"] for entry in entries]}


@dataclasses.dataclass(frozen=True)
class Side:
    """One side of a comparison: the load client's mode suffix (``direct`` or
    ``bridge``: the bridge's and the floor's clients are one), whom it calls, on which
    cores, and its further options (``--rpc`` and the variant's flags)."""

    name: str
    client: str
    target: str
    cpus: Cpus
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


FLOOR_SIDES: Final = {"per_event": "floor", "batches": BATCHED_FLOOR}
"""The floor side each streaming RPC is read against: the per-event floor replays one
chunk a message; the batched one (the floor's StreamChatCompletionBatches) replays the
chunks grouped as the upstream writes them."""


def variant_sides(
    bridge: Server,
    floor: Server,
    variants: tuple[Variant, ...],
    cpus: Cpus,
    per_event: str = "per_event",
) -> list[Side]:
    """Each variant against the bridge (the per-event one named `per_event`), then the
    floor of each RPC they use, every one called alike: the bridge's client."""
    sides = [
        Side(
            per_event if variant.rpc == "per_event" else variant.name,
            "bridge",
            bridge.address,
            cpus,
            {"rpc": variant.rpc, **variant.flags},
        )
        for variant in variants
    ]
    for rpc in dict.fromkeys(variant.rpc for variant in variants):
        sides.append(Side(FLOOR_SIDES[rpc], "bridge", floor.address, cpus, {"rpc": rpc}))
    return sides


@dataclasses.dataclass(frozen=True)
class StreamShape:
    """How the upstream writes the saturation streams' events: `key` names the pairs'
    entry in the results, `sides` the pairs' sides it runs (None: all of them)."""

    key: str
    scenario: Mapping[str, Any]
    sides: tuple[str, ...] | None = None

    def runs(self, side: str) -> bool:
        return self.sides is None or side in self.sides

    @property
    def per_event_floor(self) -> bool:
        """Whether this shape measures the per-event floor. It replays the same messages
        whatever the upstream's writes, so the first shape's serves all of them."""
        return self.runs("floor")

    @property
    def batch(self) -> int:
        """Events per upstream write."""
        return int(self.scenario.get("batch", 1))

    @property
    def suffix(self) -> str:
        """What this shape adds to its rows' labels: nothing at one event a write (the
        historical rows)."""
        return "" if self.batch == 1 else f", {self.batch} events per upstream write"


STREAM_SHAPES: Final = (
    StreamShape("stream", STREAM_SCENARIO),
    # The per-event RPC in bursts is left out for time (+5 runs, ~25 s): add "bridge".
    StreamShape("stream_bursts", BURST_SCENARIO, ("direct", "batches_0", BATCHED_FLOOR)),
)
"""The pairs' saturation streams: the first shape holds the historical rows (direct,
per-event bridge and floor, one event per upstream write) and the batched RPC beside
them; the second the batched RPC in bursts."""
HISTORICAL_SIDES: Final = ("direct", "bridge", "floor")
"""The pairs' sides before the batched RPC: with one event per write they keep
``--rounds``; every other streaming side runs ``--batch-rounds``."""


def pair_rounds(args: argparse.Namespace, shape: StreamShape, side: str, concurrency: int) -> int:
    """How many alternating rounds a streaming side of the pairs runs: one for one stream
    (latency-bound, no target); `args.rounds` for the historical sides; for time,
    `args.batch_rounds` (the first ones) for the sides added with the batched RPC."""
    if concurrency == 1:
        return 1
    if not shape.suffix and side in HISTORICAL_SIDES:
        return int(args.rounds)
    return int(args.batch_rounds)


def run_pairs(
    upstream: Server,
    bridge: Server,
    floor: Server,
    args: argparse.Namespace,
    placement: Placement,
) -> dict[str, Any]:
    """Each figure three times: direct, through the bridge, and against the grpc.aio floor;
    the streaming ones also per `PAIR_VARIANTS` entry (each against its RPC's floor) and
    per `STREAM_SHAPES` entry."""
    servers = [upstream, bridge, floor]
    timing = {"duration": args.duration, "warmup": args.warmup}
    results: dict[str, Any] = {"unary": {}, "ttfc": {}}
    # The floor is called exactly like the bridge (same client mode, same requests).
    # Placement: the process under test has a core of its own (the direct client, or
    # the bridge / floor); the others share the second core.
    direct = Side("direct", "direct", upstream.address, placement.tested)
    streams = [direct, *variant_sides(bridge, floor, PAIR_VARIANTS, placement.load, "bridge")]
    sides = [side for side in streams if side.name in HISTORICAL_SIDES]
    for concurrency in (1, 64):
        pair = {}
        for side in sides:
            pair[side.name] = measure(
                f"unary-{side.client}",
                side.target,
                UNARY_SCENARIO,
                servers,
                label=f"unary-{side.name}",
                cpus=side.cpus,
                concurrency=concurrency,
                **timing,
            )
        results["unary"][str(concurrency)] = pair
    results["scenarios"] = {shape.key: shape.scenario for shape in STREAM_SHAPES}
    for shape in STREAM_SHAPES:
        results[shape.key] = {}
        shaped = [side for side in streams if shape.runs(side.name)]
        for concurrency in (1, 16, 256):
            # Throughput on a shared 2-core machine moves by +-25% from one 3 s window to
            # the next; the sides take turns, and each keeps its median run.
            rounds = {
                side.name: pair_rounds(args, shape, side.name, concurrency) for side in shaped
            }
            runs: dict[str, list[dict[str, Any]]] = {side.name: [] for side in shaped}
            for round_ in range(max(rounds.values())):
                for side in shaped:
                    if round_ >= rounds[side.name]:
                        continue
                    runs[side.name].append(
                        measure(
                            f"stream-{side.client}",
                            side.target,
                            dict(shape.scenario),
                            servers,
                            label=f"stream-{side.name}{shape.suffix}",
                            cpus=side.cpus,
                            concurrency=concurrency,
                            **side.options,
                            **timing,
                        )
                    )
            results[shape.key][str(concurrency)] = {
                name: median_run(entries) for name, entries in runs.items()
            }
    for side in sides:
        results["ttfc"][side.name] = measure(
            f"ttfc-{side.client}",
            side.target,
            TTFC_SCENARIO,
            servers,
            label=f"ttfc-{side.name}",
            cpus=side.cpus,
            concurrency=1,
            **timing,
        )
    return results


def _note(label: str, entry: Mapping[str, Any]) -> None:
    """The progress line of a windowed phase (stderr)."""
    latency, lag = entry["latency"], entry["lag"]
    text = f"  {label:34} {entry['rate']:9.0f}/s"
    if latency["samples"]:
        text += f"  p50 {latency['p50_ms']:.3f} ms  p99 {latency['p99_ms']:.3f} ms"
    if lag["samples"]:
        text += f"  client lag p99 {lag['p99_ms']:.2f} ms"
    cpu = "  ".join(f"{k} {v:.2f}" for k, v in entry["cpu"].items())
    print(f"{text}  cpu[{cpu}]  errors {entry['errors']}", file=sys.stderr, flush=True)


def cpu_per_chunk(cpu_seconds: float, chunks: int) -> float:
    """CPU seconds per chunk relayed over a window (nan when none was)."""
    return cpu_seconds / chunks if chunks > 0 else float("nan")


def cores_per_thousand(seconds_per_chunk: float, rate: float = COST_RATE) -> float:
    """Cores that 1,000 streams of `rate` chunks/s each take at that CPU per chunk."""
    return seconds_per_chunk * 1000 * rate


def stagger_ramp(streams: int, rate: float, target: float) -> float:
    """How long (s) to spread the starts of `streams` streams over, near `target`, so
    that their chunk times spread evenly over each 1/`rate` period.

    Stream i starts i * ramp / streams seconds in; with ramp = k periods, its chunks
    fall at the fraction i * k / streams (mod 1) of each period. With k coprime to
    `streams` those are all distinct, i.e. every 1/(streams * rate) s one chunk is
    due; with, say, 1,000 streams at 20/s over exactly 2 s (k = 40) they would fall
    in 25 bursts of 40 per period.
    """
    k = max(1, round(target * rate))
    while math.gcd(k, streams) != 1:
        k += 1
    return k / rate


def open_loop_chunks(rate: float, ramp: float, warmup: float, duration: float) -> int:
    """Content chunks per stream: the first stream opened still streams when the window
    ends (one second to spare); the client cancels every stream then."""
    return math.ceil(rate * (ramp + warmup + duration + 1.0))


def fell_behind(direct: Mapping[str, Any], bridge: Mapping[str, Any], offered: float) -> str:
    """Who did not keep up with an open-loop phase ("" when everyone did).

    A client lagged when its own lag (p99) exceeds `LAG_LIMIT_MS`: that much of
    what it measured is its own delay. It was saturated when it used
    `CLIENT_SATURATED` of a core or more: then short delivery on its side is its
    own. Otherwise short delivery direct (below `KEPT_UP` of the offered rate) is
    the upstream's, and short delivery through the bridge, when the direct side
    delivered, is the bridge's.
    """
    reasons = []
    saturated = {}
    for side, entry in (("direct", direct), ("bridge", bridge)):
        lag = entry["lag"]["p99_ms"]
        if lag > LAG_LIMIT_MS:
            reasons.append(f"{side} client (lag p99 {lag:.1f} ms)")
        cores = entry["cpu"]["client"]
        saturated[side] = cores >= CLIENT_SATURATED
        if saturated[side]:
            reasons.append(f"{side} client (saturated, {cores:.2f} core)")
    direct_share, bridge_share = direct["rate"] / offered, bridge["rate"] / offered
    if direct_share < KEPT_UP and not saturated["direct"]:
        reasons.append(f"upstream (direct delivered {direct_share:.0%})")
    elif bridge_share < KEPT_UP and direct_share >= KEPT_UP and not saturated["bridge"]:
        reasons.append(f"bridge (delivered {bridge_share:.0%})")
    return "; ".join(reasons)


def run_unary_open(
    upstream: Server,
    bridge: Server,
    floor: Server,
    capacity: float,
    args: argparse.Namespace,
    placement: Placement,
) -> dict[str, Any]:
    """Unary latency in open loop: Poisson arrivals at half the bridge's closed-loop
    capacity (its calls/s at concurrency 64, measured just before), the same rate
    direct, through the bridge and against the floor; `args.unary_count` calls each."""
    rate = 0.5 * capacity
    servers = [upstream, bridge, floor]
    out: dict[str, Any] = {"rate": rate, "capacity": capacity}
    sides = (
        ("direct", "direct", upstream.address, placement.tested),
        ("bridge", "bridge", bridge.address, placement.load),
        ("floor", "bridge", floor.address, placement.load),
    )
    for side, client, target, cpus in sides:
        entry = windowed(
            PYTHON_CLIENT,
            f"unary-open-{client}",
            target,
            UNARY_SCENARIO,
            servers,
            cpus,
            rate=f"{rate:.1f}",
            count=args.unary_count,
            warmup=args.warmup,
            concurrency=64,  # the direct client's connection pool: never a queue
        )
        _note(f"unary-open-{side} at {rate:.0f}/s", entry)
        out[side] = entry
    return out


def run_streams_compiled(
    upstream: Server,
    bridge: Server,
    floor: Server,
    client: Client,
    args: argparse.Namespace,
    placement: Placement,
) -> dict[str, Any]:
    """The 16- and 256-stream saturation phases again, with the compiled client, against
    each bridge variant and the floor of its RPC: with a client that costs a few µs per
    message the floor is no longer capped by its caller, so "bridge CPU per chunk against
    the floor's" compares the two servers alone. `args.compiled_rounds` rounds, the sides
    taking turns, each keeping its median run, as in the pairs."""
    servers = [upstream, bridge, floor]
    sides = variant_sides(bridge, floor, VARIANTS, placement.load)
    out: dict[str, Any] = {}
    for concurrency in (16, 256):
        runs: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
        for _ in range(args.compiled_rounds):
            for side in sides:
                entry = windowed(
                    client,
                    "stream-bridge",
                    side.target,
                    STREAM_SCENARIO,
                    servers,
                    side.cpus,
                    concurrency=concurrency,
                    channels=4,
                    warmup=args.warmup,
                    duration=args.duration,
                    **side.options,
                )
                server = "floor" if side.name in FLOOR_SIDES.values() else "bridge"
                entry["cpu_per_chunk_us"] = 1e6 * cpu_per_chunk(
                    entry["cpu_seconds"][server], entry["count"]
                )
                _note(f"stream-{side.name} ({client.name}) x{concurrency}", entry)
                runs[side.name].append(entry)
        pair = {name: median_run(entries) for name, entries in runs.items()}
        for variant in VARIANTS:
            pair[variant.name]["vs_floor"] = (
                pair[variant.name]["cpu_per_chunk_us"]
                / pair[FLOOR_SIDES[variant.rpc]]["cpu_per_chunk_us"]
            )
        out[str(concurrency)] = pair
    return out


def run_open_loop(
    upstream: Server,
    bridge: Server,
    client: Client,
    shapes: tuple[OpenLoop, ...],
    args: argparse.Namespace,
    placement: Placement,
) -> dict[str, Any]:
    """Each shape (`OPEN_LOOPS` by default) direct, then through the bridge once per
    `VARIANTS` entry.

    The upstream paces every stream (scenario ``rate``) and stamps every event with
    its send time; the client opens the streams evenly over the ramp and, over the
    window after the warm-up, counts the chunks and their latency (arrival - stamp).
    The bridge's CPU over that window divided by the chunks is its CPU per chunk.
    Placement as in the pairs: the direct client, or the bridge, alone on its core.
    """
    out: dict[str, Any] = {}
    for shape in shapes:
        ramp = stagger_ramp(shape.streams, shape.rate, args.ramp)
        scenario = {
            "chunks": open_loop_chunks(shape.rate, ramp, args.open_warmup, args.open_duration),
            "rate": shape.rate,
            "stamp": True,
        }
        timing = {
            "concurrency": shape.streams,
            "ramp": ramp,
            "warmup": args.open_warmup,
            "duration": args.open_duration,
        }
        entry: dict[str, Any] = {
            "streams": shape.streams,
            "rate": shape.rate,
            "offered": shape.offered,
            "ramp": ramp,
            "scenario": scenario,
        }
        direct = windowed(
            client,
            "open-direct",
            upstream.address,
            scenario,
            [upstream],
            placement.tested,
            **timing,
        )
        _note(f"open-direct ({client.name}) {shape.label}", direct)
        entry["direct"] = direct
        for variant in VARIANTS:
            side = windowed(
                client,
                "open-bridge",
                bridge.address,
                scenario,
                [upstream, bridge],
                placement.load,
                rpc=variant.rpc,
                channels=8,
                **variant.flags,
                **timing,
            )
            per_chunk = cpu_per_chunk(side["cpu_seconds"]["bridge"], side["count"])
            side["cpu_per_chunk_us"] = 1e6 * per_chunk
            side["cores_per_1000_at_50"] = cores_per_thousand(per_chunk)
            for q in ("p50", "p99"):
                side[f"added_{q}_ms"] = side["latency"][f"{q}_ms"] - direct["latency"][f"{q}_ms"]
            side["fell_behind"] = fell_behind(direct, side, shape.offered)
            _note(f"open-{variant.name} ({client.name}) {shape.label}", side)
            entry[variant.name] = side
        out[shape.label] = entry
    return out


def run_capacity(upstream: Server, args: argparse.Namespace) -> dict[str, Any]:
    """RSS of a fresh bridge holding `args.streams` open streams that each get 1 chunk/s."""
    bridge = start_bridge(upstream)
    try:
        (out,) = hold_streams(upstream, [bridge], args.streams, args.hold)
    finally:
        bridge.stop()
    print(
        f"  capacity: {out['opened']} open, RSS {out['rss_idle_mib']:.1f} -> "
        f"{out['rss_loaded_mib']:.1f} MiB, {out['rss_per_stream_kib']:.1f} KiB/stream, "
        f"{out['chunks_per_s']:.0f} chunks/s, errors {out['errors']}",
        file=sys.stderr,
        flush=True,
    )
    return out


def hold_streams(
    upstream: Server, bridges: Sequence[Server], streams: int, hold: float, window: float = 2.0
) -> list[dict[str, Any]]:
    """RSS of each of `bridges` idle (after a warm-up) and holding `streams` open streams
    of `HOLD_SCENARIO` for `hold` seconds, all at once (one client each); the servers'
    CPU over the last `window` of them."""
    # Warm the processes up (imports, pools, first RPC) before the idle figure, all at once.
    warmups = [
        subprocess.Popen(
            client_argv(
                PYTHON_CLIENT,
                "stream-bridge",
                bridge.address,
                TTFC_SCENARIO,
                concurrency=4,
                duration=0.5,
            ),
            stdout=subprocess.DEVNULL,
            env=ENV,
            cwd=ROOT,
        )
        for bridge in bridges
    ]
    for warmup in warmups:
        if warmup.wait(120) != 0:
            raise RuntimeError(f"the warm-up of a bridge failed ({warmup.returncode})")
    time.sleep(0.5)
    idle = [bridge.rss() for bridge in bridges]
    clients: list[subprocess.Popen[bytes]] = []
    try:
        for bridge in bridges:
            argv = [PY, str(ROOT / "bench" / "load.py"), "hold-bridge", "--target"]
            argv += [bridge.address, "--scenario", json.dumps(HOLD_SCENARIO)]
            argv += ["--concurrency", str(streams), "--channels", "8"]
            clients.append(
                subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, cwd=ROOT
                )
            )
        ready = [json.loads(_pipes(client)[1].readline().decode()) for client in clients]
        time.sleep(hold)  # every stream has had a few chunks: steady state
        with cpu_window([upstream, *bridges]) as shares:
            time.sleep(window)
        loaded = [bridge.rss() for bridge in bridges]
        for client in clients:
            _pipes(client)[0].close()
        summaries = [json.loads(_pipes(client)[1].readline().decode()) for client in clients]
        for client in clients:
            client.wait(60)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    return [
        {
            "streams": streams,
            "opened": ready[index]["ready"],
            "still_open": summary["open"],
            "ramp_s": ready[index]["ramp_s"],
            "rss_idle_mib": idle[index] / 2**20,
            "rss_loaded_mib": loaded[index] / 2**20,
            "rss_per_stream_kib": (loaded[index] - idle[index]) / streams / 1024,
            "chunks_per_s": summary["count"] / summary["seconds"],
            "errors": summary["errors"],
            "cpu": {
                "client": summary["cpu"] / summary["seconds"],
                "upstream": shares[upstream.name],
                "bridge": shares[bridge.name],
            },
        }
        for index, (bridge, summary) in enumerate(zip(bridges, summaries, strict=True))
    ]


def _pipes(client: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    """A hold client's stdin and stdout."""
    assert client.stdin is not None and client.stdout is not None
    return client.stdin, client.stdout


def run_scale(upstream: Server, args: argparse.Namespace) -> dict[str, Any]:
    if not bridge_has_workers():
        return {"available": False}
    out: dict[str, Any] = {"available": True}
    for workers in (1, 2):
        bridge = start_bridge(upstream, workers=workers)
        try:
            for clients in (1, 2):
                out[f"{workers}x{clients}"] = measure(
                    "stream-bridge",
                    bridge.address,
                    STREAM_SCENARIO,
                    [upstream, bridge],
                    clients=clients,
                    concurrency=256,
                    channels=8,
                    duration=args.duration,
                    warmup=args.warmup,
                )
            out[str(workers)] = max(
                (out[f"{workers}x{c}"] for c in (1, 2)), key=lambda entry: entry["rate"]
            )
        finally:
            bridge.stop()
    return out


@dataclasses.dataclass(frozen=True)
class CallerVariant:
    """A bridge of the callers phase: its name in the rows, its further `serve` flags,
    whether it runs the generous caller policy (`CALLER_POLICY`), and whether its
    limits live in the phase's Redis on loopback."""

    name: str
    flags: tuple[str, ...] = ()
    policy: bool = False
    redis: bool = False


CALLER_VARIANTS: Final[tuple[CallerVariant, ...]] = (
    CallerVariant("none"),
    CallerVariant("none, no retries", ("--retry-attempts", "1")),
    CallerVariant("policy", policy=True),
    # A generous timeout: a decision that waited past the default 50 ms would take the
    # failure mode's fast path, and the figure would no longer be what counting costs.
    CallerVariant("policy+redis", ("--limits-redis-timeout", "1"), policy=True, redis=True),
)
"""The callers phase's bridges, all with today's defaults otherwise (retries and
breakers on)."""


@dataclasses.dataclass(frozen=True)
class CallerComparison:
    """One row of the callers table: `variant` read against `baseline` of the same round;
    `p50_target_ms` the most unary p50 it may add (None: within the baseline's noise)."""

    variant: str
    baseline: str
    issue: int
    p50_target_ms: float | None = None
    rss_target_kib: float = 2.0


CALLER_COMPARISONS: Final[tuple[CallerComparison, ...]] = (
    CallerComparison("policy", "none", 18, p50_target_ms=0.05),
    CallerComparison("policy+redis", "none", 18, p50_target_ms=0.5),
    CallerComparison("none", "none, no retries", 19),
)
"""Issue 18: a policy that counts every call, in process and on Redis, against none;
issue 19: today's retries against none on the success path."""
CALLER_LIMIT: Final = 10**12
"""Every limit of the callers phase's policy: each call counted, none refused."""


def caller_policy(limit: int = CALLER_LIMIT) -> str:
    """The callers phase's policy file: the default entry (the bench's calls come without
    an identity, so as the anonymous caller) with all four limits at `limit`."""
    limits = "".join(
        f"    {name}: {limit}\n"
        for name in ("concurrent", "requests_per_minute", "tokens_per_minute", "tokens_per_day")
    )
    return f"default:\n  service_key: true\n  limits:\n{limits}"


def caller_figures(
    rounds: Mapping[str, Sequence[Mapping[str, float]]],
    rss: Mapping[str, float],
    comparison: CallerComparison,
) -> dict[str, Any]:
    """One comparison's figures from the phase's rounds.

    `rounds` has, per variant, one entry a round: ``p50_ms`` and ``p99_ms`` of the
    unary calls, ``us_per_chunk`` of the streams; `rss` the KiB per open stream. The
    added latency is the median over rounds of the variant's figure less the baseline's
    of the same round; CPU per chunk the median of the same-round ratios. The noise of
    such a median is the rounds' own scatter: half the range of the same-round figures
    (differences, ratios). "Within noise" means the median is no farther from nothing
    added than that: a change every round shows lies outside it, one the rounds
    disagree on inside.
    """
    variant, baseline = rounds[comparison.variant], rounds[comparison.baseline]
    pairs = list(zip(variant, baseline, strict=True))

    def median(values: Sequence[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2

    def scatter(values: Sequence[float]) -> float:
        return (max(values) - min(values)) / 2

    out: dict[str, Any] = {"variant": comparison.variant, "baseline": comparison.baseline}
    for q in ("p50", "p99"):
        out[f"{q}_ms"] = median([v[f"{q}_ms"] for v in variant])
        out[f"baseline_{q}_ms"] = median([b[f"{q}_ms"] for b in baseline])
        out[f"added_{q}_ms"] = median([v[f"{q}_ms"] - b[f"{q}_ms"] for v, b in pairs])
    out["p50_noise_ms"] = scatter([v["p50_ms"] - b["p50_ms"] for v, b in pairs])
    limit = comparison.p50_target_ms
    out["p50_met"] = (
        abs(out["added_p50_ms"]) <= out["p50_noise_ms"]
        if limit is None
        else out["added_p50_ms"] <= limit
    )
    out["us_per_chunk"] = median([v["us_per_chunk"] for v in variant])
    out["baseline_us_per_chunk"] = median([b["us_per_chunk"] for b in baseline])
    ratios = [v["us_per_chunk"] / b["us_per_chunk"] for v, b in pairs]
    out["chunk_ratio"] = median(ratios)
    out["chunk_noise"] = scatter(ratios)
    out["chunk_met"] = abs(out["chunk_ratio"] - 1) <= out["chunk_noise"]
    if comparison.variant in rss and comparison.baseline in rss:
        out["rss_kib"] = rss[comparison.variant]
        out["baseline_rss_kib"] = rss[comparison.baseline]
        out["added_rss_kib"] = out["rss_kib"] - out["baseline_rss_kib"]
        out["rss_met"] = abs(out["added_rss_kib"]) <= comparison.rss_target_kib
    return out


def start_redis(cpus: Cpus = None) -> Server | None:
    """A redis-server on a free loopback port, without persistence; None without one."""
    executable = shutil.which("redis-server")
    if executable is None:
        return None
    port = _free_port()
    directory = tempfile.mkdtemp(prefix="bench-redis-")
    argv = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", directory]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, preexec_fn=_on(cpus))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return Server("redis", process, f"redis://127.0.0.1:{port}/0")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not listen within 10 s")


def run_callers(upstream: Server, args: argparse.Namespace, placement: Placement) -> dict[str, Any]:
    """Issues 18 and 19: what a caller policy (in process, on Redis) and today's retries
    cost. `CALLER_VARIANTS` run side by side, each its own bridge against the one upstream.

    First the fresh bridges hold `args.caller_streams` open streams each (RSS per
    stream); then `args.caller_rounds` rounds of `_caller_rounds`: unary calls one at
    a time (p50, p99) and 16 per-event streams (bridge CPU per chunk), every variant
    in the same window. The rows read each variant against its baseline of the same
    round (`CALLER_COMPARISONS`).
    """
    out: dict[str, Any] = {"skipped": {}, "policy": caller_policy()}
    redis = None
    variants = list(CALLER_VARIANTS)
    if any(variant.redis for variant in variants):
        redis = start_redis()
        if redis is None:
            reason = "redis-server not on PATH (.ci/run installs it)"
            for variant in variants:
                if variant.redis:
                    out["skipped"][variant.name] = reason
                    print(f"  callers: {variant.name} skipped: {reason}", file=sys.stderr)
            variants = [variant for variant in variants if not variant.redis]
    bridges: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="bench-callers-") as directory:
        policy_file = Path(directory) / "policy.yaml"
        policy_file.write_text(out["policy"])
        try:
            for variant in variants:
                flags = list(variant.flags)
                if variant.policy:
                    flags += ["--policy-file", str(policy_file)]
                if variant.redis and redis is not None:
                    flags += ["--limits-redis-url", redis.address]
                bridge = start_bridge(upstream, *flags, cpus=placement.tested)
                bridge.name = f"bridge[{variant.name}]"
                bridges[variant.name] = bridge
            held_all = hold_streams(
                upstream, list(bridges.values()), args.caller_streams, 1.0, window=0.5
            )
            out["rss"] = dict(zip(bridges, held_all, strict=True))
            for name, held in out["rss"].items():
                print(
                    f"  callers hold {name:18} {held['opened']} open, "
                    f"{held['rss_per_stream_kib']:.1f} KiB/stream, errors {held['errors']}",
                    file=sys.stderr,
                    flush=True,
                )
            out["rounds"] = _caller_rounds(upstream, bridges, redis, args, placement)
        finally:
            for bridge in bridges.values():
                bridge.stop()
            if redis is not None:
                redis.stop()
    rss = {name: held["rss_per_stream_kib"] for name, held in out["rss"].items()}
    out["figures"] = [
        caller_figures(out["rounds"], rss, comparison)
        for comparison in CALLER_COMPARISONS
        if comparison.variant in bridges and comparison.baseline in bridges
    ]
    return out


def _caller_rounds(
    upstream: Server,
    bridges: Mapping[str, Server],
    redis: Server | None,
    args: argparse.Namespace,
    placement: Placement,
) -> dict[str, list[dict[str, Any]]]:
    """The rounds of `run_callers`: per variant, one entry a round.

    A round is two windows, in each of which every variant is measured at the same
    moments (the machine is shared: a window that one variant had alone could meet a
    neighbour's burst the others did not): unary calls from one client taking turns
    between the bridges, then one client of 16 streams per bridge, all at once, each
    bridge's CPU over the same window.
    """
    servers = [upstream, *bridges.values(), *([redis] if redis is not None else [])]
    names = list(bridges)
    timing = {"duration": args.caller_duration, "warmup": 0.3}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(args.caller_rounds):
        order = rotated(names, round_)
        unary = _run_client(
            client_argv(
                PYTHON_CLIENT,
                "unary-turns",
                ",".join(bridges[name].address for name in order),
                UNARY_SCENARIO,
                duration=args.caller_unary_duration,
                warmup=timing["warmup"],
                seed=round_ + 1,
            ),
            placement.load,
        )
        streams = streams_together(
            {name: bridges[name] for name in order}, servers, placement.load, timing
        )
        for name, latencies in zip(order, turns(unary["lat_ms"], len(order)), strict=True):
            stream = streams[name]
            entry = {
                "p50_ms": percentile(latencies, 0.50),
                "p99_ms": percentile(latencies, 0.99),
                "calls": len(latencies),
                "unary_errors": unary["errors"],
                "chunks_per_s": stream["rate"],
                "us_per_chunk": stream["us_per_chunk"],
                "stream_errors": stream["errors"],
                "stream_cpu": stream["cpu"],
            }
            rounds[name].append(entry)
            print(
                f"  callers round {round_ + 1} {name:18} unary p50 {entry['p50_ms']:.3f} ms "
                f"p99 {entry['p99_ms']:.3f} ms ({entry['calls']} calls), 16 streams "
                f"{entry['chunks_per_s']:,.0f} chunks/s, bridge {entry['us_per_chunk']:.1f} µs "
                f"per chunk, errors {entry['unary_errors']} / {entry['stream_errors']}",
                file=sys.stderr,
                flush=True,
            )
    return rounds


def turns(latencies: Sequence[float], targets: int) -> list[list[float]]:
    """`unary-turns`' latencies, one per target a turn in the targets' order, by target."""
    if len(latencies) % targets:
        raise ValueError(f"{len(latencies)} latencies are no whole turns of {targets} targets")
    return [list(latencies[index::targets]) for index in range(targets)]


def _run_client(argv: list[str], cpus: Cpus) -> dict[str, Any]:
    """One load-generator process to its end: its result (the last line)."""
    done = subprocess.run(
        argv, capture_output=True, env=ENV, cwd=ROOT, preexec_fn=_on(cpus), timeout=180
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[2]} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def streams_together(
    bridges: Mapping[str, Server],
    servers: Sequence[Server],
    cpus: Cpus,
    timing: Mapping[str, float],
    concurrency: int = 16,
) -> dict[str, dict[str, Any]]:
    """`concurrency` per-event streams through each of `bridges` at once, one client
    process each, all started together with the same warm-up and duration: per bridge,
    chunks/s, its CPU per chunk over the first client's window, its client's errors.
    The clients' windows differ by their start-up skew (milliseconds), which the rates
    (chunks over each client's own window) absorb."""
    argvs = {
        name: client_argv(
            PYTHON_CLIENT,
            "stream-bridge",
            bridge.address,
            STREAM_SCENARIO,
            concurrency=concurrency,
            **timing,
        )
        for name, bridge in bridges.items()
    }
    edges: dict[str, tuple[float, dict[str, float]]] = {}
    outputs: dict[str, bytes] = {}
    with contextlib.ExitStack() as files:
        errs = {name: files.enter_context(tempfile.TemporaryFile()) for name in argvs}
        procs = {
            name: subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=errs[name],
                env=ENV,
                cwd=ROOT,
                preexec_fn=_on(cpus),
            )
            for name, argv in argvs.items()
        }
        try:
            for index, (name, proc) in enumerate(procs.items()):
                assert proc.stdout is not None
                last = b""
                for line in proc.stdout:
                    if index == 0 and b'"window"' in line:
                        edge = json.loads(line)["window"]
                        edges[edge] = (time.perf_counter(), {s.name: s.cpu() for s in servers})
                    last = line
                outputs[name] = last
                if proc.wait(180) != 0:
                    errs[name].seek(0)
                    tail = errs[name].read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"stream-bridge against {name} failed: {tail}")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    (t0, before), (t1, after) = edges["start"], edges["end"]
    out = {}
    for name, bridge in bridges.items():
        result = json.loads(outputs[name])
        rate = result["count"] / result["seconds"]
        cpu = after[bridge.name] - before[bridge.name]
        out[name] = {
            "rate": rate,
            "us_per_chunk": 1e6 * cpu_per_chunk(cpu, round(rate * (t1 - t0))),
            "errors": result["errors"],
            "cpu": {"client": result["cpu"] / result["seconds"], "bridge": cpu / (t1 - t0)},
        }
    return out


def rotated(names: Sequence[str], by: int) -> list[str]:
    """`names` starting at index `by` (wrapping): each round of the callers phase starts
    with another variant, so none always runs right after a given other one."""
    if not names:
        return []
    by %= len(names)
    return [*names[by:], *names[:by]]


def callers_table(callers: Mapping[str, Any]) -> str:
    """One row per comparison: unary latency added, bridge CPU per chunk, RSS per open
    stream, each with its target and whether it was met."""
    rows = [
        "| variant vs baseline | issue | unary p50: baseline / variant / added | target | met "
        "| unary p99 added | bridge µs per chunk: baseline / variant / ratio "
        "| rounds' scatter | within it | RSS KiB per open stream: baseline / variant / added "
        "| target | met |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    targets = {(c.variant, c.baseline): c for c in CALLER_COMPARISONS}
    for figure in callers.get("figures", []):
        comparison = targets.get((figure["variant"], figure["baseline"]))
        if comparison is None:
            continue  # an older results file
        limit = comparison.p50_target_ms
        p50_target = (
            f"<= {limit * 1000:g} µs"
            if limit is not None
            else f"within the rounds' scatter (±{figure['p50_noise_ms'] * 1000:.0f} µs)"
        )
        rss = (
            f"| {figure['baseline_rss_kib']:.1f} / {figure['rss_kib']:.1f} / "
            f"{figure['added_rss_kib']:+.1f} | within ±{comparison.rss_target_kib:g} KiB "
            f"| {_met(figure['rss_met'])} |"
            if "rss_kib" in figure
            else "| | | |"
        )
        rows.append(
            f"| {figure['variant']} vs {figure['baseline']} | {comparison.issue} "
            f"| {figure['baseline_p50_ms']:.3f} / {figure['p50_ms']:.3f} / "
            f"{figure['added_p50_ms'] * 1000:+.0f} µs | {p50_target} | {_met(figure['p50_met'])} "
            f"| {figure['added_p99_ms'] * 1000:+.0f} µs "
            f"| {figure['baseline_us_per_chunk']:.1f} / {figure['us_per_chunk']:.1f} / "
            f"{figure['chunk_ratio']:.3f}x | ±{figure['chunk_noise']:.1%} "
            f"| {_met(figure['chunk_met'])} " + rss
        )
    for name, reason in callers.get("skipped", {}).items():
        rows.append(f"| {name}: skipped ({reason}) | | | | | | | | | | | |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def machine() -> dict[str, Any]:
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def table(results: dict[str, Any]) -> str:
    rows = [
        "| figure | direct (httpx) | bridge (grpc.aio) | bridge vs direct | target | met "
        "| floor (grpc.aio, no upstream) | bridge vs floor |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]

    def floor_ms(entry: dict[str, Any] | None, key: str, bridge: float) -> str:
        if entry is None:
            return "| |"
        f = entry[key]
        return f"| {f:.2f} ms | {bridge - f:+.2f} ms |"

    for concurrency, pair in results.get("unary", {}).items():
        # Concurrency 64 saturates the bridge's core: its latency is queueing (the open
        # loop below is the latency a caller meets); what it measures is capacity.
        closed = ", closed loop (saturated: queueing)" if concurrency == "64" else ""
        for q in ("p50", "p99"):
            d, b = pair["direct"][f"{q}_ms"], pair["bridge"][f"{q}_ms"]
            rows.append(
                f"| unary latency {q}, concurrency {concurrency}{closed} | {d:.2f} ms "
                f"| {b:.2f} ms | {b - d:+.2f} ms | | " + floor_ms(pair.get("floor"), f"{q}_ms", b)
            )
        if concurrency == "64":
            d, b = pair["direct"]["rate"], pair["bridge"]["rate"]
            f = pair.get("floor")
            tail = f"| {f['rate']:,.0f} | {b / f['rate']:.2f}x |" if f else "| |"
            rows.append(
                f"| unary capacity: calls/s at concurrency 64 | {d:,.0f} | {b:,.0f} "
                f"| {b / d:.2f}x | | " + tail
            )
    unary_open = results.get("unary_open")
    if unary_open is not None:
        for q, limit in (("p50", 0.5), ("p99", 2.0)):
            d = unary_open["direct"]["latency"][f"{q}_ms"]
            b = unary_open["bridge"]["latency"][f"{q}_ms"]
            f = unary_open["floor"]["latency"][f"{q}_ms"]
            rows.append(
                f"| unary latency {q}, open loop at {unary_open['rate']:,.0f} calls/s "
                f"(50% of the bridge's capacity) | {d:.2f} ms | {b:.2f} ms | {b - d:+.2f} ms "
                f"| added <= {limit} ms | {_met(b - d <= limit)} | {f:.2f} ms | {b - f:+.2f} ms |"
            )
    rows += stream_rows(results)
    ttfc = results.get("ttfc", {})
    for q in ("p50", "p99") if ttfc else ():
        d, b = ttfc["direct"][f"{q}_ms"], ttfc["bridge"][f"{q}_ms"]
        target = "added <= 1 ms" if q == "p50" else ""
        met = _met(b - d <= 1.0) if target else ""
        rows.append(
            f"| time to first chunk {q} | {d:.2f} ms | {b:.2f} ms | {b - d:+.2f} ms "
            f"| {target} | {met} " + floor_ms(ttfc.get("floor"), f"{q}_ms", b)
        )
    cap = results.get("capacity")  # absent with --only pairs
    if cap is not None:
        rows.append(
            f"| capacity: {cap['streams']} open streams, 1 chunk/s each | | "
            f"RSS {cap['rss_idle_mib']:.0f} -> {cap['rss_loaded_mib']:.0f} MiB "
            f"| {cap['rss_per_stream_kib']:.1f} KiB/stream | <= 50 KiB/stream "
            f"| {_met(cap['rss_per_stream_kib'] <= 50 and cap['opened'] == cap['streams'])} | | |"
        )
    scale = results.get("scale", {})
    best = max((pair["bridge"]["rate"] for pair in results.get("stream", {}).values()), default=0)
    if scale.get("available"):
        w1, w2 = scale["1"]["rate"], scale["2"]["rate"]
        best = max(best, w1, w2)
        rows.append(
            f"| scale: 256 streams, `--workers 1` / `--workers 2` (best of 1 or 2 client "
            f"processes) | | {w1:,.0f} / {w2:,.0f} | {w2 / w1:.2f}x | | | | |"
        )
    elif scale:
        rows.append(
            "| scale: `--workers` | | n/a: the bridge has no `--workers` option | | | | | |"
        )
    if best:
        rows.append(
            f"| best aggregate chunks/s through the bridge | | {best:,.0f} | | >= 50,000 "
            f"| {_met(best >= 50_000)} | | |"
        )
    return "\n".join(rows)


def stream_rows(results: Mapping[str, Any]) -> list[str]:
    """The saturation rows of `table`: per shape, streams and side, chunks/s against
    direct and against the floor of the side's RPC. The historical rows (one event per
    write, per-event RPC) keep their label and target; the per-event floor, the same
    messages whatever the writes, is measured with the first shape only."""
    rows = []
    for shape in STREAM_SHAPES:
        for concurrency, pair in results.get(shape.key, {}).items():
            d = pair["direct"]["rate"]
            for name, entry in pair.items():
                rpc = _rpc_of(name)
                if rpc is None:
                    continue  # the direct side or a floor
                label = f"stream chunks/s, {concurrency} streams{shape.suffix}"
                if name != "bridge":
                    label += f", {name}"
                historical = not shape.suffix and name == "bridge"
                target = ">= 0.8x" if historical and concurrency in ("16", "256") else ""
                b = entry["rate"]
                met = _met(b >= 0.8 * d) if target else ""
                floor = _floor_of(results, shape, concurrency, rpc)
                tail = (
                    f"| {floor['rate']:,.0f} ({floor['rate'] / d:.2f}x direct) "
                    f"| {b / floor['rate']:.2f}x |"
                    if floor
                    else "| |"
                )
                rows.append(
                    f"| {label} | {d:,.0f} | {b:,.0f} | {b / d:.2f}x | {target} | {met} " + tail
                )
    return rows


def _rpc_of(side: str) -> str | None:
    """The RPC of a side named for its variant, or ``bridge`` (the pairs' per-event side);
    None for the direct side and the floors."""
    if side == "bridge":
        return "per_event"
    for variant in VARIANTS:
        if variant.name == side:
            return variant.rpc
    return None


def _floor_of(
    results: Mapping[str, Any], shape: StreamShape, concurrency: str, rpc: str
) -> Mapping[str, Any] | None:
    """The floor run an RPC's rows of `shape` read against (the per-event one: measured
    with the shape that has it)."""
    floor = FLOOR_SIDES[rpc]
    if floor == "floor" and not shape.per_event_floor:
        measured = next(other for other in STREAM_SHAPES if other.per_event_floor)
        return results.get(measured.key, {}).get(concurrency, {}).get(floor)
    return results[shape.key][concurrency].get(floor)


def cpu_table(results: dict[str, Any]) -> str:
    rows = [
        "| phase | client | bridge | floor | upstream |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]

    def row(label: str, entry: dict[str, Any]) -> None:
        cpu = entry["cpu"]
        rows.append(
            f"| {label} | {cpu['client']:.2f} | {cpu.get('bridge', 0):.2f} "
            f"| {cpu.get('floor', 0):.2f} | {cpu['upstream']:.2f} |"
        )

    for concurrency, pair in results.get("unary", {}).items():
        for side, entry in pair.items():
            row(f"unary {side} x{concurrency}", entry)
    for shape in STREAM_SHAPES:
        for concurrency, pair in results.get(shape.key, {}).items():
            for side, entry in pair.items():
                row(f"stream {side} x{concurrency}{shape.suffix}", entry)
    for side in ("direct", "bridge", "floor"):
        if side in results.get("ttfc", {}):
            row(f"ttfc {side}", results["ttfc"][side])
    unary_open = results.get("unary_open", {})
    for side in ("direct", "bridge", "floor"):
        if side in unary_open:
            row(f"unary open loop {side} at {unary_open['rate']:,.0f}/s", unary_open[side])
    for concurrency, pair in results.get("stream_compiled", {}).items():
        for side, entry in pair.items():
            row(f"stream {side} x{concurrency}, compiled client", entry)
    for client, shapes in results.get("open_loop", {}).items():
        for label, shape in shapes.items():
            for side in ("direct", *(variant.name for variant in VARIANTS)):
                if side in shape:
                    row(f"open loop {label} {side}, {client} client", shape[side])
    if "capacity" in results:
        row("capacity hold", results["capacity"])
    scale = results.get("scale", {})
    if scale.get("available"):
        for workers in ("1", "2"):
            for clients in ("1", "2"):
                row(
                    f"workers {workers}, 256 streams, {clients} client process(es)",
                    scale[f"{workers}x{clients}"],
                )
    return "\n".join(rows)


def floor_table(results: Mapping[str, Any]) -> str:
    """Bridge CPU per chunk against the floor's at 16 and 256 streams, with each client:
    the grpc.aio client (what Python callers see; it caps the floor's rate) and the
    compiled one (the servers' cost alone). Each RPC against its own floor, of the same
    shape: the per-event floor, or the batched one grouped as the upstream writes."""
    rows = [
        "| streams | client | RPC | events per upstream write | bridge: µs per chunk "
        "| floor: µs per chunk | bridge / floor | target | met | bridge chunks/s "
        "| floor chunks/s | client cores (bridge / floor) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]

    def row(
        concurrency: str,
        client: str,
        rpc: str,
        writes: int,
        bridge: Mapping[str, Any],
        floor: Mapping[str, Any],
    ) -> None:
        b = 1e6 * float(bridge["cpu"]["bridge"]) / bridge["rate"]
        f = 1e6 * float(floor["cpu"]["floor"]) / floor["rate"]
        if "cpu_per_chunk_us" in bridge:  # windowed: CPU over the steady window only
            b, f = bridge["cpu_per_chunk_us"], floor["cpu_per_chunk_us"]
        target = "<= 1.25x" if rpc == "per_event" else ""
        met = _met(b <= 1.25 * f) if target else ""
        rows.append(
            f"| {concurrency} | {client} | {rpc} | {writes} | {b:.1f} | {f:.1f} | {b / f:.2f}x "
            f"| {target} | {met} | {bridge['rate']:,.0f} | {floor['rate']:,.0f} "
            f"| {bridge['cpu']['client']:.2f} / {floor['cpu']['client']:.2f} |"
        )

    for concurrency in ("16", "256"):
        for shape in STREAM_SHAPES:
            for name, entry in results.get(shape.key, {}).get(concurrency, {}).items():
                rpc = _rpc_of(name)
                floor = None if rpc is None else _floor_of(results, shape, concurrency, rpc)
                if rpc is not None and floor is not None:
                    variant = "per_event" if name == "bridge" else name
                    row(concurrency, "grpc.aio (Python)", variant, shape.batch, entry, floor)
        compiled = results.get("stream_compiled", {}).get(concurrency, {})
        for variant in VARIANTS:
            floor = compiled.get(FLOOR_SIDES[variant.rpc])
            if variant.name in compiled and floor is not None:  # else: an older results file
                row(concurrency, "Go (grpc-go)", variant.name, 1, compiled[variant.name], floor)
    return "\n".join(rows)


def open_table(open_loop: Mapping[str, Any]) -> str:
    """One row per client, shape and bridge variant: delivery, latency per chunk (direct,
    bridge, added: the difference of the two percentiles), the bridge's CPU per chunk
    and what it means for sizing, the clients' own lag, and who fell behind if any."""
    rows = [
        "| streams x chunks/s | client | RPC | delivered: direct / bridge "
        "| latency p50: direct / bridge / added | latency p99: direct / bridge / added "
        "| target | met | bridge µs per chunk | bridge cores per 1,000 streams at 50 chunks/s "
        "| target | met | client lag p99: direct / bridge | fell behind |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | --- | --- "
        "| ---: | --- |",
    ]
    shapes = {shape.label: shape for shape in OPEN_LOOPS}
    for client, entries in open_loop.items():
        for label, entry in entries.items():
            shape = shapes.get(label)
            direct = entry["direct"]
            for variant in VARIANTS:
                side = entry.get(variant.name)
                if side is None:
                    continue
                d, b = direct["latency"], side["latency"]
                p99_target = shape.p99_target_ms if shape is not None else None
                cores = side["cores_per_1000_at_50"]
                rows.append(
                    f"| {entry['streams']:,} x {entry['rate']:g} | {client} | {variant.name} "
                    f"| {direct['rate'] / entry['offered']:.0%} / "
                    f"{side['rate'] / entry['offered']:.0%} of {entry['offered']:,.0f}/s "
                    f"| {d['p50_ms']:.2f} / {b['p50_ms']:.2f} / {side['added_p50_ms']:+.2f} ms "
                    f"| {d['p99_ms']:.2f} / {b['p99_ms']:.2f} / {side['added_p99_ms']:+.2f} ms "
                    + (
                        f"| added p99 <= {p99_target:g} ms "
                        f"| {_met(side['added_p99_ms'] <= p99_target)} "
                        if p99_target is not None
                        else "| | "
                    )
                    + f"| {side['cpu_per_chunk_us']:.1f} | {cores:.2f} "
                    + (
                        f"| <= {variant.cores_target:g} | {_met(cores <= variant.cores_target)} "
                        if variant.cores_target is not None
                        else "| | "
                    )
                    + f"| {direct['lag']['p99_ms']:.2f} / {side['lag']['p99_ms']:.2f} ms "
                    f"| {side['fell_behind'] or 'no one'} |"
                )
    return "\n".join(rows)


def cost_table(results: dict[str, Any]) -> str:
    """CPU microseconds per relayed chunk, by process: the figure to size replicas with."""
    rows = [
        "| streams | direct: client | direct: upstream | bridge: bridge "
        "| bridge: grpc.aio client | bridge: upstream | floor: server | floor: grpc.aio client "
        "| streams per bridge core at 50 chunks/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for concurrency, pair in results["stream"].items():
        d, b = pair["direct"], pair["bridge"]

        def us(entry: dict[str, Any], name: str) -> float:
            return 1e6 * float(entry["cpu"].get(name, 0.0)) / entry["rate"]

        bridge_us = us(b, "bridge")
        f = pair.get("floor")
        floor = f"{us(f, 'floor'):.1f} | {us(f, 'client'):.1f}" if f else " | "
        rows.append(
            f"| {concurrency} | {us(d, 'client'):.1f} | {us(d, 'upstream'):.1f} "
            f"| {bridge_us:.1f} | {us(b, 'client'):.1f} | {us(b, 'upstream'):.1f} "
            f"| {floor} | {1e6 / (bridge_us * 50):,.0f} |"
        )
    return "\n".join(rows)


def compact_micro(path: Path) -> None:
    """Drop pytest-benchmark's per-round samples (~80,000 lines) from its JSON: the
    summary statistics are what is tracked, and the file stays readable in a diff."""
    if not path.exists():
        return
    data = json.loads(path.read_text())
    for bench in data.get("benchmarks", []):
        bench.get("stats", {}).pop("data", None)
    path.write_text(json.dumps(data, indent=1) + "\n")


def micro_table(path: Path) -> str:
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    rows = ["| micro-benchmark | mean | min | ops/s |", "| --- | ---: | ---: | ---: |"]
    for bench in data.get("benchmarks", []):
        stats = bench["stats"]
        rows.append(
            f"| {bench['name']} | {stats['mean'] * 1e6:.2f} µs | {stats['min'] * 1e6:.2f} µs "
            f"| {stats['ops']:,.0f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=0.7, help="seconds before measuring")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pairs: give the measured process a core of its own (see Placement)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of the 16- and 256-stream phases"
    )
    parser.add_argument(
        "--batch-rounds",
        type=int,
        default=2,
        help="of those rounds, how many the sides added with the batched RPC run "
        "(its own, its floor's, and every side in bursts)",
    )
    parser.add_argument(
        "--compiled-rounds",
        type=int,
        default=2,
        help="rounds of the 16- and 256-stream phases with the compiled client",
    )
    parser.add_argument(
        "--unary-count", type=int, default=3000, help="calls measured per side, unary open loop"
    )
    parser.add_argument(
        "--open-duration", type=float, default=5.0, help="seconds measured per open-loop phase"
    )
    parser.add_argument(
        "--open-warmup", type=float, default=1.5, help="open loop: seconds after the ramp"
    )
    parser.add_argument(
        "--ramp", type=float, default=2.0, help="open loop: about how long the streams' starts take"
    )
    parser.add_argument(
        "--open-client",
        choices=["go", "python"],
        action="append",
        help="open loop's clients (default: both; go only when it builds)",
    )
    parser.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="build and use the compiled client (bench/goload)",
    )
    parser.add_argument("--streams", type=int, default=2000, help="open streams (capacity)")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds held before RSS")
    parser.add_argument(
        "--caller-rounds", type=int, default=4, help="callers: rounds of the variants"
    )
    parser.add_argument(
        "--caller-duration",
        type=float,
        default=2.0,
        help="callers: seconds measured per window of streams",
    )
    parser.add_argument(
        "--caller-unary-duration",
        type=float,
        default=4.0,
        help="callers: seconds measured per window of unary calls (shared by the variants)",
    )
    parser.add_argument(
        "--caller-streams", type=int, default=500, help="callers: open streams per bridge (RSS)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--micro-json", type=Path, default=ROOT / "bench" / "micro.json")
    parser.add_argument(
        "--open-loop",
        metavar="STREAMSxRATE",
        type=OpenLoop.parse,
        action="append",
        help="an open-loop shape, e.g. 1000x20 (repeatable; default: "
        + ", ".join(shape.label for shape in OPEN_LOOPS)
        + ")",
    )
    parser.add_argument(
        "--unary-rate",
        type=float,
        help="unary open loop's calls/s (default: half the bridge's capacity, measured)",
    )
    parser.add_argument("--goload-build", type=Path, default=GOLOAD / "gen", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=PHASES, action="append")
    args = parser.parse_args()

    compact_micro(args.micro_json)
    started = time.time()
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", file=sys.stderr)
    results: dict[str, Any] = {"machine": machine(), "load_before": load_before}
    placement = Placement.for_machine(args.pin)
    results["placement"] = {
        name: sorted(cpus) if cpus is not None else None
        for name, cpus in dataclasses.asdict(placement).items()
    }
    only = set(args.only or PHASES)
    compiled = Compiled(None, "--no-compiled")
    if args.compiled and only & {"compiled", "open"}:
        compiled = build_goload(args.goload_build)
    results["compiled_client"] = {
        "available": compiled.client is not None,
        "reason": compiled.reason,
    }
    if compiled.client is None:
        print(f"compiled client: none: {compiled.reason}", file=sys.stderr)
    upstream = start_upstream(placement.load)
    try:
        if only & {"pairs", "unary-open", "compiled", "open"}:
            bridge = start_bridge(upstream, cpus=placement.tested)
            try:
                if only & {"pairs", "unary-open", "compiled"}:
                    floor = start_floor(upstream, cpus=placement.tested)
                    try:
                        run_with_floor(results, upstream, bridge, floor, compiled, only, args)
                    finally:
                        floor.stop()
                if "open" in only:
                    clients = {"go": compiled.client, "python": PYTHON_CLIENT}
                    results["open_loop"] = {
                        name: run_open_loop(
                            upstream,
                            bridge,
                            client,
                            tuple(args.open_loop or open_loops_of(name)),
                            args,
                            placement,
                        )
                        for name in args.open_client or ("go", "python")
                        if (client := clients[name]) is not None
                    }
            finally:
                bridge.stop()
        if "capacity" in only:
            results["capacity"] = run_capacity(upstream, args)
        if "scale" in only:
            results["scale"] = run_scale(upstream, args)
        if "callers" in only:
            results["callers"] = run_callers(upstream, args, placement)
    finally:
        upstream.stop()
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.time() - started
    results["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(report(results, args.micro_json))
    print(f"\nJSON: {args.json}")
    return 0


PHASES: Final = ("pairs", "unary-open", "compiled", "open", "capacity", "scale", "callers")
"""`--only`'s choices, in the order they run (all of them by default)."""


def run_with_floor(
    results: dict[str, Any],
    upstream: Server,
    bridge: Server,
    floor: Server,
    compiled: Compiled,
    only: set[str],
    args: argparse.Namespace,
) -> None:
    """The phases that compare the bridge with the floor: pairs, unary open loop, compiled."""
    placement = Placement.for_machine(args.pin)
    if "pairs" in only:
        results.update(run_pairs(upstream, bridge, floor, args, placement))
    if "unary-open" in only:
        capacity = args.unary_rate * 2 if args.unary_rate else None
        if capacity is None and "unary" in results:
            capacity = results["unary"]["64"]["bridge"]["rate"]
        if capacity is None:  # without the pairs: the closed loop that measures it
            capacity = measure(
                "unary-bridge",
                bridge.address,
                UNARY_SCENARIO,
                [upstream, bridge, floor],
                label="unary-capacity",
                cpus=placement.load,
                concurrency=64,
                duration=args.duration,
                warmup=args.warmup,
            )["rate"]
        results["unary_open"] = run_unary_open(upstream, bridge, floor, capacity, args, placement)
    if "compiled" in only and compiled.client is not None:
        results["stream_compiled"] = run_streams_compiled(
            upstream, bridge, floor, compiled.client, args, placement
        )


def report(results: dict[str, Any], micro_json: Path | None = None) -> str:
    """Every table whose phases ran, in Markdown, under a header naming the run."""
    m = results["machine"]
    lines = [
        f"\n## Results ({results['when']}, {results['seconds']:.0f} s)\n",
        f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
    ]
    placed = results["placement"]
    if placed["tested"] is not None:
        lines.append(
            f"Pinned: the measured process (direct client, bridge or floor) on "
            f"CPU {placed['tested']}, the upstream and the bridge's client on CPU "
            f"{placed['load']} (`--no-pin` to leave placement to the scheduler)"
        )
    compiled = results.get("compiled_client", {})
    if compiled and not compiled["available"]:
        lines.append(f"Compiled-client rows skipped: {compiled['reason']}")
    lines.append(
        f"Load average before/after: {', '.join(f'{x:.2f}' for x in results['load_before'])}"
        f" / {', '.join(f'{x:.2f}' for x in results['load_after'])}\n"
    )
    if results.keys() & {"unary", "unary_open", "stream", "ttfc", "capacity", "scale"}:
        lines += [table(results)]
    if "stream" in results:
        lines += ["\nCPU microseconds per chunk, by process (streaming):\n", cost_table(results)]
    if results.keys() & {"stream", "stream_compiled"}:
        lines += ["\nBridge CPU per chunk against the floor's (saturation):\n"]
        lines += [floor_table(results)]
    if "open_loop" in results:
        lines += ["\nOpen loop: streams paced by the upstream, latency per chunk:\n"]
        lines += [open_table(results["open_loop"])]
    if len(cpu_table(results).splitlines()) > 2:
        lines += ["\nCPU share of each process (cores; 1.00 = one core busy):\n"]
        lines += [cpu_table(results)]
    if "callers" in results:
        lines += [
            "\nCaller policy and retries (issues 18, 19): each variant against its baseline "
            "in the same window, the median over the rounds; unary calls one at a time "
            "taking turns between the bridges, 16 per-event streams through each at once, "
            "RSS of the fresh bridges holding open streams:\n",
            callers_table(results["callers"]),
        ]
    micro = micro_table(micro_json) if micro_json is not None else ""
    if micro:
        lines += ["\nHot-path micro-benchmarks (pytest-benchmark):\n", micro]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
