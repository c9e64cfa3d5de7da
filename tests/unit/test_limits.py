"""The limits against overload and hostile input: their defaults.

Each refusal over a limit is shown on a real bridge in tests/integration/test_limits.py.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)


def test_default_limits_are_sane():
    from bridge.config import BridgeConfig

    config = BridgeConfig()
    assert config.max_concurrent_rpcs == 1000
    assert config.max_request_bytes == 8 * 1024 * 1024
    assert config.max_messages == 1000
    assert config.max_response_bytes == 32 * 1024 * 1024
    assert config.max_event_bytes == 8 * 1024 * 1024
    assert config.shutdown_grace == 25.0
