"""The HTTP side: httpx requests over one pooled transport, to the MyRouter API.

This module builds the requests, sends them (retrying connections that never
opened) and judges each answer's status once: an answer that is not 200
becomes its exception here (`whole_answer.error_answer`), whatever was asked.
Each call is a few attempts by `bridge.retries` (retries, fallback models,
breakers), made only before the caller has seen anything: a unary answer
whole, a stream up to its first event (`EventStream.prime`).
A 200 answer is read whole by `bridge.whole_answer` or as a stream by
`bridge.event_stream`, which close it on every path, so a cancelled caller
never leaves an upstream generation running. It knows nothing of gRPC: what an
RPC asks for arrives as a finished `UpstreamCall`, whose time budget
`CallDeadline` enforces around the whole exchange.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from . import __version__
from .config import BridgeConfig
from .event_stream import EventStream
from .failures import SENDING, TransportFailures, budget_exhausted
from .metrics import Metrics
from .retries import Retries
from .tls import upstream_ssl_context
from .transport import AiohttpTransport
from .upstream_call import ATTEMPT_HEADER, UpstreamCall
from .whole_answer import completion, error_answer, json_object

__all__ = ["CallDeadline", "UpstreamCall", "UpstreamClient"]

_COMPRESSED_OK = "gzip, deflate"
"""Whole JSON answers may come compressed; httpx decodes them while reading."""

log = logging.getLogger("bridge.upstream")


class UpstreamClient:
    """MyRouter's chat API, over one pooled httpx transport shared by all RPCs.

    Requests go to the transport directly, not through ``httpx.AsyncClient``:
    a client keeps a cookie jar, and in a bridge shared by many callers a cookie
    that one caller's answer set (the CDN in front of a public API sets them)
    would ride along with every other caller's requests. Skipping the client's
    layers (URL merging, cookies, auth and redirect hooks) also saves CPU per
    unary call (BENCHMARKS.md). What the client did that we
    need is here: the absolute URLs, the default headers, the timeout extension.
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        fallbacks: Mapping[str, tuple[str, ...]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`fallbacks` (model -> the models to try after it, in order) defaults to the
        config's ``fallback_models``; the metrics receive the retries and breakers."""
        self._config = config
        self.fallback_setting: Mapping[str, tuple[str, ...]] = (
            config.fallback_models if fallbacks is None else fallbacks
        )
        """The fallback models given at start-up (a policy file's may add to them)."""
        self.retries = Retries(config, self.fallback_setting, metrics)
        if transport is None:
            transport = AiohttpTransport(
                max_connections=config.max_upstream_connections,
                keepalive_expiry=30.0,
                ssl_context=upstream_ssl_context(config),
            )
        self._transport = transport
        base = httpx.URL(config.upstream_url)
        if not base.raw_path.endswith(b"/"):
            base = base.copy_with(raw_path=base.raw_path + b"/")
        self._chat_url = base.join("chat/completions")
        self._models_url = base.join("models")
        self._user_agent = f"myrouter-bridge/{__version__}"

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _timeout(self, call: UpstreamCall, *, read: float | None = None) -> dict[str, float]:
        """httpx's timeout extension: connect, read, write and pool within the call's budget."""
        total = call.timeout
        return {
            "connect": min(self._config.connect_timeout, total),
            "read": min(read, total) if read is not None else total,
            "write": total,
            "pool": total,
        }

    def _request(
        self,
        method: str,
        url: httpx.URL,
        call: UpstreamCall,
        timeout: dict[str, float],
        *,
        body: bytes | None = None,
        accept: str = "application/json",
        accept_encoding: str = _COMPRESSED_OK,
        attempt: int = 1,
    ) -> httpx.Request:
        """A request for a JSON answer, which may come compressed, unless told otherwise."""
        headers = {
            **call.headers(),
            "user-agent": self._user_agent,
            "accept": accept,
            "accept-encoding": accept_encoding,
            ATTEMPT_HEADER: str(attempt),
        }
        if body is not None:
            headers["content-type"] = "application/json"
        return httpx.Request(
            method, url, headers=headers, content=body, extensions={"timeout": timeout}
        )

    async def create_chat_completion(self, body: bytes, call: UpstreamCall) -> dict[str, Any]:
        """POST /chat/completions (stream false) and return the parsed JSON answer."""

        async def attempt(model: str, number: int) -> dict[str, Any]:
            request = self._request(
                "POST",
                self._chat_url,
                call,
                self._timeout(call),
                body=body if model == call.model else _with_model(body, model),
                attempt=number,
            )
            return await completion(await self._send(request, call), call, self._config)

        return await self.retries.run(call, attempt)

    async def list_models(self, call: UpstreamCall) -> dict[str, Any]:
        """GET /models and return the parsed JSON answer."""

        async def attempt(model: str, number: int) -> dict[str, Any]:
            request = self._request(
                "GET", self._models_url, call, self._timeout(call), attempt=number
            )
            return await json_object(await self._send(request, call), self._config)

        return await self.retries.run(call, attempt)

    async def stream_chat_completion(self, body: bytes, call: UpstreamCall) -> EventStream:
        """POST /chat/completions (stream true); the answer's events, to iterate and close.

        The stream ends normally only after [DONE]; any other end raises, so a cut
        stream can never be mistaken for a finished one. It comes read up to its
        first event (`EventStream.prime`): until then it may be retried.
        """

        async def attempt(model: str, number: int) -> EventStream:
            request = self._request(
                "POST",
                self._chat_url,
                call,
                self._timeout(call, read=self._config.stream_idle_timeout),
                body=body if model == call.model else _with_model(body, model),
                accept="text/event-stream",
                # Events are read as raw bytes, and a compressor would hold them back.
                accept_encoding="identity",
                attempt=number,
            )
            stream = EventStream(await self._send(request, call), call, self._config)
            try:
                await stream.prime()
            except BaseException:
                await stream.aclose()
                raise
            return stream

        return await self.retries.run(call, attempt)

    async def _send(self, request: httpx.Request, call: UpstreamCall) -> httpx.Response:
        """Send `request` and return its 200 answer; any other status raises its error.

        Retries only connections that failed before any byte was sent:
        a failed connect (refused, unreachable, TLS handshake, connect timeout)
        means the request never left, so it is safe to try again, a bounded
        number of times with exponential backoff, within the call's deadline.
        Anything later (a reset, a read timeout, an error status) may already
        have reached the model, which may already bill for it: never retried.
        """
        attempt = 0
        with TransportFailures(SENDING, self._config, call):
            while True:
                try:
                    response = await self._transport.handle_async_request(request)
                    break
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    if attempt >= self._config.connect_retries:
                        raise
                    delay = self._config.connect_retry_backoff * (2**attempt)
                    attempt += 1
                    log.info(
                        "upstream connect failed (%s); retry %d of %d in %.3g s (request_id=%s)",
                        type(exc).__name__,
                        attempt,
                        self._config.connect_retries,
                        delay,
                        call.request_id,
                    )
                    await asyncio.sleep(delay)
        response.request = request
        if response.status_code != 200:
            raise await error_answer(response, call, self._config)
        return response


def _with_model(body: bytes, model: str) -> bytes:
    """A request body asking `model` instead (a fallback: rare, so parsed again here)."""
    request = orjson.loads(body)
    request["model"] = model
    return orjson.dumps(request)


class CallDeadline:
    """Bounds a whole upstream exchange by the call's time budget (`UpstreamCall.timeout`);
    running out raises `failures.budget_exhausted`.

    Why a slotted class and not an ``asynccontextmanager`` (here, and for the other
    per-call contexts): an open stream holds it for its whole life, and a
    generator's frame costs far more memory per open stream than a few slots.
    """

    __slots__ = ("_call", "_timeout")

    def __init__(self, call: UpstreamCall) -> None:
        self._call = call
        self._timeout = asyncio.timeout(call.timeout)

    async def __aenter__(self) -> CallDeadline:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._timeout.__aexit__(*exc_info)  # never suppresses
        except TimeoutError:
            raise budget_exhausted(self._call) from None
