"""The connect retries: a connection that never opened is retried, bounded, with backoff.

Unit tests over an httpx MockTransport that fails a scripted number of times
(the integration proof, an upstream that starts listening late, is in
test_faults.py). A transport failure that may have reached the model is
attempted once; which error statuses the bridge retries (since issue 19) is
tests/unit/test_retries.py's.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from bridge.config import BridgeConfig
from bridge.errors import UpstreamTimeout, UpstreamUnavailable
from bridge.upstream import UpstreamCall, UpstreamClient

pytestmark = pytest.mark.timeout(30)

CALL = UpstreamCall(authorization="Bearer k", request_id="r", using_service_key=False, timeout=10)
ANSWER = b'{"id": "x", "object": "chat.completion", "choices": []}'


def _client(failures: list[Exception], **settings: object) -> tuple[UpstreamClient, list[int]]:
    """A client whose transport raises `failures` in turn, then answers 200."""
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, content=ANSWER, headers={"content-type": "application/json"})

    config = BridgeConfig(upstream_url="http://upstream.test/api/v1", **settings)  # type: ignore[arg-type]
    return UpstreamClient(config, transport=httpx.MockTransport(handler)), attempts


async def _create(client: UpstreamClient) -> dict[str, object]:
    try:
        return await client.create_chat_completion(b"{}", CALL)
    finally:
        await client.aclose()


def test_connect_errors_are_retried_until_a_connection_opens():
    client, attempts = _client(
        [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")],
        connect_retries=2,
        connect_retry_backoff=0.05,
    )
    started = time.monotonic()
    answer = asyncio.run(_create(client))
    assert answer["id"] == "x"
    assert len(attempts) == 3
    assert time.monotonic() - started >= 0.05 + 0.10  # backoff doubles: 0.05 s, then 0.1 s


def test_connect_retries_are_bounded():
    client, attempts = _client(
        [httpx.ConnectError("refused")] * 10, connect_retries=3, connect_retry_backoff=0
    )
    with pytest.raises(UpstreamUnavailable, match="could not reach the upstream"):
        asyncio.run(_create(client))
    assert len(attempts) == 4  # the first try and 3 retries


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.RemoteProtocolError("server disconnected"), UpstreamUnavailable),
        (httpx.ReadError("connection reset"), UpstreamUnavailable),
        (httpx.WriteError("broken pipe"), UpstreamUnavailable),
        (httpx.ReadTimeout("silent"), UpstreamTimeout),
    ],
    ids=["disconnected", "reset", "write-error", "read-timeout"],
)
def test_failures_after_the_request_may_have_left_are_not_retried(failure, expected):
    client, attempts = _client([failure], connect_retries=5, connect_retry_backoff=0)
    with pytest.raises(expected):
        asyncio.run(_create(client))
    assert len(attempts) == 1


@pytest.mark.parametrize(("status", "tries"), [(500, 1), (503, 3)])
def test_error_statuses_are_not_connect_retries(status, tries):
    """Before issue 19 no status was retried; now 503 is tried `retry_attempts` times in all
    (however many connect retries are allowed) and 500 once."""
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        return httpx.Response(status, json={"error": {"message": "busy", "code": status}})

    config = BridgeConfig(
        upstream_url="http://upstream.test/api/v1",
        connect_retries=5,
        retry_attempts=3,
        retry_backoff=0,
    )
    client = UpstreamClient(config, transport=httpx.MockTransport(handler))
    with pytest.raises(Exception, match="busy"):
        asyncio.run(_create(client))
    assert len(attempts) == tries
