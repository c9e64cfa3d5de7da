"""Shared fixtures: a real embedded upstream and real bridges on loopback ports.

They start servers, so only tests/integration and tests/toolchains use them
(tests/unit/conftest.py fails a unit test that does); `certs` is pure.

Each bridge runs its own grpc.aio server and event loop in a background
thread, exactly as `serve` runs it in a process, and tests call it with the
generated synchronous stub over a real socket. The upstream is the embedded
MyRouter API, which records every request so tests can assert what reached
it and when the bridge let go of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from bridge.config import BridgeConfig, ListenAddress, Secret
from bridge.logs import JSONFormatter
from bridge.server import BridgeServer
from myrouter.chat.v1 import chat_pb2_grpc
from myrouter_upstream import EmbeddedUpstream, UpstreamConfig
from support import (
    CALLER_TOKEN,
    SERVICE_KEY,
    BridgeProcess,
    Certs,
    RawUpstream,
    RedisServer,
    require_tool,
)


class BridgeThread:
    """A BridgeServer on its own event loop in a daemon thread."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.port = 0
        self.server: BridgeServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bridge", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = self.server = BridgeServer(self.config)
        try:
            self.port = await server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await server.stop(grace=1.0)

    def start(self) -> BridgeThread:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("bridge did not start")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def upstream() -> Iterator[EmbeddedUpstream]:
    server = EmbeddedUpstream(
        UpstreamConfig(host="127.0.0.1", port=0, api_keys=frozenset({CALLER_TOKEN, SERVICE_KEY}))
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream_records(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").clear()


NO_RETRIES: dict[str, Any] = {
    "retry_attempts": 1,
    "breaker_failures": 0,
    "breaker_failure_rate": 0.0,
}
"""The shared bridges' settings: most tests are about one attempt's outcome, and one
breaker shared by a whole session would open on their deliberate faults.
tests/integration/test_retries.py turns them back on (the defaults)."""


@pytest.fixture(scope="session")
def make_bridge(upstream: EmbeddedUpstream) -> Iterator[Callable[..., BridgeThread]]:
    """Start a bridge towards the embedded upstream, with config overrides (retries and
    breakers off unless asked for: `NO_RETRIES`)."""
    started: list[BridgeThread] = []

    def make(**overrides: Any) -> BridgeThread:
        settings: dict[str, Any] = {
            "listen": ListenAddress("127.0.0.1", 0),
            "upstream_url": upstream.base_url,
            "api_key": Secret(SERVICE_KEY),
            **NO_RETRIES,
            **overrides,
        }
        bridge = BridgeThread(BridgeConfig(**settings)).start()
        started.append(bridge)
        return bridge

    yield make
    for bridge in started:
        bridge.stop()


@pytest.fixture(scope="session")
def bridge(make_bridge: Callable[..., BridgeThread]) -> BridgeThread:
    return make_bridge()


@pytest.fixture(scope="session")
def channel(bridge: BridgeThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(bridge.target) as channel:
        yield channel


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> chat_pb2_grpc.ChatServiceStub:
    return chat_pb2_grpc.ChatServiceStub(channel)


@pytest.fixture
def start_bridge_process(upstream: EmbeddedUpstream) -> Iterator[Callable[..., BridgeProcess]]:
    """Start `myrouter-bridge serve` as a child process with the service key, towards the
    embedded upstream unless `upstream_url` names another; each is killed after the test."""
    with contextlib.ExitStack() as started:

        def start(
            *flags: str, upstream_url: str | None = None, log_level: str = "INFO"
        ) -> BridgeProcess:
            process = BridgeProcess(
                "--upstream-url",
                upstream_url or upstream.base_url,
                *flags,
                env={"MYROUTER_API_KEY": SERVICE_KEY},
                log_level=log_level,
            )
            started.callback(process.kill)
            return process

        yield start


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def rpc_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The bridge's per-RPC log lines (logger bridge.rpc, JSON) written during a test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("bridge.rpc")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[RawUpstream]:
    """An HTTP upstream that answers every request with the bytes a test sets
    (`answer`): any status, headers and body, or bytes that are no HTTP at all."""
    server = RawUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port, killed after the test;
    a skip saying why where redis-server is missing (a failure under REQUIRE_ALL)."""
    executable = require_tool("redis-server", "the shared caller limits (bridge/quotas.py)")
    server = RedisServer(executable, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()
