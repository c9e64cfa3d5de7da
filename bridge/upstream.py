"""The HTTP side: httpx requests over one pooled transport, to the MyRouter API.

This module owns everything httpx: building requests, reading bounded bodies,
reading streams as raw bytes through our own SSE decoder (httpx's line
iterator decodes to str and splits lines in Python, several times slower),
and turning every httpx failure into the bridge's exception hierarchy. It
knows nothing of gRPC. Every response it opens is closed in ``finally``, on
every path, so a cancelled caller never leaves an upstream generation running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from . import __version__
from .config import BridgeConfig
from .errors import (
    BridgeError,
    ServiceKeyRejected,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamReportedError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnavailable,
    numeric_error_code,
    parse_retry_after,
)
from .redaction import redact
from .sse import DONE, SSEDecoder
from .tls import upstream_ssl_context
from .transport import AiohttpTransport, raw_reads

_COMPRESSED_OK = "gzip, deflate"
"""Whole JSON answers may come compressed; httpx decodes them while reading."""
DRAIN_AFTER_DONE_SECONDS = 0.25
"""After [DONE], how long to wait for the body's end so the connection can be reused."""
MAX_ERROR_BODY_BYTES = 64 * 1024

log = logging.getLogger("bridge.upstream")


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamCall:
    """What one RPC needs of the upstream request, besides the body."""

    authorization: str = dataclasses.field(repr=False)
    """The full Authorization header value."""
    request_id: str
    using_service_key: bool
    """True when `authorization` is the bridge's own key, not the caller's."""
    timeout: float
    """Seconds this call may take in all (caller deadline and configured cap applied)."""
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            **self.extra_headers,
            "authorization": self.authorization,
            "x-request-id": self.request_id,
        }

    def secrets(self) -> tuple[str, ...]:
        """The credential texts that must never appear in anything we emit."""
        token = self.authorization.split(" ", 1)[-1]
        return (self.authorization, token)


class UpstreamClient:
    """MyRouter's chat API, over one pooled httpx transport shared by all RPCs.

    Requests go to the transport directly, not through ``httpx.AsyncClient``:
    a client keeps a cookie jar, and in a bridge shared by many callers a cookie
    that one caller's answer set (the CDN in front of a public API sets them)
    would ride along with every other caller's requests. Skipping the client's
    layers (URL merging, cookies, auth and redirect hooks) also saves ~10% of
    the bridge's CPU per unary call (BENCHMARKS.md). What the client did that we
    need is here: the absolute URLs, the default headers, the timeout extension.
    """

    def __init__(
        self, config: BridgeConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
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
        accept: str,
        accept_encoding: str,
    ) -> httpx.Request:
        headers = {
            **call.headers(),
            "user-agent": self._user_agent,
            "accept": accept,
            "accept-encoding": accept_encoding,
        }
        if body is not None:
            headers["content-type"] = "application/json"
        return httpx.Request(
            method, url, headers=headers, content=body, extensions={"timeout": timeout}
        )

    async def create_chat_completion(self, body: bytes, call: UpstreamCall) -> dict[str, Any]:
        """POST /chat/completions (stream false) and return the parsed JSON answer."""
        request = self._request(
            "POST",
            self._chat_url,
            call,
            self._timeout(call),
            body=body,
            accept="application/json",
            accept_encoding=_COMPRESSED_OK,
        )
        return await self._json_call(request, call)

    async def list_models(self, call: UpstreamCall) -> dict[str, Any]:
        """GET /models and return the parsed JSON answer."""
        request = self._request(
            "GET",
            self._models_url,
            call,
            self._timeout(call),
            accept="application/json",
            accept_encoding=_COMPRESSED_OK,
        )
        return await self._json_call(request, call)

    async def stream_chat_completion(
        self, body: bytes, call: UpstreamCall
    ) -> AsyncGenerator[bytes, None]:
        """POST /chat/completions (stream true); yield each event's data, up to [DONE].

        Ends normally only after [DONE]; any other end raises, so a cut stream
        can never be mistaken for a finished one.
        """
        request = self._request(
            "POST",
            self._chat_url,
            call,
            self._timeout(call, read=self._config.stream_idle_timeout),
            body=body,
            accept="text/event-stream",
            # Events are read as raw bytes, and a compressor would hold them back.
            accept_encoding="identity",
        )
        response = await self._send(request, call)
        try:
            if response.status_code != 200:
                raise await self._http_error(response, call)
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("text/event-stream"):
                raise await self._not_an_event_stream(response, content_type, call)
            decoder = SSEDecoder()
            raw_chunks = raw_reads(response)
            max_event = self._config.max_event_bytes
            unfinished = 0  # bytes read since the last dispatched event: what the decoder holds
            try:
                async for raw in raw_chunks:
                    events = decoder.feed(raw)
                    if not events:
                        unfinished += len(raw)
                        if unfinished > max_event:
                            raise _event_too_large(max_event)
                        continue
                    unfinished = 0
                    for event in events:
                        if event.data == DONE:
                            await _drain(raw_chunks)
                            return
                        if len(event.data) > max_event:
                            raise _event_too_large(max_event)
                        yield event.data
            except httpx.TimeoutException:
                raise UpstreamTimeout(
                    f"the upstream stream was silent for {self._config.stream_idle_timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise UpstreamUnavailable(
                    f"the upstream connection broke mid-stream ({type(exc).__name__})"
                ) from None
            raise UpstreamProtocolError(
                "the upstream stream ended before [DONE]", reason="UPSTREAM_STREAM_TRUNCATED"
            )
        finally:
            await response.aclose()

    async def _json_call(self, request: httpx.Request, call: UpstreamCall) -> dict[str, Any]:
        response = await self._send(request, call)
        try:
            if response.status_code != 200:
                raise await self._http_error(response, call)
            body = await self._read_body(response, self._config.max_response_bytes)
        finally:
            await response.aclose()
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                "the upstream answered 200 with a body that is not JSON",
                reason="UPSTREAM_MALFORMED_BODY",
            ) from None
        if type(parsed) is not dict:
            raise UpstreamProtocolError(
                "the upstream answered 200 with JSON that is not an object",
                reason="UPSTREAM_MALFORMED_BODY",
            )
        return parsed

    async def _send(self, request: httpx.Request, call: UpstreamCall) -> httpx.Response:
        """Send `request`; retry only connections that failed before any byte was sent.

        A failed connect (refused, unreachable, TLS handshake, connect timeout)
        means the request never left, so it is safe to try again, a bounded
        number of times with exponential backoff, within the call's deadline.
        Anything later (a reset, a read timeout, an error status) may already
        have reached the model, which may already bill for it: never retried.
        """
        attempt = 0
        while True:
            try:
                response = await self._transport.handle_async_request(request)
                response.request = request
                return response
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt >= self._config.connect_retries:
                    raise self._unavailable(exc, call) from None
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
            except httpx.TransportError as exc:
                raise self._unavailable(exc, call) from None

    def _unavailable(self, exc: httpx.TransportError, call: UpstreamCall) -> BridgeError:
        if isinstance(exc, httpx.ConnectTimeout):
            return UpstreamUnavailable(
                f"could not connect to the upstream within {self._config.connect_timeout:g} s"
            )
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout("the upstream did not answer in time")
        reason = redact(str(exc), call.secrets())
        return UpstreamUnavailable(f"could not reach the upstream ({type(exc).__name__}: {reason})")

    async def _read_body(self, response: httpx.Response, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            async for part in response.aiter_bytes():
                size += len(part)
                if size > limit:
                    raise UpstreamTooLarge(
                        f"the upstream's answer exceeds the {limit}-byte limit",
                        reason="UPSTREAM_RESPONSE_TOO_LARGE",
                    )
                parts.append(part)
        except httpx.TimeoutException:
            raise UpstreamTimeout("the upstream did not finish its answer in time") from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"the upstream connection broke while reading its answer ({type(exc).__name__})"
            ) from None
        return b"".join(parts)

    async def _http_error(self, response: httpx.Response, call: UpstreamCall) -> BridgeError:
        status = response.status_code
        try:
            body = await self._read_body(response, MAX_ERROR_BODY_BYTES)
        except UpstreamProtocolError:
            body = b""
        error = _error_object(body)
        message = _message_of(error, body) or f"the upstream answered HTTP {status}"
        message = redact(message, call.secrets())
        if status in (401, 403) and call.using_service_key:
            return ServiceKeyRejected(
                f"the upstream refused the bridge's service key (HTTP {status}); "
                "the operator must check MYROUTER_API_KEY or --api-key-file",
                metadata={"http_status": str(status)},
            )
        code = error.get("code") if error else None
        numeric = numeric_error_code(code)
        return UpstreamHTTPError(
            status,
            message,
            upstream_code=None if code is None else str(code if numeric is None else numeric),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            metadata=_error_metadata(error, call),
        )

    async def _not_an_event_stream(
        self, response: httpx.Response, content_type: str, call: UpstreamCall
    ) -> BridgeError:
        try:
            body = await self._read_body(response, MAX_ERROR_BODY_BYTES)
        except UpstreamProtocolError:
            body = b""  # too big to be an error object: report the wrong content type
        error = _error_object(body)
        if error:
            return reported_error(error, call)
        return UpstreamProtocolError(
            f"the upstream answered a stream request with {content_type or 'no content type'}, "
            "not text/event-stream",
            reason="UPSTREAM_NOT_AN_EVENT_STREAM",
        )


def _event_too_large(limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(
        f"the upstream sent a stream event larger than the {limit}-byte limit",
        reason="UPSTREAM_EVENT_TOO_LARGE",
    )


def reported_error(error: Mapping[str, Any], call: UpstreamCall) -> UpstreamReportedError:
    """The exception for an `error` object the upstream put in a 200 answer."""
    message = _message_of(error, b"") or "the upstream reported an error"
    code = error.get("code")
    return UpstreamReportedError(
        code if isinstance(code, (int, str)) and not isinstance(code, bool) else None,
        redact(message, call.secrets()),
        metadata=_error_metadata(error, call),
    )


async def _drain(raw_chunks: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] (normally just the body's end) so the connection is reusable."""
    try:
        async with asyncio.timeout(DRAIN_AFTER_DONE_SECONDS):
            async for _ in raw_chunks:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass  # the response is closed by the caller, which drops the connection


def _error_object(body: bytes) -> dict[str, Any]:
    """The `error` object of an error body, or {} if the body has none."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {}
    if type(parsed) is dict:
        error = parsed.get("error")
        if type(error) is dict:
            return error
        if type(error) is str:
            return {"message": error}
    return {}


def _message_of(error: Mapping[str, Any], body: bytes) -> str:
    message = error.get("message")
    if isinstance(message, str) and message:
        return message
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:300] if text else ""


def _error_metadata(error: Mapping[str, Any], call: UpstreamCall) -> dict[str, str]:
    """ErrorInfo metadata (strings only) from the upstream's error object."""
    out: dict[str, str] = {}
    metadata = error.get("metadata") if error else None
    if isinstance(metadata, dict) and metadata:
        text = orjson.dumps(metadata).decode()
        out["upstream_metadata"] = redact(text[:2000], call.secrets())
        provider = metadata.get("provider_name")
        if isinstance(provider, str):
            out["provider_name"] = provider
    error_type = error.get("type") if error else None
    if isinstance(error_type, str):
        out["type"] = error_type
    return out
