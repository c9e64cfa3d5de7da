"""The open-files limit in a real process: raised to the hard limit, one WARNING when short."""

from __future__ import annotations

import os
import re
import resource
import subprocess
from collections.abc import Callable, Iterator

import pytest

from support import SERVICE_KEY, bridge_serve_argv

pytestmark = pytest.mark.timeout(60)

Start = Callable[[int, int], tuple[str, int]]


@pytest.fixture
def start_with_limit(upstream) -> Iterator[Start]:
    """Start a one-process bridge whose RLIMIT_NOFILE is (soft, hard); its output up to the
    "listening on" line, and the soft limit it then runs with (from /proc)."""
    started: list[subprocess.Popen[str]] = []

    def start(soft: int, hard: int) -> tuple[str, int]:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        process = subprocess.Popen(
            bridge_serve_argv("--workers", "1", "--upstream-url", upstream.base_url),
            env={**os.environ, "MYROUTER_API_KEY": SERVICE_KEY, "BRIDGE_LOG_FORMAT": "text"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=limit,  # only setrlimit, before exec
        )
        started.append(process)
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "listening on" in line:
                break
        with open(f"/proc/{process.pid}/limits", encoding="ascii") as limits:
            found = re.search(r"Max open files\s+(\d+)", limits.read())
        assert found, "no open-files line in /proc/PID/limits"
        return "".join(lines), int(found.group(1))

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def test_a_short_hard_limit_gives_one_warning_with_the_figures(start_with_limit):
    output, soft = start_with_limit(1024, 1500)
    assert soft == 1500  # raised to the hard limit all the same
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, output
    # the defaults: 1000 calls + 1000 upstream connections + 256 spare
    assert "the limit is 1500 (hard limit 1500)" in warnings[0]
    assert "--max-concurrent-rpcs 1000 + --max-upstream-connections 1000" in warnings[0]
    assert "may need 2256" in warnings[0]


def test_the_soft_limit_is_raised_to_the_hard_one_without_a_word(start_with_limit):
    output, soft = start_with_limit(1024, 4096)
    assert soft == 4096
    assert "open files" not in output
