"""An httpx transport that moves the bytes with aiohttp: same httpx API, a faster engine.

Why: with httpx's default transport (httpcore + h11, pure Python) reading a
stream costs several Python layers per network read, and httpcore's pool walks
*every* pooled connection on each request and each release, so a bridge that
holds hundreds of upstream streams spends more time scanning its pool than
relaying (BENCHMARKS.md). aiohttp parses HTTP/1.1 in C (llhttp) and
its connector hands out and takes back connections in constant time.

Why keep httpx on top: `bridge.upstream` and the readers of its answers speak httpx
(requests, responses, exceptions) and tests or embedders can still inject any
httpx transport. This module is the only place that knows aiohttp's client; it
translates aiohttp's exceptions into httpx's by one table (`EXCEPTIONS`, most
specific class first whatever its order), keeping the distinctions the
bridge's status mapping relies on: failing to connect
(`ConnectError`/`ConnectTimeout`), silence while reading (`ReadTimeout`), and a
connection lost mid-body (`ReadError`, `RemoteProtocolError`).

A response body that was not read to its end is closed, not released: the
connection is dropped, so the upstream stops generating (and billing) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Protocol

import aiohttp
import httpx

__all__ = [
    "EXCEPTIONS",
    "RAW_READS",
    "AiohttpTransport",
    "BodyReads",
    "body_reads",
    "httpx_exception",
    "httpx_response",
]

RAW_READS = "bridge.raw_reads"
"""Response extension: the body's reads, straight from aiohttp (see `body_reads`)."""

EXCEPTIONS: Mapping[type[BaseException], type[httpx.TransportError]] = {
    aiohttp.ConnectionTimeoutError: httpx.ConnectTimeout,
    aiohttp.SocketTimeoutError: httpx.ReadTimeout,
    aiohttp.ServerTimeoutError: httpx.ReadTimeout,
    aiohttp.ClientConnectorError: httpx.ConnectError,
    aiohttp.ServerDisconnectedError: httpx.RemoteProtocolError,
    aiohttp.ClientPayloadError: httpx.ReadError,
    aiohttp.ClientResponseError: httpx.RemoteProtocolError,  # e.g. a malformed status line
    aiohttp.InvalidURL: httpx.UnsupportedProtocol,
    aiohttp.ClientError: httpx.ReadError,
    asyncio.TimeoutError: httpx.ReadTimeout,
}
"""aiohttp's exception -> httpx's. The most specific class named here wins (`httpx_exception`)."""


def httpx_exception(exc: BaseException) -> type[httpx.TransportError] | None:
    """The httpx exception class for an aiohttp failure, or None for any other exception.

    The exception's MRO is walked up to the first class `EXCEPTIONS` names, so
    the table's order never matters (a subclass always beats its base).
    """
    for cls in type(exc).__mro__:
        target = EXCEPTIONS.get(cls)
        if target is not None:
            return target
    return None


def _as_httpx(exc: Exception, request: httpx.Request) -> Exception:
    """What to raise for `exc`: its httpx exception (`httpx_exception`), or `exc` itself."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    target = httpx_exception(exc)
    if target is None:
        return exc
    return target(f"{type(exc).__name__}: {exc}", request=request)


@contextlib.contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        translated = _as_httpx(exc, request)
        if translated is exc:
            raise
        raise translated from exc


class BodyReads(Protocol):
    """A response body read by read, where a wait for a read can be given up safely.

    `read` returns what arrived since the last read (everything buffered, at
    least one byte), or ``b""`` at the end of the body. A `read` cancelled while
    it waits loses nothing: the bytes it would have returned come with the next
    one. That is what lets a caller bound a wait with ``asyncio.timeout``, as
    `bridge.event_stream` does for a batched stream's ``max_delay``, without closing
    the body and with no task per read.
    """

    async def read(self) -> bytes: ...

    async def aclose(self) -> None:
        """Give up a read still in flight. It may close the body too (the aiohttp stream
        does: it is the body); the response's owner closes it anyway, and closing twice is
        harmless."""


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response, as whatever each network read brought.

    Also `BodyReads`: aiohttp keeps what arrives in its buffer whether or not a
    read waits for it, so a cancelled `read` loses nothing by construction.
    """

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while data := await self.read():
            yield data

    async def read(self) -> bytes:
        content = self._response.content
        try:
            return await content.readany()
        except Exception as exc:
            # aiohttp raises a connection's failure before the bytes that came ahead of
            # it (a reset right after two events): hand those over first, the failure
            # with the next read, so nothing the upstream sent is lost.
            arrived = _arrived_before_failure(content)
            if arrived:
                return arrived
            raise _as_httpx(exc, self._request) from exc

    async def aclose(self) -> None:
        response = self._response
        if response.content.at_eof():
            response.release()  # the connection goes back to the pool
        else:
            response.close()  # unread body: drop the connection, end the generation


def _arrived_before_failure(content: aiohttp.StreamReader) -> bytes:
    """What `content` holds that its failure hides from ``readany``; b"" when nothing, or
    when this aiohttp keeps its buffer otherwise (the failure then comes first, as before)."""
    buffered = getattr(content, "_buffer", None)
    take = getattr(content, "_read_nowait", None)
    if not buffered or take is None:
        return b""
    try:
        data = take(-1)
    except Exception:  # its own read timeout, say: the failure stands
        return b""
    return data if isinstance(data, bytes) else b""


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over one aiohttp session, created lazily inside the running loop."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_expiry,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes bodies itself
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                # One session serves every caller: no answer's cookie may reach another.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        session = self._session_now()
        url = request.url
        if url.userinfo:  # httpx turned it into an auth header already; aiohttp would refuse
            url = url.copy_with(userinfo=b"")
        with _translated(request):
            response = await session.request(
                request.method,
                str(url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=request.content or None,
                allow_redirects=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx_response(response, request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def httpx_response(response: aiohttp.ClientResponse, request: httpx.Request) -> httpx.Response:
    """An aiohttp response as httpx's, its body read straight from aiohttp's buffer
    (`body_reads`). Public so that the unit tests run the readers on the very body
    production reads, fed from memory."""
    stream = _ResponseStream(response, request)
    return httpx.Response(
        status_code=response.status,
        headers=response.raw_headers,
        stream=stream,
        request=request,
        extensions={"http_version": b"HTTP/1.1", RAW_READS: stream},
    )


class _IteratedReads:
    """`BodyReads` over any transport's body (a test's MockTransport, say): the read in
    flight is a task, so a cancelled wait leaves it running for the next `read`."""

    __slots__ = ("_chunks", "_next")

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._next: asyncio.Future[bytes] | None = None

    async def read(self) -> bytes:
        if self._next is None:
            self._next = asyncio.ensure_future(anext(self._chunks, b""))
        data = await asyncio.shield(self._next)
        self._next = None
        return data

    async def aclose(self) -> None:
        if self._next is not None:
            self._next.cancel()
            await asyncio.wait((self._next,))
            self._next = None


def body_reads(response: httpx.Response) -> BodyReads:
    """`response`'s body as `BodyReads`, the way every stream is read: aiohttp's buffer
    itself with this transport (no httpx layer per read); any other transport's
    ``aiter_raw()`` (a test's MockTransport, an embedder's) behind a task per read."""
    stream = response.extensions.get(RAW_READS)
    if isinstance(stream, _ResponseStream):
        return stream
    return _IteratedReads(response.aiter_raw())
