"""`make bench`: the bridge against the direct-HTTP baseline, side by side, in one run.

Processes (all on this machine, loopback only):

* one embedded upstream (``python -m myrouter_upstream``), in fast mode: each
  request names its scenario (``chunks``, no delay), so the direct client and
  the bridge read byte-identical streams from the same server;
* the bridge (``python -m bridge serve``), a separate process;
* for each measurement, a fresh load-generator process (``bench/load.py``):
  httpx against the upstream (direct) or grpc.aio against the bridge.

For every phase the harness records the CPU share of each process (client,
bridge, upstream), so a reader can see which one bounded the figure and that
the load generator was not the bottleneck. Prints one Markdown table and
writes the same figures as JSON (``--json``, default ``bench/results.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MYROUTER_API_KEY": "bench-service-key"}

UNARY_SCENARIO = {"chunks": 16}
STREAM_CHUNKS = 500
STREAM_SCENARIO = {"chunks": STREAM_CHUNKS, "batch": 1}
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
    upstream = _announced(
        "upstream", [PY, "-m", "myrouter_upstream", "--port", "0"], r"(http://\S+)", cpus
    )
    upstream.address += "/"
    return upstream


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_bridge(upstream: Server, *extra: str, workers: int = 1, cpus: Cpus = None) -> Server:
    """A bridge process; one worker unless asked (the per-process figures need one)."""
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
        env=ENV,
        cwd=ROOT,
        preexec_fn=_on(cpus),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bridge exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            time.sleep(0.3)  # all workers up, not only the first
            return Server("bridge", process, f"127.0.0.1:{port}")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("bridge did not listen within 30 s")


def floor_argv(upstream_url: str) -> list[str]:
    """The floor's command line: its answers to the bench's scenarios are fetched before
    it listens, so no phase, even without warm-up, measures an upstream call through it."""
    prefetch = [
        arg
        for scenario in (UNARY_SCENARIO, STREAM_SCENARIO, TTFC_SCENARIO)
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
    **options: Any,
) -> dict[str, Any]:
    """Run `clients` load-generator processes at once (concurrency split between them)."""
    argv = [PY, str(ROOT / "bench" / "load.py"), mode, "--target", target]
    argv += ["--scenario", json.dumps(scenario)]
    for key, value in options.items():
        if key == "concurrency":
            value = max(1, int(value) // clients)
        argv += [f"--{key}", str(value)]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
            cwd=ROOT,
            preexec_fn=_on(cpus),
        )
        for _ in range(clients)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} failed: {err.decode()[-2000:]}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    merged = dict(results[0])
    for other in results[1:]:
        for key in ("count", "cpu", "errors"):
            merged[key] += other[key]
        merged["lat_ms"] = merged.get("lat_ms", []) + other.get("lat_ms", [])
        merged["seconds"] = max(merged["seconds"], other["seconds"])
    return merged


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
    with cpu_window(servers) as shares:
        result = load(mode, target, scenario, clients, cpus, **options)
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
    if latencies:
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


def run_pairs(
    upstream: Server,
    bridge: Server,
    floor: Server,
    args: argparse.Namespace,
    placement: Placement,
) -> dict[str, Any]:
    """Each figure three times: direct, through the bridge, and against the grpc.aio floor."""
    servers = [upstream, bridge, floor]
    timing = {"duration": args.duration, "warmup": args.warmup}
    results: dict[str, Any] = {"unary": {}, "stream": {}, "ttfc": {}}
    # The floor is called exactly like the bridge (same client mode, same requests).
    # Placement: the process under test has a core of its own (the direct client, or
    # the bridge / floor); the others share the second core.
    sides = (
        ("direct", "direct", upstream.address, placement.tested),
        ("bridge", "bridge", bridge.address, placement.load),
        ("floor", "bridge", floor.address, placement.load),
    )
    for concurrency in (1, 64):
        pair = {}
        for side, client, target, cpus in sides:
            pair[side] = measure(
                f"unary-{client}",
                target,
                UNARY_SCENARIO,
                servers,
                label=f"unary-{side}",
                cpus=cpus,
                concurrency=concurrency,
                **timing,
            )
        results["unary"][str(concurrency)] = pair
    for concurrency in (1, 16, 256):
        # Throughput on a shared 2-core machine moves by +-25% from one 3 s window to
        # the next; the sides take turns, `rounds` times, and each keeps its median run.
        # One stream is latency-bound and has no target: one round is enough.
        rounds = args.rounds if concurrency > 1 else 1
        runs: dict[str, list[dict[str, Any]]] = {side[0]: [] for side in sides}
        for _ in range(rounds):
            for side, client, target, cpus in sides:
                runs[side].append(
                    measure(
                        f"stream-{client}",
                        target,
                        STREAM_SCENARIO,
                        servers,
                        label=f"stream-{side}",
                        cpus=cpus,
                        concurrency=concurrency,
                        **timing,
                    )
                )
        results["stream"][str(concurrency)] = {
            side: median_run(entries) for side, entries in runs.items()
        }
    for side, client, target, cpus in sides:
        results["ttfc"][side] = measure(
            f"ttfc-{client}",
            target,
            TTFC_SCENARIO,
            servers,
            label=f"ttfc-{side}",
            cpus=cpus,
            concurrency=1,
            **timing,
        )
    return results


def run_capacity(upstream: Server, args: argparse.Namespace) -> dict[str, Any]:
    """RSS of a fresh bridge holding `args.streams` open streams that each get 1 chunk/s."""
    bridge = start_bridge(upstream)
    try:
        # Warm the process up (imports, pools, first RPC) before the idle figure.
        load("stream-bridge", bridge.address, TTFC_SCENARIO, concurrency=4, duration=0.5)
        time.sleep(0.5)
        idle = bridge.rss()
        argv = [PY, str(ROOT / "bench" / "load.py"), "hold-bridge", "--target", bridge.address]
        argv += ["--scenario", json.dumps(HOLD_SCENARIO), "--concurrency", str(args.streams)]
        argv += ["--channels", "8"]
        client = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, cwd=ROOT
        )
        assert client.stdout is not None and client.stdin is not None
        try:
            ready = json.loads(client.stdout.readline().decode())
            time.sleep(args.hold)  # every stream has had a few chunks: steady state
            with cpu_window([upstream, bridge]) as shares:
                time.sleep(2.0)
            loaded = bridge.rss()
            client.stdin.close()
            summary = json.loads(client.stdout.readline().decode())
            client.wait(60)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    finally:
        bridge.stop()
    per_stream = (loaded - idle) / args.streams
    out = {
        "streams": args.streams,
        "opened": ready["ready"],
        "still_open": summary["open"],
        "ramp_s": ready["ramp_s"],
        "rss_idle_mib": idle / 2**20,
        "rss_loaded_mib": loaded / 2**20,
        "rss_per_stream_kib": per_stream / 1024,
        "chunks_per_s": summary["count"] / summary["seconds"],
        "errors": summary["errors"],
        "cpu": {"client": summary["cpu"] / summary["seconds"], **shares},
    }
    print(
        f"  capacity: {out['opened']} open, RSS {out['rss_idle_mib']:.1f} -> "
        f"{out['rss_loaded_mib']:.1f} MiB, {out['rss_per_stream_kib']:.1f} KiB/stream, "
        f"{out['chunks_per_s']:.0f} chunks/s, errors {out['errors']}",
        file=sys.stderr,
        flush=True,
    )
    return out


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

    for concurrency, pair in results["unary"].items():
        for q in ("p50", "p99"):
            d, b = pair["direct"][f"{q}_ms"], pair["bridge"][f"{q}_ms"]
            target, limit = "", None
            if concurrency == "64":
                limit = 0.5 if q == "p50" else 2.0
                target = f"added <= {limit} ms"
            met = _met(b - d <= limit) if limit is not None else ""
            rows.append(
                f"| unary latency {q}, concurrency {concurrency} | {d:.2f} ms | {b:.2f} ms "
                f"| {b - d:+.2f} ms | {target} | {met} " + floor_ms(pair.get("floor"), f"{q}_ms", b)
            )
    for concurrency, pair in results["stream"].items():
        d, b = pair["direct"]["rate"], pair["bridge"]["rate"]
        target = ">= 0.8x" if concurrency in ("16", "256") else ""
        met = _met(b >= 0.8 * d) if target else ""
        floor = pair.get("floor")
        tail = (
            f"| {floor['rate']:,.0f} ({floor['rate'] / d:.2f}x direct) | {b / floor['rate']:.2f}x |"
            if floor
            else "| |"
        )
        rows.append(
            f"| stream chunks/s, {concurrency} streams | {d:,.0f} | {b:,.0f} | {b / d:.2f}x "
            f"| {target} | {met} " + tail
        )
    ttfc = results["ttfc"]
    for q in ("p50", "p99"):
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
    best = max(pair["bridge"]["rate"] for pair in results["stream"].values())
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
    rows.append(
        f"| best aggregate chunks/s through the bridge | | {best:,.0f} | | >= 50,000 "
        f"| {_met(best >= 50_000)} | | |"
    )
    return "\n".join(rows)


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

    for kind in ("unary", "stream"):
        for concurrency, pair in results[kind].items():
            for side in ("direct", "bridge", "floor"):
                if side in pair:
                    row(f"{kind} {side} x{concurrency}", pair[side])
    for side in ("direct", "bridge", "floor"):
        if side in results["ttfc"]:
            row(f"ttfc {side}", results["ttfc"][side])
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
    parser.add_argument("--streams", type=int, default=2000, help="open streams (capacity)")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds held before RSS")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--micro-json", type=Path, default=ROOT / "bench" / "micro.json")
    parser.add_argument("--only", choices=["pairs", "capacity", "scale"], action="append")
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
    upstream = start_upstream(placement.load)
    try:
        only = set(args.only or ("pairs", "capacity", "scale"))
        if "pairs" in only:
            bridge = start_bridge(upstream, cpus=placement.tested)
            try:
                floor = start_floor(upstream, cpus=placement.tested)
                try:
                    results.update(run_pairs(upstream, bridge, floor, args, placement))
                finally:
                    floor.stop()
            finally:
                bridge.stop()
        if "capacity" in only:
            results["capacity"] = run_capacity(upstream, args)
        if "scale" in only:
            results["scale"] = run_scale(upstream, args)
    finally:
        upstream.stop()
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.time() - started
    results["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    args.json.write_text(json.dumps(results, indent=1) + "\n")

    if "unary" in results:  # the pairs ran; capacity and scale rows appear when they ran
        m = results["machine"]
        print(f"\n## Results ({results['when']}, {results['seconds']:.0f} s)\n")
        print(
            f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        )
        placed = results["placement"]
        if placed["tested"] is not None:
            print(
                f"Pairs pinned: the measured process (direct client, bridge or floor) on "
                f"CPU {placed['tested']}, the upstream and the bridge's client on CPU "
                f"{placed['load']} (`--no-pin` to leave placement to the scheduler)"
            )
        print(
            f"Load average before/after: {', '.join(f'{x:.2f}' for x in results['load_before'])}"
            f" / {', '.join(f'{x:.2f}' for x in results['load_after'])}\n"
        )
        print(table(results))
        print("\nCPU microseconds per chunk, by process (streaming):\n")
        print(cost_table(results))
        print("\nCPU share of each process (cores; 1.00 = one core busy):\n")
        print(cpu_table(results))
        micro = micro_table(args.micro_json)
        if micro:
            print("\nHot-path micro-benchmarks (pytest-benchmark):\n")
            print(micro)
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
