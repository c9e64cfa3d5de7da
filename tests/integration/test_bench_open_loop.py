"""`make bench`'s open-loop, unary open-loop and compiled-client phases, end to end and
tiny: bench/run.py starts the upstream, the bridge and the floor as processes on
loopback, runs each phase for about a second, and its JSON must be sane (every
chunk counted has its latency, none negative, no error, the CPU arithmetic
consistent). Figures are not judged: no wall-clock speed is asserted.

The compiled client's test builds bench/goload into a temporary directory and is
skipped, saying why, where Debian's Go toolchain and gRPC sources are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import run
from support import REPO_ROOT

SHAPE = "20x20"
STREAMS, RATE = 20, 20.0
TIMING = (
    "--open-duration", "1", "--open-warmup", "0.3", "--ramp", "0.25",
    "--duration", "0.6", "--warmup", "0.2",
)  # fmt: skip


def _bench(tmp_path: Path, *args: str, timeout: float = 100) -> tuple[dict[str, Any], str]:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "run.py"),
            *TIMING,
            "--json",
            str(out),
            "--micro-json",
            str(tmp_path / "absent.json"),
            *args,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _check_open_loop(shape: dict[str, Any]) -> None:
    assert (shape["streams"], shape["rate"], shape["offered"]) == (STREAMS, RATE, STREAMS * RATE)
    chunks = shape["scenario"]["chunks"]
    assert shape["scenario"] == {"chunks": chunks, "rate": RATE, "stamp": True}
    for side in ("direct", "per_event"):
        entry = shape[side]
        assert entry["errors"] == 0, entry.get("first_error")
        # Every chunk of the window was counted once, with its stamp's latency.
        assert 0 < entry["count"] <= STREAMS * (chunks + 3)
        assert entry["latency"]["samples"] == entry["count"]
        assert entry["latency"]["min_ms"] >= 0
        assert entry["latency"]["p50_ms"] <= entry["latency"]["p99_ms"]
        assert entry["lag"]["samples"] > 0 and entry["lag"]["min_ms"] >= -1.0
        assert entry["rate"] == pytest.approx(entry["count"] / entry["seconds"])
        assert entry["cpu_seconds"]["upstream"] > 0
    bridge = shape["per_event"]
    per_chunk = bridge["cpu_seconds"]["bridge"] / bridge["count"]
    assert bridge["cpu_per_chunk_us"] == pytest.approx(1e6 * per_chunk)
    assert bridge["cores_per_1000_at_50"] == pytest.approx(per_chunk * 50_000)
    for q in ("p50", "p99"):
        added = bridge["latency"][f"{q}_ms"] - shape["direct"]["latency"][f"{q}_ms"]
        assert bridge[f"added_{q}_ms"] == pytest.approx(added)
    assert isinstance(bridge["fell_behind"], str)


def test_open_loop_and_unary_open_loop_with_the_python_client(tmp_path: Path) -> None:
    results, report = _bench(
        tmp_path,
        "--only", "open", "--only", "unary-open", "--open-loop", SHAPE,
        "--open-client", "python", "--no-compiled", "--unary-rate", "40", "--unary-count", "30",
    )  # fmt: skip
    assert set(results["open_loop"]) == {"python"}
    _check_open_loop(results["open_loop"]["python"][SHAPE])
    unary = results["unary_open"]
    assert unary["rate"] == 40 and unary["capacity"] == 80
    for side in ("direct", "bridge", "floor"):
        entry = unary[side]
        assert entry["errors"] == 0, entry.get("first_error")
        assert entry["count"] == entry["latency"]["samples"] == entry["lag"]["samples"] == 30
        assert entry["latency"]["min_ms"] > 0
    assert results["compiled_client"] == {"available": False, "reason": "--no-compiled"}
    # The rows `make bench` prints.
    assert f"| {STREAMS:,} x {RATE:g} | python | per_event |" in report
    assert "| unary latency p99, open loop at 40 calls/s" in report
    assert "Compiled-client rows skipped: --no-compiled" in report


@pytest.mark.timeout(240)
def test_open_loop_and_saturation_with_the_compiled_client(tmp_path: Path) -> None:
    missing = run.goload_missing()
    if missing:
        pytest.skip(
            "bench/goload needs Debian's Go toolchain and gRPC sources (.ci/run installs "
            f"them; see examples/go/README.md); missing: {', '.join(missing)}"
        )
    results, report = _bench(
        tmp_path,
        "--only", "open", "--only", "compiled", "--open-loop", SHAPE, "--open-client", "go",
        "--compiled-rounds", "1", "--goload-build", str(tmp_path / "goload"),
        timeout=200,
    )  # fmt: skip
    assert results["compiled_client"] == {"available": True, "reason": ""}
    assert (tmp_path / "goload" / "bin" / "goload").is_file()
    _check_open_loop(results["open_loop"]["go"][SHAPE])
    for concurrency in ("16", "256"):
        pair = results["stream_compiled"][concurrency]
        for side, server in (
            ("per_event", "bridge"),
            ("batches_0", "bridge"),
            ("floor", "floor"),
            ("floor_batches", "floor"),
        ):
            entry = pair[side]
            assert entry["errors"] == 0, entry.get("first_error")
            assert entry["count"] > 0 and entry["latency"]["samples"] == 0  # not stamped
            assert entry["cpu_per_chunk_us"] == pytest.approx(
                1e6 * entry["cpu_seconds"][server] / entry["count"]
            )
        # Each RPC against its own floor: the batched one against the batched floor.
        for variant, floor in (("per_event", "floor"), ("batches_0", "floor_batches")):
            ratio = pair[variant]["cpu_per_chunk_us"] / pair[floor]["cpu_per_chunk_us"]
            assert pair[variant]["vs_floor"] == pytest.approx(ratio)
    assert f"| {STREAMS:,} x {RATE:g} | go | per_event |" in report
    assert "| 256 | Go (grpc-go) | per_event | 1 |" in report
    assert "| 256 | Go (grpc-go) | batches_0 | 1 |" in report


def test_a_closed_loop_phase_reads_the_servers_cpu_over_its_window() -> None:
    # The pairs' closed loops (`run.measure`): the client prints its window's edges and
    # cancels what is in flight at the end, so 4 streams of 500 chunks end with the window.
    upstream = run.start_upstream()
    try:
        bridge = run.start_bridge(upstream)
        try:
            entry = run.measure(
                "stream-bridge",
                bridge.address,
                run.STREAM_SCENARIO,
                [upstream, bridge],
                concurrency=4,
                warmup=0.2,
                duration=0.5,
            )
        finally:
            bridge.stop()
    finally:
        upstream.stop()
    assert entry["errors"] == 0, entry.get("first_error")
    assert entry["count"] > 0
    assert set(entry["cpu"]) == {"client", "upstream", "bridge"}
    assert 0 < entry["cpu"]["bridge"] < 2 and 0 < entry["cpu"]["upstream"] < 2
