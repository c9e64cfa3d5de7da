"""The event-loop choice: uvloop by default where installed, asyncio on request."""

from __future__ import annotations

import asyncio

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
    with pytest.raises(ConfigError, match="event_loop"):
        parse_serve_config([], {"BRIDGE_EVENT_LOOP": "trio"})
