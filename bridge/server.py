"""The bridge process's lifecycle: build the grpc.aio server, serve, shut down cleanly.

One `BridgeServer` owns one grpc.aio server, the one pooled upstream client
its service uses, and the `Admission` that lets calls in and drains them at
shutdown; all are created in `start` and released in `stop`, so a process (or
a test) can run several bridges side by side.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence

import grpc
import httpx
from google.protobuf import message_factory
from grpc_reflection.v1alpha import reflection

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

from . import otel
from .access import Access
from .admission import Admission
from .config import BridgeConfig, ListenAddress
from .health import HEALTH_SERVICE_NAME, Health
from .logs import quiet_grpc_metadata_decoding
from .metrics import Metrics, MetricsServer
from .observe import Observer
from .policy import Policy
from .ports import BindError, check_free
from .server_options import server_options
from .service import ChatService, request_decoder
from .tls import server_credentials
from .upstream import UpstreamClient

__all__ = [
    "ABORT_SECONDS",
    "CHAT_SERVICE_NAME",
    "EXIT_FORCED",
    "MAX_PENDING_RPCS",
    "BridgeServer",
    "add_chat_service",
    "grpc_server",
    "grpc_server_options",
    "serve",
    "transport_security",
]

log = logging.getLogger("bridge.server")

CHAT_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"]
CHAT_SERVICE_NAME: str = CHAT_SERVICE.full_name
ABORT_SECONDS = 1.0
"""After the grace period, how long aborted calls get to send their status and close.

A call blocked writing to a caller that stopped reading cannot send our status;
gRPC itself ends it with UNAVAILABLE ("Cancelling all calls") when this runs out."""
EXIT_FORCED = 1
"""Exit status when a second signal cuts the graceful shutdown short."""


class BridgeServer:
    """A running bridge: the gRPC listener, its upstream client and its admission."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        reuse_port: bool = False,
        serve_metrics: bool = True,
    ) -> None:
        self.config = config
        self._transport = transport
        self._reuse_port = reuse_port
        """SO_REUSEPORT, so that several worker processes can share the port (bridge/workers)."""
        self._serve_metrics = serve_metrics
        """Serve config.metrics_listen; False in a worker, whose supervisor serves the sum."""
        self._server: grpc.aio.Server | None = None
        self._upstream: UpstreamClient | None = None
        self._admission: Admission | None = None
        self._access: Access | None = None
        self.health = Health([CHAT_SERVICE_NAME])
        self.metrics = Metrics()
        self._metrics_server: MetricsServer | None = None
        self.port: int = 0

    async def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0)."""
        quiet_grpc_metadata_decoding()
        upstream = self._upstream = UpstreamClient(
            self.config, transport=self._transport, metrics=self.metrics
        )
        access = self._access = Access.from_config(  # a bad policy file: PolicyError
            self.config, self.metrics, on_policy=lambda policy: _use_fallbacks(upstream, policy)
        )
        _use_fallbacks(upstream, access.policy)
        await access.start()
        server = grpc_server(self.config, reuse_port=self._reuse_port)
        self._admission = Admission(
            max_calls=self.config.max_concurrent_rpcs, shutdown_grace=self.config.shutdown_grace
        )
        self.metrics.admission(self.config.max_concurrent_rpcs)
        observer = Observer(self.metrics, otel.telemetry(self.config.opentelemetry))
        service = ChatService(self.config, self._upstream, self._admission, observer, access)
        add_chat_service(service, server, max_request_bytes=self.config.max_request_bytes)
        self.health.add_to_server(server)
        if self.config.reflection:
            reflection.enable_server_reflection(
                (CHAT_SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
            )
        credentials = server_credentials(self.config)
        self.port = _bind(server, self.config.listen, credentials, reuse_port=self._reuse_port)
        if self.config.metrics_listen and self._serve_metrics:
            try:
                self._metrics_server = MetricsServer(
                    self.config.metrics_listen, self.metrics.registry
                )
            except OSError as exc:
                raise BindError.of(self.config.metrics_listen, exc) from None
        await server.start()
        self._server = server
        self.health.set_serving()
        log.info(
            "bridge listening on %s (%s; upstream %s)",
            self.config.listen.with_port(self.port).text,
            transport_security(self.config),
            self.config.upstream_url,
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Shut down in order; each step runs even when an earlier one had nothing to do.

        1. health turns NOT_SERVING and stays so for `shutdown_delay` while calls are
           still accepted, so meshes and probes route elsewhere first;
        2. stop accepting RPCs (listener closed, new calls refused UNAVAILABLE);
        3. let in-flight calls finish for `grace` s (default: the configured shutdown_grace);
        4. abort the rest with UNAVAILABLE, which closes their upstream requests;
        5. close the pooled HTTP client.
        """
        grace = self.config.shutdown_grace if grace is None else grace
        if self._server is not None and not self.health.leaving:
            self.health.set_not_serving()
            if self.config.shutdown_delay > 0:
                await asyncio.sleep(self.config.shutdown_delay)
        self.health.close()
        admission, server = self._admission, self._server
        if admission is not None:
            admission.start_draining()
        if server is not None:
            # grpc.aio stops accepting at once; its own grace is a backstop past ours.
            stopping = asyncio.create_task(server.stop(grace + ABORT_SECONDS))
            if admission is not None and not await admission.wait_idle(grace):
                aborted = admission.abort_all()
                log.warning(
                    "shutdown: grace period of %g s over; aborting %d call(s)", grace, aborted
                )
                await admission.wait_idle(ABORT_SECONDS)
            await stopping
            self._server = None
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None
        if self._access is not None:
            await self._access.close()
            self._access = None
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None

    @property
    def metrics_port(self) -> int | None:
        """The bound port of the /metrics endpoint, when this process serves it."""
        return None if self._metrics_server is None else self._metrics_server.port

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _use_fallbacks(upstream: UpstreamClient, policy: Policy) -> None:
    """The fallback models in force: the setting's, each model's chain replaced by the
    policy file's where it names one (and so on each reload)."""
    upstream.retries.use_fallbacks({**upstream.fallback_setting, **policy.fallbacks})


_HANDLER_KINDS: Mapping[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
"""(client streaming, server streaming) -> grpc's handler constructor."""


def add_chat_service(
    servicer: chat_pb2_grpc.ChatServiceServicer, server: grpc.aio.Server, *, max_request_bytes: int
) -> None:
    """Register ChatService as the generated ``add_ChatServiceServicer_to_server`` would,
    but with every request decoded by `request_decoder`, so bytes that are not a valid
    request become INVALID_ARGUMENT, and more than `max_request_bytes` of them
    RESOURCE_EXHAUSTED, through the servicer's own error path.

    Built from the contract's service descriptor: an RPC added to the contract
    (and its servicer method) is registered with no change here. Public so that
    bench/floor.py registers its servicer the same way.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in CHAT_SERVICE.methods:
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        handler = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = handler(
            getattr(servicer, method.name),
            request_deserializer=request_decoder(request_type, max_bytes=max_request_bytes),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(CHAT_SERVICE_NAME, handlers),)
    )
    server.add_registered_method_handlers(CHAT_SERVICE_NAME, handlers)


MAX_PENDING_RPCS = 10_000
"""New RPCs grpc may queue before the event loop picks them up; grpc's default (1000)
cancels the excess of a burst (measured: 2,000 streams opened at once lost ~200 as
CANCELLED, with no log line anywhere)."""


def grpc_server(config: BridgeConfig, *, reuse_port: bool = False) -> grpc.aio.Server:
    """The bridge's grpc.aio server, no service added yet: its channel arguments and interceptors.

    Public so that bench/floor.py measures grpc.aio with exactly the bridge's server.
    """
    return grpc.aio.server(
        options=grpc_server_options(config, reuse_port),
        interceptors=otel.server_interceptors(config.opentelemetry),
    )


def grpc_server_options(config: BridgeConfig, reuse_port: bool) -> Sequence[tuple[str, int]]:
    """Every channel argument of the bridge's grpc.aio server (bench/floor.py uses them too)."""
    return [
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.server.max_pending_requests", MAX_PENDING_RPCS),
        ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_RPCS),
        *server_options(config),
    ]


def _bind(
    server: grpc.aio.Server,
    listen: ListenAddress,
    credentials: grpc.ServerCredentials | None,
    *,
    reuse_port: bool,
) -> int:
    """Add the listening port; a BindError naming the address if it cannot be had.

    A lone process checks the address itself first (bridge/ports), since grpc
    reports a busy port with a core log line and a RuntimeError that says only
    "Failed to bind"; a worker shares the port its supervisor claimed.
    """
    if not reuse_port:
        check_free(listen)
    port: int
    try:
        if credentials is None:
            port = server.add_insecure_port(listen.text)
        else:
            port = server.add_secure_port(listen.text, credentials)
    except RuntimeError:  # grpc: "Failed to bind to address"
        port = 0
    if port == 0:  # taken between the check and grpc's bind
        raise BindError(errno.EADDRINUSE, f"cannot listen on {listen}: grpc could not bind it")
    return port


def transport_security(config: BridgeConfig) -> str:
    """What the start-up line says of the listener: plaintext, TLS, or mTLS."""
    if config.tls_cert_file is None:
        return "plaintext, no TLS"
    if config.tls_client_ca_file is None:
        return "TLS"
    return "mTLS, client certificates required"


async def serve(
    config: BridgeConfig,
    *,
    reuse_port: bool = False,
    serve_metrics: bool = True,
    on_started: Callable[[BridgeServer], None] | None = None,
) -> None:
    """Run a bridge until SIGINT or SIGTERM, then shut down gracefully (see `stop`).

    A second signal during the shutdown exits the process at once, for an
    operator who does not want to wait out the grace period. `on_started` is
    called once the server listens (a worker reports readiness with it);
    `reuse_port` and `serve_metrics` are as for `BridgeServer`.
    """
    bridge = BridgeServer(config, reuse_port=reuse_port, serve_metrics=serve_metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        signals.append(sig)
        if len(signals) == 1:
            log.info(
                "%s: shutting down; in-flight calls may take up to %g s",
                sig.name,
                config.shutdown_grace,
            )
            stop.set()
            return
        log.warning("%s again: exiting now without waiting for in-flight calls", sig.name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_FORCED)

    # Handlers first: a signal that arrives while the server starts still shuts it down.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await bridge.start()
        if on_started is not None:
            on_started(bridge)
        await stop.wait()
    finally:
        await bridge.stop()
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    if pending:
        log.warning("shutdown left %d task(s) pending: %s", len(pending), pending)
    else:
        log.info("shutdown complete: no call, upstream request or task left")
