"""Running the embedded upstream: inside an event loop (`serve`) or on its own thread.

Why a background thread with its own loop: the tests that use the upstream are
ordinary synchronous pytest functions driving a gRPC client (or httpx), and the
bridge under test may run its own loop. A thread keeps the upstream independent
of all of them; `EmbeddedUpstream` is its thread-safe remote control.

Why shutdown cancels in-flight handlers first: a ``hang`` or ``stall`` scenario
would otherwise hold aiohttp's graceful shutdown for its whole timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Final

from aiohttp import web

from .app import build_app
from .config import UpstreamConfig
from .recording import RecordedRequest
from .scenario import Scenario
from .state import UpstreamState

__all__ = ["EmbeddedUpstream", "serve"]

_SHUTDOWN_TIMEOUT: Final = 1.0
"""Seconds aiohttp may wait for a connection to finish when the server stops."""
_LISTEN_BACKLOG: Final = 4096
_START_TIMEOUT: Final = 30.0
_STOP_TIMEOUT: Final = 30.0


async def serve(
    config: UpstreamConfig,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    *,
    state: UpstreamState | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve in the running loop until `stop` is set (forever when None).

    `ready` is set, and `on_listening` called with the bound port, once the
    socket listens (the port matters when ``config.port`` is 0). Pass a `state`
    to reach the recording and scenario of this server from outside.
    """
    state = UpstreamState(config) if state is None else state
    runner = web.AppRunner(
        build_app(state),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    try:
        # A deep accept queue: a benchmark opens thousands of connections at once,
        # and SYNs dropped by a full queue (default 128) cost seconds of retries.
        site = web.TCPSite(
            runner, config.host, config.port, reuse_address=True, backlog=_LISTEN_BACKLOG
        )
        await site.start()
        port = int(runner.addresses[0][1])
        if on_listening is not None:
            on_listening(port)
        if ready is not None:
            ready.set()
        if stop is None:
            await asyncio.get_running_loop().create_future()
        else:
            await stop.wait()
    finally:
        state.begin_shutdown()
        await runner.cleanup()


class EmbeddedUpstream:
    """The upstream on a daemon thread; start/stop it, or use it as a context manager.

    Single use: once stopped it cannot be started again (make a new one).
    """

    def __init__(self, config: UpstreamConfig | None = None) -> None:
        self._config = UpstreamConfig() if config is None else config
        self._state = UpstreamState(self._config)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self._port: int | None = None
        self._failure: BaseException | None = None

    # -- lifecycle

    def start(self) -> EmbeddedUpstream:
        """Start serving; return once the socket listens. Raises if it cannot listen."""
        if self._thread is not None:
            raise RuntimeError("EmbeddedUpstream can only be started once")
        self._thread = threading.Thread(
            target=self._run, name=f"embedded-upstream:{self._config.port}", daemon=True
        )
        self._thread.start()
        if not self._listening.wait(_START_TIMEOUT):
            raise RuntimeError("embedded upstream did not start listening in time")
        if self._failure is not None:
            self._thread.join(_STOP_TIMEOUT)
            raise self._failure
        return self

    def stop(self) -> None:
        """Stop serving (in-flight requests are cancelled) and join the thread. Idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("embedded upstream did not stop in time")

    def __enter__(self) -> EmbeddedUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), or lost after stop()
            if not self._listening.is_set():
                self._failure = exc
        finally:
            self._listening.set()  # never leave start() waiting
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await serve(
            self._config, stop=self._stop, state=self._state, on_listening=self._on_listening
        )

    def _on_listening(self, port: int) -> None:
        self._port = port
        self._listening.set()

    # -- addresses

    @property
    def config(self) -> UpstreamConfig:
        return self._config

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._port is None:
            raise RuntimeError("embedded upstream is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1`` (wildcard hosts are reached via loopback)."""
        host = self._config.host
        if host in ("", "0.0.0.0", "127.0.0.1", "localhost"):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self._config.base_path}"

    @property
    def root_url(self) -> str:
        """The server root, where ``/_control/...`` lives."""
        return self.base_url[: -len(self._config.base_path)]

    # -- scenario

    @property
    def scenario(self) -> Scenario:
        """The scenario applied to requests that carry none."""
        return self._state.scenario

    def set_scenario(self, scenario: Scenario) -> None:
        """Switch the default scenario (like ``POST /_control/scenario``)."""
        self._state.set_scenario(scenario)

    def reset_scenario(self) -> Scenario:
        """Return to the configured default scenario (like ``DELETE /_control/scenario``)."""
        return self._state.reset_scenario()

    # -- recording

    def requests(self) -> list[RecordedRequest]:
        """A snapshot (copies) of the recorded API requests, oldest first."""
        return self._state.recorder.snapshot()

    def clear(self) -> None:
        """Forget the recorded requests."""
        self._state.recorder.clear()

    def wait_for(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 5.0
    ) -> RecordedRequest:
        """The first recorded request (a copy) matching `predicate`, waiting up to `timeout` s.

        Raises `TimeoutError`. Call it from any thread but the upstream's own.
        """
        return self._state.recorder.wait_for(predicate, timeout)
