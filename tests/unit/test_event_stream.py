"""bridge.event_stream: every rule of a streamed answer, over an httpx MockTransport.

Each answer is scripted byte by byte (split into network reads as given), so
each rule can be broken on its own: framing, sizes, ``[DONE]``, JSON objects,
in-band errors and transport failures, per event and batched. The same rules
against the real embedded upstream are in test_service_*.py and test_faults.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
from scripted import (
    CALL,
    JSON,
    SCRIPTS,
    SSE,
    TOKEN,
    Body,
    _event,
    batched,
    client_for,
    stream,
)

from bridge import errors

pytestmark = pytest.mark.timeout(30)


def test_events_are_parsed_objects_up_to_done_and_nothing_after():
    events, error, body = stream(
        [b'data: {"id": "a"}\n\ndata: {"id"', b': "b"}\n\n', b"data: [DONE]\n\ndata: {}\n\n"]
    )
    assert events == [{"id": "a"}, {"id": "b"}]
    assert error is None
    assert body.closed


def test_keepalive_comments_are_not_events():
    events, error, _ = stream([b": PROCESSING\n\n", b'data: {"id": "a"}\n\n', b"data: [DONE]\n\n"])
    assert (events, error) == ([{"id": "a"}], None)


def test_a_stream_without_done_is_truncated_never_finished():
    events, error, body = stream([b'data: {"id": "a"}\n\n'])
    assert events == [{"id": "a"}]
    assert isinstance(error, errors.UpstreamProtocolError)
    assert error.reason == "UPSTREAM_STREAM_TRUNCATED"
    assert body.closed


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'"text"', b"null"])
def test_an_event_that_is_not_a_json_object_is_malformed(data):
    events, error, body = stream([b'data: {"id": "a"}\n\n', b"data: " + data + b"\n\n"])
    assert events == [{"id": "a"}]
    assert isinstance(error, errors.UpstreamProtocolError)
    assert error.reason == "UPSTREAM_MALFORMED_EVENT"
    assert body.closed


def test_an_event_over_the_cap_is_refused_whole_or_unfinished():
    big = b'data: {"pad": "' + b"x" * 2000 + b'"}\n\n'
    _, whole, _ = stream([big], max_event_bytes=1024)
    _, unfinished, body = stream([big[:700], big[700:1400]], max_event_bytes=1024)
    for error in (whole, unfinished):
        assert isinstance(error, errors.UpstreamTooLarge)
        assert error.reason == "UPSTREAM_EVENT_TOO_LARGE"
        assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert body.closed


def test_an_in_band_error_raises_itself_carrying_its_event():
    failing = (
        b'{"id": "b", "error": {"code": 502, "message": "Provider down",'
        b' "metadata": {"provider_name": "Acme"}}}'
    )
    events, error, body = stream([b'data: {"id": "a"}\n\n', b"data: " + failing + b"\n\n"])
    assert events == [{"id": "a"}]
    assert isinstance(error, errors.UpstreamReportedError)
    assert error.code is grpc.StatusCode.UNAVAILABLE
    assert error.message == "Provider down"
    assert error.metadata["code"] == error.metadata["http_status"] == "502"
    assert error.metadata["provider_name"] == "Acme"
    assert error.event["id"] == "b"
    assert error.event["error"]["message"] == "Provider down"
    assert body.closed


def test_a_string_error_is_its_own_message_and_a_null_error_is_none():
    events, error, _ = stream(
        [b'data: {"id": "a", "error": null}\n\n', b'data: {"error": "rate limited"}\n\n']
    )
    assert events == [{"id": "a", "error": None}]
    assert isinstance(error, errors.UpstreamReportedError)
    assert error.message == "rate limited"


def test_credentials_never_reach_an_in_band_error_message():
    data = b'data: {"error": {"message": "bad key ' + TOKEN.encode() + b'"}}\n\n'
    _, error, _ = stream([data])
    assert isinstance(error, errors.UpstreamReportedError)
    assert TOKEN not in error.message


def test_a_json_error_instead_of_events_is_reported():
    _, error, _ = stream([b'{"error": {"code": 404, "message": "no such model"}}'], headers=JSON)
    assert isinstance(error, errors.UpstreamReportedError)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.message == "no such model"


def test_anything_else_instead_of_events_is_not_an_event_stream():
    _, error, body = stream([b"<html>hi</html>"], headers={"content-type": "text/html"})
    assert isinstance(error, errors.UpstreamProtocolError)
    assert error.reason == "UPSTREAM_NOT_AN_EVENT_STREAM"
    assert body.closed


@pytest.mark.parametrize(
    ("failure", "expected", "words"),
    [
        (httpx.ReadTimeout("quiet"), errors.UpstreamTimeout, "silent for 7 s"),
        (httpx.ReadError("reset"), errors.UpstreamUnavailable, "broke mid-stream (ReadError)"),
        (httpx.RemoteProtocolError("eof"), errors.UpstreamUnavailable, "mid-stream"),
    ],
)
def test_a_transport_failure_mid_stream_becomes_the_bridges(failure, expected, words):
    events, error, body = stream([b'data: {"id": "a"}\n\n'], fail=failure, stream_idle_timeout=7)
    assert events == [{"id": "a"}]
    assert type(error) is expected
    assert words in str(error)
    assert body.closed


def test_a_stream_left_early_is_closed():
    body = Body([b'data: {"id": "a"}\n\ndata: {"id": "b"}\n\n'])
    client = client_for(200, SSE, body)

    async def main() -> None:
        async with await client.stream_chat_completion(b"{}", CALL) as answer:
            async for _ in answer:
                break
        await client.aclose()

    asyncio.run(main())
    assert body.closed


@pytest.mark.parametrize("max_delay", [0.0, 0.05])
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_batches_keep_every_rule_of_the_stream(script, max_delay):
    events, error, _ = stream(SCRIPTS[script], max_event_bytes=1024)
    batches, batched_error, body = batched(SCRIPTS[script], max_delay, max_event_bytes=1024)
    assert [event for batch in batches for event in batch] == events
    assert all(batches)  # never an empty list
    assert type(batched_error) is type(error)
    assert getattr(batched_error, "reason", None) == getattr(error, "reason", None)
    assert body.closed


def test_without_a_wait_each_read_is_one_list():
    batches, error, _ = batched(
        [_event(0) + _event(1), b": keepalive\n\n", _event(2), b"data: [DONE]\n\n"]
    )
    assert error is None
    assert batches == [[{"n": 0}, {"n": 1}], [{"n": 2}]]


def test_with_a_wait_a_list_gathers_the_reads_within_it():
    paced: list[bytes | float] = [
        _event(0),
        0.01,
        _event(1),
        0.01,
        _event(2),
        0.6,
        _event(3),
        b"data: [DONE]\n\n",
    ]
    batches, error, _ = batched(paced, max_delay=0.3)
    assert error is None
    # 0-2 arrive within 0.3 s of the first; 3 comes after the wait, with [DONE] at once.
    assert batches == [[{"n": 0}, {"n": 1}, {"n": 2}], [{"n": 3}]]


def test_with_a_wait_an_end_sends_what_is_gathered_at_once():
    paced: list[bytes | float] = [_event(0), 0.01, _event(1), b'data: {"error": "late"}\n\n']
    batches, error, body = batched(paced, max_delay=5.0)  # the test's timeout would catch a wait
    assert batches == [[{"n": 0}, {"n": 1}]]
    assert isinstance(error, errors.UpstreamReportedError)
    assert body.closed


def test_a_batched_stream_left_during_a_wait_is_closed():
    body = Body([_event(0), 0.01, _event(1), 30.0, _event(2)])
    client = client_for(200, SSE, body)

    async def main() -> list[dict[str, Any]]:
        async with await client.stream_chat_completion(b"{}", CALL) as answer:
            first = await anext(answer.batches(0.05))
        await client.aclose()
        return first

    assert asyncio.run(main()) == [{"n": 0}, {"n": 1}]
    assert body.closed


def _ends(error: BaseException | None) -> tuple[type | None, str | None]:
    return (type(error) if error else None, getattr(error, "reason", None))


@pytest.mark.parametrize("max_delay", [None, 0.0, 0.05])
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_aiohttp_body_production_reads_keeps_every_rule(script, max_delay):
    """The same scripts through the aiohttp transport's own body (fed from memory): the
    reader and the body that production runs give what the mock transport gives."""
    reads = SCRIPTS[script]
    if max_delay is None:
        expected, error, _ = stream(reads, max_event_bytes=1024)
        got, fed_error, body = stream(reads, max_event_bytes=1024, fed=True)
    else:
        lists, error, _ = batched(reads, max_delay, max_event_bytes=1024)
        fed_lists, fed_error, body = batched(reads, max_delay, max_event_bytes=1024, fed=True)
        expected = [event for batch in lists for event in batch]  # reads may group apart
        got = [event for batch in fed_lists for event in batch]
    assert got == expected
    assert _ends(fed_error) == _ends(error)
    assert body.closed


def test_a_failed_aiohttp_read_mid_stream_becomes_the_bridges():
    events, error, body = stream(
        [b'data: {"id": "a"}\n\n'], fail=httpx.ReadError("reset"), fed=True
    )
    assert events == [{"id": "a"}]
    assert type(error) is errors.UpstreamUnavailable
    assert "broke mid-stream" in str(error)
    assert body.closed
