"""TLS settings: which combinations are refused, before anything listens."""

from __future__ import annotations

import pytest

from bridge.config import BridgeConfig, ConfigError
from bridge.tls import upstream_ssl_context

pytestmark = pytest.mark.timeout(60)


def test_tls_settings_are_validated(certs, tmp_path):
    with pytest.raises(ConfigError, match="go together"):
        BridgeConfig(tls_cert_file=certs.server_cert)
    with pytest.raises(ConfigError, match="mTLS"):
        BridgeConfig(tls_client_ca_file=certs.client_ca_file)
    with pytest.raises(ConfigError, match="--upstream-ca-file"):
        upstream_ssl_context(BridgeConfig(upstream_ca_file=tmp_path / "missing.pem"))
