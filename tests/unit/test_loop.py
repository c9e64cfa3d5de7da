"""The event-loop choice: uvloop by default where installed, asyncio on request."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bridge import loop
from bridge.config import ConfigError, parse_serve_config

pytestmark = pytest.mark.timeout(60)


def test_auto_means_uvloop_when_installed():
    assert loop.uvloop_available()  # a runtime dependency on this platform
    assert loop.chosen("auto") == "uvloop"
    assert loop.chosen("asyncio") == "asyncio"


@pytest.mark.parametrize(("name", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_run_uses_the_chosen_loop(name, module):
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    assert loop.run(which(), name) == module


def test_event_loop_setting_from_flag_and_env():
    assert parse_serve_config([], {}).event_loop == "auto"
    assert parse_serve_config([], {"BRIDGE_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    flag = ["--event-loop", "uvloop"]
    assert parse_serve_config(flag, {"BRIDGE_EVENT_LOOP": "asyncio"}).event_loop == "uvloop"
    with pytest.raises(ConfigError, match="BRIDGE_EVENT_LOOP"):
        parse_serve_config([], {"BRIDGE_EVENT_LOOP": "trio"})


def test_run_raises_the_young_collection_threshold_while_the_loop_runs():
    before = gc.get_threshold()

    async def seen() -> tuple[int, ...]:
        return gc.get_threshold()

    during = loop.run(seen(), "asyncio")
    assert during == (loop.YOUNG_COLLECTION_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before  # the caller's process is left as it was
