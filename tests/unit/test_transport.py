"""The aiohttp-backed transport's fast raw reads, and their fallback for another transport.

Every failure of the transport itself is provoked for real against the embedded
upstream in tests/integration/test_transport.py.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bridge.transport import raw_reads

pytestmark = pytest.mark.timeout(30)


def test_raw_reads_fall_back_to_aiter_raw_with_another_transport():
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, stream=httpx.ByteStream(b"abc"))
    )

    async def main() -> bytes:
        async with (
            httpx.AsyncClient(transport=transport) as client,
            client.stream("GET", "http://upstream.test/") as response,
        ):
            return b"".join([part async for part in raw_reads(response)])

    assert asyncio.run(main()) == b"abc"
