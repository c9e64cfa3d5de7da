"""myrouter_client, the optional async helper: the request builder."""

from __future__ import annotations

import pytest

from myrouter_client import chat_request

pytestmark = pytest.mark.timeout(30)


def test_chat_request_builds_system_then_user_with_options():
    request = chat_request(
        "m", "hi", system="be brief", max_tokens=5, temperature=0, extra={"seed": 7}
    )
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "be brief"),
        ("user", "hi"),
    ]
    assert request.max_tokens == 5
    assert request.HasField("temperature") and request.temperature == 0
    assert request.extra["seed"] == 7
