"""A scripted upstream for the unit tests of the answer readers: an httpx MockTransport
whose answer is given byte by byte, split into network reads as given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx
from aiohttp.base_protocol import BaseProtocol

from bridge.config import BridgeConfig
from bridge.transport import httpx_response
from bridge.upstream import UpstreamClient
from bridge.upstream_call import UpstreamCall

TOKEN = "caller-secret-token-42"
CALL = UpstreamCall(
    authorization=f"Bearer {TOKEN}", request_id="r-1", using_service_key=False, timeout=10
)
SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}


class Body(httpx.AsyncByteStream):
    """A response body delivered as the given reads, then optionally a failure.

    A float among the reads is a pause of that many seconds (a paced upstream).
    """

    def __init__(self, reads: Sequence[bytes | float], fail: Exception | None = None) -> None:
        self.reads = list(reads)
        self.fail = fail
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            if isinstance(read, float):
                await asyncio.sleep(read)
            else:
                yield read
        if self.fail is not None:
            raise self.fail

    async def aclose(self) -> None:
        self.closed = True


class FedResponse:
    """What the aiohttp transport reads of an ``aiohttp.ClientResponse``, its body a real
    ``aiohttp.StreamReader`` fed from memory by `feed` (no socket): so the readers run
    on the very body class production reads."""

    def __init__(self, status: int, headers: dict[str, str], body: Body) -> None:
        self.status = status
        self.raw_headers = tuple((k.encode(), v.encode()) for k, v in headers.items())
        protocol = BaseProtocol(asyncio.get_running_loop())
        protocol.transport = asyncio.Transport()  # "connected", to a socket that is not there
        self.content = aiohttp.StreamReader(protocol, 2**16)
        self.body = body
        self.feeding = asyncio.ensure_future(self.feed())

    async def feed(self) -> None:
        for read in self.body.reads:
            if isinstance(read, float):
                await asyncio.sleep(read)
            else:
                self.content.feed_data(read)
                await asyncio.sleep(0)  # one network read at a time
        if self.body.fail is not None:
            self.content.set_exception(aiohttp.ClientPayloadError(str(self.body.fail)))
        else:
            self.content.feed_eof()

    def release(self) -> None:
        self.close()

    def close(self) -> None:
        self.feeding.cancel()
        self.body.closed = True


class FedTransport(httpx.AsyncBaseTransport):
    """The aiohttp transport's answer (`transport.httpx_response`) over a `FedResponse`."""

    def __init__(self, status: int, headers: dict[str, str], body: Body) -> None:
        self.answer = (status, headers, body)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fed: Any = FedResponse(*self.answer)
        return httpx_response(fed, request)


def client_for(
    status: int, headers: dict[str, str], body: Body, *, fed: bool = False, **settings: Any
) -> UpstreamClient:
    """An upstream client whose every answer is `body`: through an httpx MockTransport, or
    (`fed`) through the aiohttp transport's own body class."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=body)

    config = BridgeConfig(upstream_url="http://upstream.test/api/v1", **settings)
    if fed:
        return UpstreamClient(config, transport=FedTransport(status, headers, body))
    return UpstreamClient(config, transport=httpx.MockTransport(handler))


def relay(
    client: UpstreamClient, call: UpstreamCall, collect: Callable[[Any], Awaitable[None]]
) -> BaseException | None:
    """Open `client`'s stream, hand it to `collect`, close the client: the exception it ended
    with (None when it ended well)."""

    async def main() -> BaseException | None:
        try:
            async with await client.stream_chat_completion(b"{}", call) as answer:
                await collect(answer)
        except Exception as exc:
            return exc
        finally:
            await client.aclose()
        return None

    return asyncio.run(main())


def stream(
    reads: Sequence[bytes | float],
    *,
    status: int = 200,
    headers: dict[str, str] = SSE,
    fail: Exception | None = None,
    call: UpstreamCall = CALL,
    fed: bool = False,
    **settings: Any,
) -> tuple[list[dict[str, Any]], BaseException | None, Body]:
    """Relay a scripted stream: the events it gave, the exception it ended with, its body."""
    body = Body(reads, fail)
    client = client_for(status, headers, body, fed=fed, **settings)
    events: list[dict[str, Any]] = []

    async def collect(answer: AsyncIterator[dict[str, Any]]) -> None:
        async for event in answer:
            events.append(event)

    return events, relay(client, call, collect), body


def unary(
    content: bytes, *, status: int = 200, models: bool = False, **settings: Any
) -> tuple[dict[str, Any] | BaseException, Body]:
    body = Body([content])
    client = client_for(status, JSON, body, **settings)

    async def main() -> dict[str, Any] | BaseException:
        try:
            if models:
                return await client.list_models(CALL)
            return await client.create_chat_completion(b"{}", CALL)
        except Exception as exc:
            return exc
        finally:
            await client.aclose()

    return asyncio.run(main()), body


def batched(
    reads: Sequence[bytes | float], max_delay: float = 0.0, *, fed: bool = False, **settings: Any
) -> tuple[list[list[dict[str, Any]]], BaseException | None, Body]:
    """`stream`, iterated by `EventStream.batches`: the lists it gave, its end, its body."""
    body = Body(reads)
    client = client_for(200, SSE, body, fed=fed, **settings)
    batches: list[list[dict[str, Any]]] = []

    async def collect(answer: Any) -> None:
        async for batch in answer.batches(max_delay):
            batches.append(list(batch))

    return batches, relay(client, CALL, collect), body


def _event(n: int) -> bytes:
    return b'data: {"n": %d}\n\n' % n


SCRIPTS = {
    "done": [_event(0) + _event(1), _event(2), b"data: [DONE]\n\n" + _event(9)],
    "truncated": [_event(0), _event(1) + _event(2)],
    "malformed": [_event(0) + b"data: [1]\n\n" + _event(9)],
    "error": [_event(0), _event(1) + b'data: {"error": {"code": 429}}\n\n'],
    "error first": [b'data: {"error": "down"}\n\n'],
    "too large": [_event(0), b'data: {"pad": "' + b"x" * 2000],
}
