"""Optional OpenTelemetry tracing: a server span per RPC, its context sent upstream.

Off unless the OpenTelemetry packages are installed (``pip install
'myrouter-bridge[otel]'``) and tracing is configured: ``auto`` (the default)
turns it on only when a real TracerProvider is set, for example by running
under ``opentelemetry-instrument`` with an exporter, so an unconfigured
install costs nothing per call. ``on`` insists (a ConfigError if the packages
are missing), ``off`` never traces.

When on, the gRPC server interceptor continues the caller's trace (W3C or
whatever propagator is configured) in a server span, and the upstream request
carries that span's context, so the MyRouter API's spans hang under the
bridge's rather than beside it. When off, the caller's trace headers are still
copied as they are (bridge/propagation.py).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .config import ConfigError, setting_label

__all__ = ["OTEL_MODES", "enabled", "inject_current_context", "installed", "server_interceptors"]

OTEL_MODES = ("auto", "on", "off")


def installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.instrumentation.grpc") is not None
    except ModuleNotFoundError:
        return False


def enabled(mode: str) -> bool:
    """Whether tracing is on for `mode` in this process."""
    if mode == "off":
        return False
    if not installed():
        if mode == "on":
            raise ConfigError(
                f"{setting_label('opentelemetry')}: 'on' needs the OpenTelemetry packages "
                "(pip install 'myrouter-bridge[otel]')"
            )
        return False
    if mode == "on":
        return True
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def server_interceptors(mode: str) -> list[Any]:
    """The grpc.aio interceptors that open a server span per RPC (none when off)."""
    if not enabled(mode):
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def inject_current_context(headers: dict[str, str]) -> dict[str, str]:
    """Write the current span's context into `headers` (traceparent, ...); return them."""
    from opentelemetry import propagate

    propagate.inject(headers)
    return headers
