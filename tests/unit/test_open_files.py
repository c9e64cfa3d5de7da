"""What the bridge asks of RLIMIT_NOFILE, with the limit itself replaced (no process is touched)."""

from __future__ import annotations

import logging
import resource

import pytest

from bridge import open_files
from bridge.config import BridgeConfig


@pytest.fixture
def limits(monkeypatch):
    """RLIMIT_NOFILE as a list [soft, hard] that setrlimit writes (refusing above hard)."""
    current = [1024, 4096]

    def setrlimit(which, value):
        assert which == resource.RLIMIT_NOFILE
        if value[0] > current[1] and current[1] != resource.RLIM_INFINITY:
            raise ValueError("not allowed to raise maximum limit")
        current[:] = list(value)

    monkeypatch.setattr(resource, "getrlimit", lambda _which: tuple(current))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    return current


def test_needed_counts_calls_upstream_connections_and_headroom():
    config = BridgeConfig(max_concurrent_rpcs=5000, max_upstream_connections=5000)
    assert open_files.needed(config) == 10_000 + open_files.HEADROOM


def test_the_soft_limit_rises_to_the_hard_one(limits, caplog):
    limit = open_files.raise_file_limit(BridgeConfig())
    assert (limit.before, limit.soft, limit.hard) == (1024, 4096, 4096)
    assert limits == [4096, 4096]
    assert not limit.short
    assert not caplog.records


def test_a_hard_limit_below_the_need_is_one_warning_with_the_numbers(limits, caplog):
    limits[:] = [1024, 1024]
    config = BridgeConfig(max_concurrent_rpcs=5000, max_upstream_connections=100)
    with caplog.at_level(logging.WARNING, "bridge.open_files"):
        limit = open_files.raise_file_limit(config)
    assert limit.short
    [record] = caplog.records
    message = record.getMessage()
    assert "the limit is 1024 (hard limit 1024)" in message
    assert "--max-concurrent-rpcs 5000 + --max-upstream-connections 100" in message
    assert f"may need {5100 + open_files.HEADROOM}" in message


def test_an_unlimited_hard_limit_raises_the_soft_one_to_the_need(limits):
    limits[:] = [1024, resource.RLIM_INFINITY]
    limit = open_files.raise_file_limit(BridgeConfig())
    assert limit.soft == open_files.needed(BridgeConfig())
    assert not limit.short
