"""`make bench`'s callers phase (issues 18, 19), end to end and tiny: bench/run.py starts
the upstream, four bridges (no policy, no retries, a policy in process, a policy on a
redis-server it starts) and runs one short round. Its JSON must be sane: every variant
measured with no error, the rows built from the same-round figures. Figures are not
judged: no wall-clock speed is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run
from support import REPO_ROOT

pytestmark = pytest.mark.timeout(120)


def test_the_callers_phase_measures_every_variant_in_the_same_rounds(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "run.py"),
            "--only",
            "callers",
            "--caller-rounds",
            "1",
            "--caller-duration",
            "0.5",
            "--caller-unary-duration",
            "0.5",
            "--caller-streams",
            "20",
            "--json",
            str(out),
            "--micro-json",
            str(tmp_path / "absent.json"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    callers = json.loads(out.read_text())["callers"]
    ran = {variant.name for variant in run.CALLER_VARIANTS}
    if shutil.which("redis-server") is None:  # the phase says why; .ci/run installs it
        assert set(callers["skipped"]) == {"policy+redis"}
        ran.discard("policy+redis")
    else:
        assert callers["skipped"] == {}
    assert set(callers["rounds"]) == set(callers["rss"]) == ran
    for name in ran:
        (entry,) = callers["rounds"][name]
        assert entry["unary_errors"] == entry["stream_errors"] == 0
        assert entry["calls"] > 0 and 0 < entry["p50_ms"] <= entry["p99_ms"]
        assert entry["chunks_per_s"] > 0 and entry["us_per_chunk"] > 0
        held = callers["rss"][name]
        assert held["opened"] == held["still_open"] == 20 and held["errors"] == 0
    # Every turn called every bridge once: the same number of calls each.
    assert len({callers["rounds"][name][0]["calls"] for name in ran}) == 1
    rows = {(figure["variant"], figure["baseline"]): figure for figure in callers["figures"]}
    for comparison in run.CALLER_COMPARISONS:
        if {comparison.variant, comparison.baseline} <= ran:
            figure = rows[(comparison.variant, comparison.baseline)]
            variant = callers["rounds"][comparison.variant][0]
            baseline = callers["rounds"][comparison.baseline][0]
            assert figure["added_p50_ms"] == pytest.approx(variant["p50_ms"] - baseline["p50_ms"])
            ratio = variant["us_per_chunk"] / baseline["us_per_chunk"]
            assert figure["chunk_ratio"] == pytest.approx(ratio)
    assert "policy vs none" in done.stdout
