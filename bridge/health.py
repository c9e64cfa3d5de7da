"""Standard gRPC health checking (grpc.health.v1.Health) for the bridge process.

Meshes, kubelet gRPC probes and proxyless clients ask this service whether to
route to a replica. Statuses, overall ("") and per served service, start
NOT_SERVING and turn SERVING once the listener is up. The first step of
shutdown turns them all NOT_SERVING for good, so traffic moves elsewhere
before the drain; a replica never looks healthy again once it started to leave.

The servicer is ours rather than grpcio-health-checking's asyncio one (whose
generated messages and registration we use) for one reason: its Watch streams
never end, so a single watching client would hold every drain for the whole
grace period. `close` ends them, after they have seen NOT_SERVING.

`check` is the client side, for `myrouter-bridge health`: a probe for scripts,
containers and kubelet exec probes that needs no grpcurl.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = [
    "HEALTH_SERVICE_NAME",
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
    "SERVING",
    "Health",
    "check",
    "status_name",
]

HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

_Status = int  # a grpc.health.v1 HealthCheckResponse.ServingStatus value
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # untyped module
    """The health statuses of one server, and the Check/Watch RPCs that report them."""

    def __init__(self, services: Sequence[str]) -> None:
        self._status: dict[str, _Status] = {name: NOT_SERVING for name in ("", *services)}
        self._changed = asyncio.Event()
        self._leaving = False
        self._closed = False

    def add_to_server(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    def set_serving(self) -> None:
        """Mark every service SERVING; ignored once shutdown has begun."""
        if not self._leaving:
            self._set_all(SERVING)

    def set_not_serving(self) -> None:
        """Mark every service NOT_SERVING, permanently: the first step of a shutdown."""
        self._leaving = True
        self._set_all(NOT_SERVING)

    def close(self) -> None:
        """End every Watch stream (they have been told NOT_SERVING) so none holds the drain."""
        self.set_not_serving()
        self._closed = True
        self._notify()

    @property
    def leaving(self) -> bool:
        return self._leaving

    def _set_all(self, status: _Status) -> None:
        for name in self._status:
            self._status[name] = status
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def Check(  # noqa: N802 - gRPC method name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(  # noqa: N802 - gRPC method name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: _Status | None = None
        while True:
            changed = self._changed
            status = self._status.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if self._closed:
                return
            await changed.wait()


def check(
    channel: grpc.Channel, service: str = "", timeout: float | None = None
) -> health_pb2.HealthCheckResponse.ServingStatus:
    """Ask grpc.health.v1 Check on `channel` how `service` ("" for the whole server) is;
    grpc.RpcError when there is no answer (unreachable, unknown service, deadline)."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return response.status


def status_name(status: int) -> str:
    """SERVING, NOT_SERVING, ...: the name grpcurl and the kubelet print for a status."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
