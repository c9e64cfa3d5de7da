"""TLS for both sides: the gRPC listener (TLS, or mTLS with a client CA) and the upstream.

In a mesh the sidecar usually terminates mTLS and the bridge listens in plain
text on the pod's loopback; without a mesh (or with proxyless gRPC) the
bridge terminates TLS itself. With a client CA every caller must present a
certificate signed by it; others are refused during the handshake, before any
RPC exists. Towards the upstream, a custom CA bundle serves private CAs and
TLS-inspecting egress proxies; the system's trust store is the default.

Files are read once at start-up; a missing or unreadable file is a ConfigError
naming the setting, so the process stops with a clear message, never half-up.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from .config import BridgeConfig, ConfigError, setting_label

__all__ = ["server_credentials", "upstream_ssl_context"]


def _read(path: Path, setting: str) -> bytes:
    """The file of setting `setting` (a field name), or a ConfigError naming its flag."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting_label(setting)}: cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise ConfigError(f"{setting_label(setting)}: {path} is empty")
    return data


def server_credentials(config: BridgeConfig) -> grpc.ServerCredentials | None:
    """Credentials for the gRPC listener, or None to listen in plain text."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    cert = _read(config.tls_cert_file, "tls_cert_file")
    key = _read(config.tls_key_file, "tls_key_file")
    client_ca = (
        None
        if config.tls_client_ca_file is None
        else _read(config.tls_client_ca_file, "tls_client_ca_file")
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def upstream_ssl_context(config: BridgeConfig) -> ssl.SSLContext | None:
    """TLS context for the upstream with the configured CA bundle; None: the default trust."""
    if config.upstream_ca_file is None:
        return None
    pem = _read(config.upstream_ca_file, "upstream_ca_file")
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{setting_label('upstream_ca_file')}: {config.upstream_ca_file} holds no usable "
            f"certificate ({exc})"
        ) from None
    return context
