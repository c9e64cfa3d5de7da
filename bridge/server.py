"""The bridge process's lifecycle: build the grpc.aio server, serve, shut down cleanly.

One `BridgeServer` owns one grpc.aio server and the one pooled upstream client
its service uses; both are created in `start` and released in `stop`, so a
process (or a test) can run several bridges side by side.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

import grpc
import httpx
from grpc_reflection.v1alpha import reflection

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc

from .config import BridgeConfig
from .health import HEALTH_SERVICE_NAME, Health
from .service import ChatService
from .upstream import UpstreamClient

log = logging.getLogger("bridge.server")

SHUTDOWN_GRACE_SECONDS = 10.0
CHAT_SERVICE_NAME: str = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


class BridgeServer:
    """A running bridge: the gRPC listener plus its upstream client."""

    def __init__(
        self, config: BridgeConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport
        self._server: grpc.aio.Server | None = None
        self._upstream: UpstreamClient | None = None
        self.health = Health([CHAT_SERVICE_NAME])
        self.port: int = 0

    async def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0)."""
        self._upstream = UpstreamClient(self.config, transport=self._transport)
        server = grpc.aio.server(options=_server_options(self.config))
        chat_pb2_grpc.add_ChatServiceServicer_to_server(
            ChatService(self.config, self._upstream), server
        )
        self.health.add_to_server(server)
        if self.config.reflection:
            reflection.enable_server_reflection(
                (CHAT_SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
            )
        self.port = server.add_insecure_port(self.config.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        await server.start()
        self._server = server
        self.health.set_serving()
        log.info(
            "bridge listening on %s (upstream %s)",
            _listen_address(self.config.listen, self.port),
            self.config.upstream_url,
        )
        return self.port

    async def stop(self, grace: float | None = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting RPCs, let in-flight ones finish within `grace`, then release all.

        First the health statuses turn NOT_SERVING and stay so for `shutdown_delay`
        while calls are still accepted, so meshes and probes route elsewhere before
        the listener goes away.
        """
        if self._server is not None and not self.health.leaving:
            self.health.set_not_serving()
            if self.config.shutdown_delay > 0:
                await asyncio.sleep(self.config.shutdown_delay)
        self.health.close()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _server_options(config: BridgeConfig) -> Sequence[tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


def _listen_address(listen: str, port: int) -> str:
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


async def serve(config: BridgeConfig) -> None:
    """Run a bridge until SIGINT or SIGTERM, then shut down gracefully."""
    bridge = BridgeServer(config)
    await bridge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: draining in-flight calls for up to %g s", SHUTDOWN_GRACE_SECONDS)
    finally:
        await bridge.stop()
