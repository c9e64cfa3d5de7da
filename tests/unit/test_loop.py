"""The event-loop choice: uvloop by default where installed, asyncio on request."""

from __future__ import annotations

import asyncio

import pytest

from bridge import loop
from bridge.config import ConfigError, parse_serve_config
from support import CALLER_METADATA, BridgeProcess, chat_request, stub_for

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


@pytest.mark.parametrize("name", ["uvloop", "asyncio"])
def test_bridge_process_relays_a_stream_on_each_loop(upstream, name):
    process = BridgeProcess("--upstream-url", upstream.base_url, "--event-loop", name)
    try:
        channel, stub = stub_for(process.target)
        with channel:
            chunks = list(
                stub.StreamChatCompletion(chat_request("a b c"), metadata=CALLER_METADATA)
            )
        assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == (
            "You said: a b c"
        )
    finally:
        process.kill()
    assert f"event loop: {name}" in process.output()
