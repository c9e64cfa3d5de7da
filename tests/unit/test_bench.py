"""The benchmark harness's pure parts: percentiles, CPU-per-chunk arithmetic, the open
loop's schedule, who fell behind, the clients' command lines, the callers phase's
same-round figures and the tables.

`make bench` reads its targets from these figures, so a slip in the arithmetic
would report a target met (or missed) that was not. The harness end to end, on
real sockets, is tests/integration/test_bench_open_loop.py and test_bench_callers.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import select
from typing import Any

import pytest

from bench import floor, load, run
from bridge.callers import ANONYMOUS
from bridge.policy import Limits, parse_policy
from myrouter.chat.v1 import chat_pb2


def test_percentile_is_nearest_rank_on_the_sorted_values() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert run.percentile(values, 0.0) == 1.0
    assert run.percentile(values, 0.5) == 3.0
    assert run.percentile(values, 1.0) == 5.0
    hundred = [float(n) for n in range(100, 0, -1)]  # 100 .. 1, unsorted
    assert run.percentile(hundred, 0.99) == 99.0
    assert run.percentile(hundred, 0.50) == 51.0  # index round(0.5 * 99) = 50 of 1..100
    assert math.isnan(run.percentile([], 0.5))


def test_latency_summary() -> None:
    summary = run.latency_summary([float(n) for n in range(1, 1001)])
    assert summary == {
        "samples": 1000,
        "min_ms": 1.0,
        "p50_ms": 501.0,
        "p99_ms": 990.0,
        "p999_ms": 999.0,
        "max_ms": 1000.0,
    }
    empty = run.latency_summary([])
    assert empty["samples"] == 0 and math.isnan(empty["p99_ms"]) and math.isnan(empty["max_ms"])


def test_cpu_per_chunk_and_cores_per_thousand_streams() -> None:
    # 2 CPU seconds over 50,000 chunks: 40 µs each; 1,000 streams at 50/s = 50,000
    # chunks/s need 2 cores (the "today ~2").
    per_chunk = run.cpu_per_chunk(2.0, 50_000)
    assert per_chunk == pytest.approx(40e-6)
    assert run.cores_per_thousand(per_chunk) == pytest.approx(2.0)
    assert run.cores_per_thousand(25e-6) == pytest.approx(1.25)
    assert run.cores_per_thousand(per_chunk, rate=20) == pytest.approx(0.8)
    assert math.isnan(run.cpu_per_chunk(1.0, 0))


@pytest.mark.parametrize(("streams", "rate"), [(1000, 20.0), (2000, 10.0), (20, 20.0), (7, 3.0)])
def test_stagger_ramp_spreads_every_stream_to_its_own_phase(streams: int, rate: float) -> None:
    ramp = run.stagger_ramp(streams, rate, 2.0)
    periods = round(ramp * rate)
    assert periods == pytest.approx(ramp * rate)  # a whole number of periods
    assert math.gcd(periods, streams) == 1
    assert 2.0 <= ramp < 2.0 + 10 / rate  # near the target, never shorter
    # Stream i starts i * ramp / streams in: its phase within a period is i*k/streams.
    phases = {(index * periods) % streams for index in range(streams)}
    assert len(phases) == streams


def test_stagger_ramp_examples() -> None:
    assert run.stagger_ramp(1000, 20, 2.0) == pytest.approx(41 / 20)  # 40 shares a factor
    assert run.stagger_ramp(2000, 10, 2.0) == pytest.approx(21 / 10)
    assert run.stagger_ramp(10, 1, 0.0) == 1.0  # at least one period


def test_open_loop_chunks_outlast_the_window() -> None:
    rate, ramp, warmup, duration = 20.0, 2.05, 1.5, 5.0
    chunks = run.open_loop_chunks(rate, ramp, warmup, duration)
    # The first stream opens at 0; the window ends at ramp + warmup + duration.
    assert chunks / rate >= ramp + warmup + duration
    assert chunks == math.ceil(20 * 9.55)


def _side(rate: float, lag_p99: float, client_cores: float = 0.3) -> dict[str, Any]:
    return {"rate": rate, "lag": {"p99_ms": lag_p99}, "cpu": {"client": client_cores}}


def test_fell_behind() -> None:
    offered = 20_000.0
    assert run.fell_behind(_side(20_000, 0.5), _side(19_900, 0.8), offered) == ""
    assert run.fell_behind(_side(20_000, 0.5), _side(12_000, 0.8), offered) == (
        "bridge (delivered 60%)"
    )
    assert run.fell_behind(_side(15_000, 0.5), _side(15_000, 0.8), offered) == (
        "upstream (direct delivered 75%)"
    )
    # A client's lag is reported; it does not excuse the bridge's short delivery.
    assert run.fell_behind(_side(20_000, 0.5), _side(12_000, 40.0), offered) == (
        "bridge client (lag p99 40.0 ms); bridge (delivered 60%)"
    )
    # A saturated client bounds what it received: nobody else is blamed for it.
    assert run.fell_behind(_side(20_000, 0.5), _side(12_000, 1.0, 0.95), offered) == (
        "bridge client (saturated, 0.95 core)"
    )
    assert run.fell_behind(_side(15_000, 0.5, 0.99), _side(15_000, 1.0), offered) == (
        "direct client (saturated, 0.99 core)"
    )
    both = run.fell_behind(_side(20_000, 9.0), _side(20_000, 6.0), offered)
    assert both == "direct client (lag p99 9.0 ms); bridge client (lag p99 6.0 ms)"
    assert run.fell_behind(_side(20_000, float("nan")), _side(20_000, 1.0), offered) == ""


def test_client_argv_is_one_command_line_for_both_clients() -> None:
    scenario = {"chunks": 10, "rate": 20.0, "stamp": True}
    python = run.client_argv(
        run.PYTHON_CLIENT, "open-bridge", "127.0.0.1:1", scenario, concurrency=5, ramp=0.25
    )
    assert python[:2] == list(run.PYTHON_CLIENT.command)
    assert python[2:] == [
        "open-bridge",
        "--target",
        "127.0.0.1:1",
        "--scenario",
        json.dumps(scenario),
        "--concurrency",
        "5",
        "--ramp",
        "0.25",
    ]
    go = run.Client("go", ("/x/goload",))
    argv = run.client_argv(go, "stream-bridge", "h:2", {}, rpc="per_event", unary_count=3)
    assert argv == [
        "/x/goload",
        "stream-bridge",
        "--target",
        "h:2",
        "--scenario",
        "{}",
        "--rpc",
        "per_event",
        "--unary-count",
        "3",
    ]
    # bench/load.py accepts what the harness sends it.
    parsed = load._parser().parse_args(python[2:])
    assert (parsed.mode, parsed.concurrency, parsed.ramp) == ("open-bridge", 5, 0.25)


def test_every_variant_names_an_rpc_both_clients_have() -> None:
    goload = (run.GOLOAD / "main.go").read_text(encoding="utf-8")
    go_rpcs = set(re.findall(r'^\t"(\w+)": func\(', goload, re.MULTILINE))
    assert go_rpcs == set(load.RPCS) and "per_event" in go_rpcs
    assert {variant.rpc for variant in run.VARIANTS} <= set(load.RPCS)
    assert len({variant.name for variant in run.VARIANTS}) == len(run.VARIANTS)


def test_open_loop_shapes_parse() -> None:
    default = run.OpenLoop.parse("1000x20")
    assert default is run.OPEN_LOOPS[0] and default.p99_target_ms == 5.0
    assert default.offered == 20_000 and default.label == "1000x20"
    tiny = run.OpenLoop.parse("20x2.5")
    assert (tiny.streams, tiny.rate, tiny.p99_target_ms, tiny.label) == (20, 2.5, None, "20x2.5")
    for bad in ("20", "x20", "0x20", "20x0", "20xnan", "axb", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            run.OpenLoop.parse(bad)


def test_each_client_runs_its_default_shapes() -> None:
    # The compiled client runs every shape, the sizing one at 50 chunks/s included; the
    # Python client the first shape only (it lags by itself beyond it).
    go = [shape.label for shape in run.open_loops_of("go")]
    assert go == ["1000x20", "2000x10", "400x50"]
    assert [shape.label for shape in run.open_loops_of("python")] == ["1000x20"]
    assert any(shape.rate == run.COST_RATE for shape in run.open_loops_of("go"))


def test_summarize_joins_the_clients_window_with_the_servers_cpu() -> None:
    result = {
        "count": 10_000,
        "seconds": 5.0,
        "cpu": 0.5,
        "errors": 0,
        "first_error": "",
        "lat_ms": [1.0, 2.0, 3.0],
        "lag_ms": [0.1],
    }
    out = run.summarize(result, {"bridge": 2.5, "upstream": 1.0}, wall=5.0)
    assert out["rate"] == 2000.0
    assert out["cpu"] == {"client": 0.1, "bridge": 0.5, "upstream": 0.2}
    assert out["cpu_seconds"] == {"client": 0.5, "bridge": 2.5, "upstream": 1.0}
    assert out["latency"]["samples"] == 3 and out["latency"]["p50_ms"] == 2.0
    assert out["lag"]["max_ms"] == 0.1
    assert "first_error" not in out
    failed = run.summarize({**result, "errors": 2, "first_error": "boom"}, {}, wall=5.0)
    assert failed["first_error"] == "boom"


def test_poisson_arrivals() -> None:
    arrivals = load.poisson_arrivals(500.0, 20_000, random.Random(7))
    assert len(arrivals) == 20_000
    assert arrivals == sorted(arrivals) and arrivals[0] > 0
    gaps = [b - a for a, b in zip([0.0, *arrivals], arrivals, strict=False)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 500, rel=0.05)
    # Exponential gaps: about 1/e of them longer than the mean (fixed ones: none).
    assert sum(gap > 1 / 500 for gap in gaps) / len(gaps) == pytest.approx(math.exp(-1), abs=0.02)
    assert load.poisson_arrivals(500.0, 5, random.Random(7)) == arrivals[:5]  # seeded


def test_window_holds_its_start_not_its_end() -> None:
    window = load.Window(100, 200)
    assert 100 in window and 199 in window
    assert 99 not in window and 200 not in window


def _windowed(rate: float, **extra: Any) -> dict[str, Any]:
    latency = {"samples": 10, "p50_ms": 1.0, "p99_ms": 3.0}
    return {"rate": rate, "latency": latency, "lag": {"p99_ms": 0.5}, **extra}


def test_open_table_reports_against_the_targets() -> None:
    bridge = _windowed(
        19_900,
        added_p50_ms=0.5,
        added_p99_ms=6.0,
        cpu_per_chunk_us=24.0,
        cores_per_1000_at_50=1.2,
        fell_behind="",
    )
    bridge["latency"] = {"samples": 10, "p50_ms": 1.5, "p99_ms": 9.0}
    results = {
        "go": {
            "1000x20": {
                "streams": 1000,
                "rate": 20,
                "offered": 20_000,
                "direct": _windowed(20_000),
                "per_event": bridge,
            }
        }
    }
    rows = run.open_table(results).splitlines()
    assert len(rows) == 3
    cells = [cell.strip() for cell in rows[2].strip("|").split("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert len(cells) == len(header) == 14
    row = dict(zip(header, cells, strict=True))
    assert row["delivered: direct / bridge"] == "100% / 100% of 20,000/s"
    assert row["latency p99: direct / bridge / added"] == "3.00 / 9.00 / +6.00 ms"
    assert cells[6:8] == ["added p99 <= 5 ms", "**no**"]  # 6 ms added > 5
    assert row["bridge cores per 1,000 streams at 50 chunks/s"] == "1.20"
    assert cells[10:12] == ["<= 1.25", "yes"]
    assert row["fell behind"] == "no one"


def _entry(name: str, share: float, rate: float, **extra: Any) -> dict[str, Any]:
    return {"rate": rate, "cpu": {name: share, "client": 0.9}, **extra}


def test_floor_table_compares_cpu_per_chunk() -> None:
    results = {
        "stream": {
            "16": {
                "direct": _entry("client", 1.0, 100_000),
                "bridge": _entry("bridge", 0.9, 20_000),
                "floor": _entry("floor", 0.9, 30_000),
                "batches_0": _entry("bridge", 0.9, 90_000),
                "floor_batches": _entry("floor", 0.9, 45_000),
            }
        },
        "stream_bursts": {
            "16": {
                "direct": _entry("client", 1.0, 200_000),
                "batches_0": _entry("bridge", 0.9, 100_000),
                "floor_batches": _entry("floor", 0.6, 200_000),
            }
        },
        "stream_compiled": {
            "16": {
                "per_event": _entry("bridge", 0.95, 25_000, cpu_per_chunk_us=36.0),
                "batches_0": _entry("bridge", 0.95, 90_000, cpu_per_chunk_us=9.0),
                "floor": _entry("floor", 1.0, 40_000, cpu_per_chunk_us=25.0),
                "floor_batches": _entry("floor", 1.0, 60_000, cpu_per_chunk_us=18.0),
            }
        },
    }
    rows = run.floor_table(results).splitlines()
    assert len(rows) == 2 + 5
    python, python_batches, bursts, go, go_batches = rows[2:]
    assert "| per_event | 1 | 45.0 | 30.0 | 1.50x | <= 1.25x | **no** |" in python  # 0.9/20k...
    assert "| batches_0 | 1 | 10.0 | 20.0 | 0.50x |  |  |" in python_batches  # its own floor
    assert "| batches_0 | 16 | 9.0 | 3.0 | 3.00x |  |  |" in bursts  # the floor in bursts
    assert "| per_event | 1 | 36.0 | 25.0 | 1.44x | <= 1.25x | **no** |" in go
    assert "| batches_0 | 1 | 9.0 | 18.0 | 0.50x |" in go_batches  # the batched floor
    assert "Go (grpc-go)" in go and "grpc.aio (Python)" in python
    # A results file from before the batched floor: no row without its floor.
    del results["stream_compiled"]["16"]["floor_batches"]
    assert len(run.floor_table(results).splitlines()) == 2 + 4


def test_stream_rows_read_each_rpc_against_its_floor() -> None:
    pair = {
        "direct": _entry("client", 1.0, 100_000),
        "bridge": _entry("bridge", 0.9, 20_000),
        "floor": _entry("floor", 0.9, 40_000),
        "batches_0": _entry("bridge", 0.9, 50_000),
        "floor_batches": _entry("floor", 0.9, 25_000),
    }
    bursts = {
        "direct": _entry("client", 1.0, 200_000),
        "bridge": _entry("bridge", 0.9, 30_000),
        "batches_0": _entry("bridge", 0.9, 100_000),
        "floor_batches": _entry("floor", 0.9, 200_000),
    }
    rows = run.stream_rows({"stream": {"256": pair}, "stream_bursts": {"256": bursts}})
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert cells == [
        # The historical row: its label and target as before.
        ["stream chunks/s, 256 streams", "100,000", "20,000", "0.20x", ">= 0.8x", "**no**",
         "40,000 (0.40x direct)", "0.50x"],
        ["stream chunks/s, 256 streams, batches_0", "100,000", "50,000", "0.50x", "", "",
         "25,000 (0.25x direct)", "2.00x"],
        # In bursts the per-event RPC reads the first shape's per-event floor (the same
        # messages), the batched one the floor in bursts.
        ["stream chunks/s, 256 streams, 16 events per upstream write", "200,000", "30,000",
         "0.15x", "", "", "40,000 (0.20x direct)", "0.75x"],
        ["stream chunks/s, 256 streams, 16 events per upstream write, batches_0", "200,000",
         "100,000", "0.50x", "", "", "200,000 (1.00x direct)", "0.50x"],
    ]  # fmt: skip


def test_variant_sides_read_each_rpc_against_its_floor() -> None:
    bridge = run.Server("bridge", None, "b:1")  # type: ignore[arg-type]
    floor_server = run.Server("floor", None, "f:2")  # type: ignore[arg-type]
    sides = run.variant_sides(bridge, floor_server, run.VARIANTS, frozenset({1}), "bridge")
    assert [(side.name, side.target, dict(side.options)) for side in sides] == [
        ("bridge", "b:1", {"rpc": "per_event"}),
        ("batches_0", "b:1", {"rpc": "batches", "max_delay": "0"}),
        ("batches_100ms", "b:1", {"rpc": "batches", "max_delay": "0.1"}),
        ("floor", "f:2", {"rpc": "per_event"}),
        ("floor_batches", "f:2", {"rpc": "batches"}),
    ]
    assert {side.client for side in sides} == {"bridge"}
    assert {variant.rpc for variant in run.VARIANTS} <= set(run.FLOOR_SIDES)
    # The pairs run the bursts' sides, and the per-event floor in one shape only.
    names = {"direct", *(side.name for side in sides)}
    for shape in run.STREAM_SHAPES:
        assert shape.sides is None or set(shape.sides) <= names
    assert [shape.per_event_floor for shape in run.STREAM_SHAPES] == [True, False]
    assert [shape.batch for shape in run.STREAM_SHAPES] == [1, 16]


def test_pair_rounds_keep_the_historical_sides_rounds() -> None:
    args = argparse.Namespace(rounds=3, batch_rounds=2)
    one_per_write, bursts = run.STREAM_SHAPES
    historical = {run.pair_rounds(args, one_per_write, side, 256) for side in run.HISTORICAL_SIDES}
    assert historical == {3}
    assert run.pair_rounds(args, one_per_write, "batches_0", 16) == 2
    assert run.pair_rounds(args, one_per_write, "floor_batches", 256) == 2
    assert run.pair_rounds(args, bursts, "direct", 256) == 2
    assert run.pair_rounds(args, bursts, "batches_0", 1) == 1


def test_the_batched_floor_groups_chunks_as_the_upstream_writes_them() -> None:
    chunks = [chat_pb2.ChatCompletionChunk(id=f"c{i}") for i in range(5)]
    messages = floor.grouped(chunks, 2)
    assert [[chunk.id for chunk in message.chunks] for message in messages] == [
        ["c0", "c1"],
        ["c2", "c3"],
        ["c4"],
    ]
    assert [len(message.chunks) for message in floor.grouped(chunks, 1)] == [1] * 5
    assert floor.write_size(load.bridge_request(run.BURST_SCENARIO)) == 16
    assert floor.write_size(load.bridge_request(run.STREAM_SCENARIO)) == 1
    assert floor.write_size(load.bridge_request({"chunks": 3})) == 1
    assert floor.write_size(chat_pb2.ChatCompletionRequest()) == 1
    # Paced events go one a write, whatever the batch (myrouter_upstream's rule).
    assert floor.write_size(load.bridge_request({"batch": 8, "rate": 20.0})) == 1
    assert floor.write_size(load.bridge_request({"batch": 8, "chunk_delay": 0.1})) == 1


def test_emit_writes_every_byte_through_partial_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under PYTHONUNBUFFERED a partial write of stdout is not retried by `print`: the
    harness once read a result cut at 64 KiB. `emit` loops until the line is out."""
    written: list[bytes] = []
    waits: list[object] = []
    calls = 0

    real_write = os.write

    def write(fd: int, data: memoryview) -> int:
        nonlocal calls
        if fd != 1:
            return real_write(fd, data)
        calls += 1
        if calls == 2:
            raise BlockingIOError  # a full non-blocking pipe: wait, then go on
        piece = bytes(data[:7])
        written.append(piece)
        return len(piece)

    def wait(*args: object) -> tuple[list[int], list[int], list[int]]:
        waits.append(args)
        return [], [1], []

    monkeypatch.setattr(os, "write", write)  # the functions bench.load calls
    monkeypatch.setattr(select, "select", wait)
    message = {"count": 3, "lat_ms": [0.25, 1.5, 2.0], "first_error": ""}
    load.emit(message)
    assert b"".join(written) == json.dumps(message, separators=(",", ":")).encode() + b"\n"
    assert len(written) > 5 and waits == [([], [1], [])]


def test_caller_policy_counts_every_call_of_the_bench_and_refuses_none() -> None:
    """The bench's calls come without an identity: the default entry must carry all four
    limits (each call counted, streams asked for their usage) and the service key."""
    policy = parse_policy(run.caller_policy(), "policy.yaml")
    rule = policy.rule_for(ANONYMOUS)
    assert rule.service_key
    limit = run.CALLER_LIMIT
    assert rule.limits == Limits(limit, limit, limit, limit)
    assert parse_policy(run.caller_policy(7)).rule_for(ANONYMOUS).limits == Limits(7, 7, 7, 7)


def test_caller_comparisons_name_variants_the_phase_runs() -> None:
    names = {variant.name for variant in run.CALLER_VARIANTS}
    assert len(names) == len(run.CALLER_VARIANTS)
    for comparison in run.CALLER_COMPARISONS:
        assert {comparison.variant, comparison.baseline} <= names
    assert "callers" in run.PHASES


def _caller_rounds(**variants: list[tuple[float, float, float]]) -> dict[str, Any]:
    return {
        name: [{"p50_ms": p50, "p99_ms": p99, "us_per_chunk": us} for p50, p99, us in entries]
        for name, entries in variants.items()
    }


def test_caller_figures_read_each_round_against_the_same_rounds_baseline() -> None:
    # The machine slows down in round 2 for both: same-round differences stay 30-50 µs.
    rounds = _caller_rounds(
        none=[(1.00, 2.0, 40.0), (1.50, 3.0, 44.0), (1.10, 2.0, 42.0)],
        policy=[(1.03, 2.5, 41.0), (1.55, 3.0, 44.0), (1.14, 2.1, 41.0)],
    )
    comparison = run.CallerComparison("policy", "none", 18, p50_target_ms=0.05)
    figures = run.caller_figures(rounds, {"none": 10.0, "policy": 11.5}, comparison)
    assert figures["added_p50_ms"] == pytest.approx(0.04)  # median of 0.03, 0.05, 0.04
    assert figures["baseline_p50_ms"] == pytest.approx(1.10)
    assert figures["p50_ms"] == pytest.approx(1.14)
    assert figures["added_p99_ms"] == pytest.approx(0.1)
    assert figures["p50_met"]
    # The noise is the rounds' scatter of the paired figures, not the machine's drift.
    assert figures["p50_noise_ms"] == pytest.approx(0.01)
    # Ratios 41/40, 44/44, 41/42: half their range is the noise.
    assert figures["chunk_ratio"] == pytest.approx(1.0)
    assert figures["chunk_noise"] == pytest.approx((41 / 40 - 41 / 42) / 2)
    assert figures["chunk_met"]
    assert figures["added_rss_kib"] == pytest.approx(1.5) and figures["rss_met"]

    slower = run.CallerComparison("policy", "none", 18, p50_target_ms=0.035)
    assert not run.caller_figures(rounds, {}, slower)["p50_met"]
    assert "rss_kib" not in run.caller_figures(rounds, {}, slower)
    assert not run.caller_figures(rounds, {"none": 10.0, "policy": 12.5}, comparison)["rss_met"]
    assert not run.caller_figures(rounds, {"none": 12.5, "policy": 10.0}, comparison)["rss_met"]


def test_caller_figures_without_a_target_are_held_to_the_rounds_scatter() -> None:
    steady = [(1.00, 2.0, 40.0), (1.02, 2.0, 40.4), (1.01, 2.0, 40.2)]
    rounds = _caller_rounds(
        # +10, -10, 0 µs and +0.5%, -0.5%, 0: the rounds disagree, the median is nothing.
        retries=[(1.01, 2.0, 40.2), (1.01, 2.0, 40.2), (1.01, 2.0, 40.2)],
        costly=[(1.10, 2.0, 44.0), (1.12, 2.0, 44.4), (1.11, 2.0, 44.2)],
        steady=steady,
    )
    within = run.caller_figures(rounds, {}, run.CallerComparison("retries", "steady", 19))
    assert within["p50_met"] and within["chunk_met"]
    costly = run.caller_figures(rounds, {}, run.CallerComparison("costly", "steady", 19))
    assert not costly["p50_met"] and not costly["chunk_met"]
    # A change every round shows is outside the scatter, however small; cheaper too.
    assert costly["chunk_noise"] < 0.001 and costly["p50_noise_ms"] == pytest.approx(0.0)
    cheaper = _caller_rounds(steady=steady, cheap=[(0.5, 1.0, 30.0)] * 3)
    assert not run.caller_figures(cheaper, {}, run.CallerComparison("cheap", "steady", 19))[
        "chunk_met"
    ]


def test_callers_table_reports_against_the_targets() -> None:
    rounds = _caller_rounds(
        none=[(1.00, 2.0, 40.0), (1.20, 3.0, 44.0)],
        policy=[(1.03, 2.5, 41.0), (1.25, 3.0, 43.8)],
        **{"policy+redis": [(1.70, 4.0, 42.0), (1.90, 5.0, 45.0)]},
        **{"none, no retries": [(1.00, 2.0, 40.0), (1.20, 3.0, 44.0)]},
    )
    rss = {"none": 10.0, "policy": 10.5, "policy+redis": 13.0, "none, no retries": 10.0}
    callers = {
        "figures": [run.caller_figures(rounds, rss, c) for c in run.CALLER_COMPARISONS],
        "skipped": {},
    }
    table = run.callers_table(callers).splitlines()
    assert len(table) == 2 + len(run.CALLER_COMPARISONS)
    policy, redis, retries = table[2:]
    assert policy.startswith("| policy vs none | 18 | 1.100 / 1.140 / +40 µs | <= 50 µs | yes |")
    assert policy.endswith(
        "| +250 µs | 42.0 / 42.4 / 1.010x | ±1.5% | yes "
        "| 10.0 / 10.5 / +0.5 | within ±2 KiB | yes |"
    )
    assert redis.startswith("| policy+redis vs none | 18 | 1.100 / 1.800 / +700 µs | <= 500 µs ")
    assert "| **no** |" in redis and redis.endswith(
        "| 10.0 / 13.0 / +3.0 | within ±2 KiB | **no** |"
    )
    assert retries.startswith(
        "| none vs none, no retries | 19 | 1.100 / 1.100 / +0 µs "
        "| within the rounds' scatter (±0 µs) | yes |"
    )
    skipped = run.callers_table({"figures": [], "skipped": {"policy+redis": "no redis"}})
    assert skipped.splitlines()[-1].startswith("| policy+redis: skipped (no redis) |")


def test_rotated_starts_each_round_with_another_variant() -> None:
    names = ["a", "b", "c"]
    assert [run.rotated(names, r) for r in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert run.rotated([], 3) == []


def test_turns_split_the_unary_turns_latencies_by_target() -> None:
    assert run.turns([1.0, 2.0, 3.0, 1.5, 2.5, 3.5], 3) == [[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]]
    assert run.turns([], 4) == [[], [], [], []]
    with pytest.raises(ValueError, match="no whole turns"):
        run.turns([1.0, 2.0, 3.0], 2)
