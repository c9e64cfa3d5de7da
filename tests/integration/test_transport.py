"""The aiohttp-backed httpx transport against the real embedded upstream.

The bridge's status mapping depends on which httpx exception a failure
becomes, so each kind of failure is provoked for real here: connection
refused, silence while reading, a connection reset mid-body. The body-closing
rules (release a fully read connection, drop a half-read one) are checked
through what the upstream saw. The table behind the translation is checked
on its own at the end: its most specific entry wins, whatever its order.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from bridge.transport import AiohttpTransport, BodyReads, body_reads
from myrouter_upstream import EmbeddedUpstream
from support import CALLER_TOKEN

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")


def run(upstream: EmbeddedUpstream, body: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with httpx.AsyncClient(
            base_url=upstream.base_url + "/",
            transport=AiohttpTransport(max_connections=8),
            headers={"authorization": f"Bearer {CALLER_TOKEN}", "user-agent": "bench/1"},
            timeout=httpx.Timeout(5.0),
        ) as client:
            return await body(client)

    return asyncio.run(main())


def chat(stream: bool, **scenario: Any) -> bytes:
    return orjson.dumps(
        {
            "model": "myrouter/echo",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": stream,
            "scenario": scenario,
        }
    )


def test_unary_request_and_headers_arrive_as_httpx_built_them(upstream):
    async def body(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(
            "chat/completions",
            content=chat(False),
            headers={"content-type": "application/json", "x-request-id": "abc"},
        )

    response = run(upstream, body)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "You said: one two three"
    [record] = upstream.requests()
    assert record.headers["authorization"] == f"Bearer {CALLER_TOKEN}"
    assert record.headers["user-agent"] == "bench/1"  # not aiohttp's own
    assert record.headers["x-request-id"] == "abc"
    assert record.headers["content-type"] == "application/json"


def test_error_status_and_body_are_passed_through(upstream):
    async def body(client: httpx.AsyncClient) -> tuple[int, str | None, bytes]:
        response = await client.post(
            "chat/completions", content=chat(False, kind="status", status=429, retry_after=3)
        )
        return response.status_code, response.headers.get("retry-after"), response.content

    status, retry_after, content = run(upstream, body)
    assert status == 429
    assert retry_after == "3"
    assert orjson.loads(content)["error"]["code"] == 429


def test_stream_read_to_the_end_releases_and_reuses_the_connection(upstream):
    async def body(client: httpx.AsyncClient) -> list[bytes]:
        out = []
        for _ in range(3):
            async with client.stream("POST", "chat/completions", content=chat(True)) as response:
                out.append(b"".join([part async for part in response.aiter_raw()]))
        return out

    bodies = run(upstream, body)
    assert all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
    records = upstream.requests()
    assert [r.outcome for r in records] == ["completed"] * 3


def test_half_read_stream_is_dropped_so_the_upstream_stops(upstream):
    async def body(client: httpx.AsyncClient) -> None:
        async with client.stream(
            "POST", "chat/completions", content=chat(True, stall_after=1, stall=600)
        ) as response:
            async for _ in response.aiter_raw():
                break  # leave with the body unread

    run(upstream, body)
    record = upstream.wait_for(lambda r: r.outcome is not None, timeout=5)
    assert record.outcome == "disconnected"


def test_connection_refused_is_a_connect_error(upstream):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused

    async def main() -> None:
        async with httpx.AsyncClient(transport=AiohttpTransport(max_connections=1)) as client:
            await client.get(f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(main())


def test_silence_while_reading_is_a_read_timeout(upstream):
    async def body(client: httpx.AsyncClient) -> None:
        async with client.stream(
            "POST",
            "chat/completions",
            content=chat(True, stall_after=1, stall=600),
            timeout=httpx.Timeout(5.0, read=0.3),
        ) as response:
            async for _ in response.aiter_raw():
                pass

    with pytest.raises(httpx.ReadTimeout):
        run(upstream, body)


def test_reset_mid_body_is_a_transport_error_not_a_timeout(upstream):
    async def body(client: httpx.AsyncClient) -> None:
        async with client.stream(
            "POST", "chat/completions", content=chat(True, kind="truncate", abort=True)
        ) as response:
            async for _ in response.aiter_raw():
                pass

    with pytest.raises(httpx.TransportError) as caught:
        run(upstream, body)
    assert not isinstance(caught.value, httpx.TimeoutException)


async def read_all(reads: BodyReads) -> list[bytes]:
    """Every read of `reads` up to the body's end."""
    out = []
    while data := await reads.read():
        out.append(data)
    return out


def test_body_reads_give_the_same_bytes_as_aiter_raw(upstream):
    async def body(client: httpx.AsyncClient) -> tuple[bytes, bytes]:
        out = []
        for fast in (True, False):
            async with client.stream("POST", "chat/completions", content=chat(True)) as response:
                if fast:
                    out.append(b"".join(await read_all(body_reads(response))))
                else:
                    out.append(b"".join([part async for part in response.aiter_raw()]))
        return out[0], out[1]

    fast, slow = run(upstream, body)
    assert re.sub(rb"gen-\d+", b"gen", fast) == re.sub(rb"gen-\d+", b"gen", slow)
    assert fast.endswith(b"data: [DONE]\n\n")
