"""The event-loop choice in a real bridge process: each loop relays a stream."""

from __future__ import annotations

import pytest

from support import CALLER_METADATA, BridgeProcess, chat_request, stub_for

pytestmark = pytest.mark.timeout(60)


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
