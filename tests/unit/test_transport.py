"""The aiohttp-backed transport's fast raw reads, and their fallback for another transport.

Every failure of the transport itself is provoked for real against the embedded
upstream in tests/integration/test_transport.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiohttp.client_exceptions
import httpx
import pytest
from aiohttp.base_protocol import BaseProtocol

from bridge import transport
from bridge.transport import BodyReads, body_reads, httpx_exception, httpx_response

pytestmark = pytest.mark.timeout(30)


async def read_all(reads: BodyReads) -> list[bytes]:
    """Every read of `reads` up to the body's end."""
    out = []
    while data := await reads.read():
        out.append(data)
    return out


def test_body_reads_fall_back_to_aiter_raw_with_another_transport():
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, stream=httpx.ByteStream(b"abc"))
    )

    async def main() -> bytes:
        async with (
            httpx.AsyncClient(transport=transport) as client,
            client.stream("GET", "http://upstream.test/") as response,
        ):
            return b"".join(await read_all(body_reads(response)))

    assert asyncio.run(main()) == b"abc"


def _aiohttp_exceptions() -> list[type[BaseException]]:
    found = {
        value
        for module in (aiohttp, aiohttp.client_exceptions)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, aiohttp.ClientError)
    }
    return sorted(found, key=lambda cls: cls.__name__)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        # each a subclass of another class the table names, which must not win
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # a ServerTimeoutError
        (aiohttp.SocketTimeoutError, httpx.ReadTimeout),  # a ServerTimeoutError
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # a ClientError
        (aiohttp.ClientConnectorCertificateError, httpx.ConnectError),  # a ClientError
        (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),  # an InvalidURL
        (aiohttp.ClientOSError, httpx.ReadError),
        (asyncio.TimeoutError, httpx.ReadTimeout),
        (ValueError, None),  # not aiohttp's: passes untouched
    ],
)
def test_each_aiohttp_failure_maps_to_its_most_specific_httpx_exception(failure, expected):
    assert httpx_exception(failure.__new__(failure)) is expected


def test_the_aiohttp_mapping_does_not_depend_on_the_tables_order(monkeypatch):
    failures = [cls.__new__(cls) for cls in _aiohttp_exceptions()]
    as_written = [httpx_exception(failure) for failure in failures]
    monkeypatch.setattr(
        "bridge.transport.EXCEPTIONS", dict(reversed(list(transport.EXCEPTIONS.items())))
    )
    assert [httpx_exception(failure) for failure in failures] == as_written
    assert len(failures) > 20 and None not in as_written  # every aiohttp failure is mapped


def test_bytes_that_arrived_before_a_failure_are_read_before_it():
    """aiohttp's readany raises a connection's failure ahead of the bytes buffered before
    it (a reset right after two events): the body hands those over first."""

    async def main() -> tuple[bytes, BaseException | None]:
        protocol = BaseProtocol(asyncio.get_running_loop())
        protocol.transport = asyncio.Transport()
        content = aiohttp.StreamReader(protocol, 2**16)
        content.feed_data(b"data: 1\n\n")
        content.feed_data(b"data: 2\n\n")
        content.set_exception(aiohttp.ClientPayloadError("reset"))
        aio: Any = SimpleNamespace(status=200, raw_headers=(), content=content)
        reads = body_reads(httpx_response(aio, httpx.Request("GET", "http://upstream.test/")))
        first = await reads.read()
        try:
            await reads.read()
        except httpx.TransportError as exc:
            return first, exc
        return first, None

    first, failure = asyncio.run(main())
    assert first == b"data: 1\n\ndata: 2\n\n"
    assert isinstance(failure, httpx.ReadError)
