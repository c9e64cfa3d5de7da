"""Optional OpenTelemetry: when it is on, and the error when it cannot be."""

from __future__ import annotations

import pytest

from bridge import otel
from bridge.config import ConfigError

pytestmark = pytest.mark.timeout(60)


def test_auto_stays_off_without_a_configured_tracer_provider():
    # the packages are installed (dev extra) but nothing set a TracerProvider in this process
    assert otel.installed()
    assert not otel.enabled("auto")
    assert otel.enabled("on")
    assert not otel.enabled("off")
    assert otel.server_interceptors("auto") == []


def test_on_without_the_packages_is_a_config_error(monkeypatch):
    monkeypatch.setattr(otel, "installed", lambda: False)
    with pytest.raises(ConfigError, match="OpenTelemetry"):
        otel.enabled("on")
    assert not otel.enabled("auto")
