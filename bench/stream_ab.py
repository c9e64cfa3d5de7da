"""Streaming A/B rounds: bridge variants side by side against one upstream, in turns.

For a change to the relay, measured the way BENCHMARKS.md asks for one: every
variant runs once per round, the rounds alternate, and each variant's figures
are read against the direct client and the grpc.aio floor of the same round
(other processes load this machine, so only same-round ratios mean much).

    .venv/bin/python bench/stream_ab.py --rounds 3 --concurrency 16 256 \\
        --variant per-event --variant batches:0 --variant batches:0.1 \\
        [--old-root /tmp/old-tree --variant old:per-event]

Variants: ``direct`` (the direct httpx client), ``floor`` (bench/floor.py),
``per-event`` (StreamChatCompletion), ``batches:S`` (StreamChatCompletionBatches
with max_delay S seconds), and ``old:...`` for the same against a bridge run from
another source tree (``--old-root``: e.g. ``git archive <commit> | tar -x -C
/tmp/old-tree``, with this tree's generated ``myrouter/`` copied in). Prints, per
concurrency, each variant's chunks/s per round and the median, its ratio to the
direct client's median, and its bridge (or floor) CPU microseconds per chunk;
the JSON goes to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # bench/ is not a package
    ROOT,
    STREAM_SCENARIO,
    Placement,
    Server,
    measure,
    start_bridge,
    start_floor,
    start_upstream,
)


def start_bridge_at(root: Path, upstream: Server, cpus: frozenset[int] | None) -> Server:
    """A one-worker bridge whose code comes from `root` (this tree or an older one)."""
    return start_bridge(upstream, cpus=cpus, root=root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--old-root", type=Path, default=None)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.7)
    parser.add_argument("--json", type=Path, default=Path("/tmp/stream_ab.json"))
    args = parser.parse_args()

    placement = Placement.for_machine(True)
    timing = {"duration": args.duration, "warmup": args.warmup}
    upstream = start_upstream(placement.load)
    servers = [upstream]
    targets: dict[str, Server] = {}
    try:
        if any(not v.startswith(("direct", "floor", "old:")) for v in args.variant):
            targets["new"] = start_bridge_at(ROOT, upstream, placement.tested)
        if any(v.startswith("old:") for v in args.variant):
            assert args.old_root is not None, "old: variants need --old-root"
            targets["old"] = start_bridge_at(args.old_root.resolve(), upstream, placement.tested)
        if "floor" in args.variant:
            targets["floor"] = start_floor(upstream, placement.tested)
        servers += list(targets.values())
        results: dict[str, Any] = {"load_before": os.getloadavg(), "runs": {}}
        for concurrency in args.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variant}
            for _ in range(args.rounds):
                for variant in args.variant:
                    runs[variant].append(
                        _measure(
                            variant, targets, upstream, servers, placement, concurrency, timing
                        )
                    )
            results["runs"][str(concurrency)] = runs
        results["load_after"] = os.getloadavg()
    finally:
        for server in servers:
            server.stop()
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(report(results), flush=True)
    return 0


def _measure(
    variant: str,
    targets: dict[str, Server],
    upstream: Server,
    servers: list[Server],
    placement: Placement,
    concurrency: int,
    timing: dict[str, float],
) -> dict[str, Any]:
    if variant == "direct":
        return measure(
            "stream-direct",
            upstream.address,
            STREAM_SCENARIO,
            servers,
            label=variant,
            cpus=placement.tested,
            concurrency=concurrency,
            **timing,
        )
    tree, _, rpc = variant.partition(":") if variant.startswith("old:") else ("new", "", variant)
    server = targets["floor" if variant == "floor" else tree]
    options: dict[str, Any] = {}
    if rpc.startswith("batches:"):
        options.update(rpc="batches", max_delay=float(rpc.split(":", 1)[1]))
    entry = measure(
        "stream-bridge",
        server.address,
        STREAM_SCENARIO,
        servers,
        label=variant,
        cpus=placement.load,
        concurrency=concurrency,
        **timing,
        **options,
    )
    entry["server"] = server.name
    return entry


def report(results: dict[str, Any]) -> str:
    lines = [f"load average before/after: {results['load_before']} / {results['load_after']}"]
    for concurrency, runs in results["runs"].items():
        direct = runs.get("direct")
        direct_rate = statistics.median(r["rate"] for r in direct) if direct else None
        lines.append(f"\n{concurrency} streams:")
        lines.append("| variant | chunks/s per round | median | vs direct | server µs/chunk |")
        lines.append("| --- | --- | ---: | ---: | ---: |")
        for variant, entries in runs.items():
            rates = [entry["rate"] for entry in entries]
            median = statistics.median(rates)
            ratio = f"{median / direct_rate:.2f}x" if direct_rate else ""
            name = "client" if variant == "direct" else entries[0]["server"]
            costs = [entry["cpu"][name] / entry["rate"] * 1e6 for entry in entries if entry["rate"]]
            lines.append(
                f"| {variant} | {' / '.join(f'{r:,.0f}' for r in rates)} | {median:,.0f} | "
                f"{ratio} | {' / '.join(f'{c:.1f}' for c in costs)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
