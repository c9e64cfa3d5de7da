"""Micro-benchmarks of the pure per-chunk pieces, so a regression shows up as a number.

Run by `make bench` (not by `make test`: `tests/` is the test path). The stream
is recorded from the real embedded upstream once per session, then fed to the
decoder the way the network delivers it: one event per read (a live LLM stream)
and 16 KiB reads (a burst).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from bridge import mapping
from bridge.sse import DONE, SSEDecoder
from myrouter.chat.v1 import chat_pb2
from myrouter_upstream import EmbeddedUpstream, UpstreamConfig

pytestmark = pytest.mark.bench

CHUNKS = 500


@pytest.fixture(scope="module")
def recorded() -> Iterator[bytes]:
    with EmbeddedUpstream(UpstreamConfig(port=0)) as upstream:
        response = httpx.post(
            upstream.base_url + "/chat/completions",
            headers={"authorization": "Bearer bench"},
            json={
                "model": "myrouter/echo",
                "messages": [{"role": "user", "content": "hello"}],
                "stream": True,
                "scenario": {"chunks": CHUNKS},
            },
            timeout=30,
        )
        response.raise_for_status()
        yield response.content


def _events(recorded: bytes) -> list[bytes]:
    return [part + b"\n\n" for part in recorded.split(b"\n\n") if part]


def _decode_all(reads: list[bytes]) -> int:
    decoder = SSEDecoder()
    count = 0
    for read in reads:
        count += len(decoder.feed(read))
    return count


def test_sse_one_event_per_read(benchmark: Any, recorded: bytes) -> None:
    reads = _events(recorded)
    assert benchmark(_decode_all, reads) == CHUNKS + 4  # role, tokens, finish, usage, [DONE]


def test_sse_16k_reads(benchmark: Any, recorded: bytes) -> None:
    reads = [recorded[i : i + 16384] for i in range(0, len(recorded), 16384)]
    assert benchmark(_decode_all, reads) == CHUNKS + 4


def _content_event(recorded: bytes) -> bytes:
    return _events(recorded)[2].removeprefix(b"data: ").rstrip(b"\n")


def test_chunk_json_to_protobuf(benchmark: Any, recorded: bytes) -> None:
    data = _content_event(recorded)

    def convert() -> chat_pb2.ChatCompletionChunk:
        return mapping.decode(chat_pb2.ChatCompletionChunk, orjson.loads(data))

    chunk = benchmark(convert)
    assert chunk.choices[0].delta.content == "tok1 "


def test_chunk_json_to_wire_bytes(benchmark: Any, recorded: bytes) -> None:
    """The whole per-chunk CPU of the relay before gRPC: parse, build, serialize."""
    data = _content_event(recorded)

    def convert() -> bytes:
        return mapping.decode(chat_pb2.ChatCompletionChunk, orjson.loads(data)).SerializeToString()

    wire = benchmark(convert)
    assert chat_pb2.ChatCompletionChunk.FromString(wire).choices[0].delta.content == "tok1 "


def test_stream_events_to_messages(benchmark: Any, recorded: bytes) -> None:
    """SSE split + JSON parse + protobuf build for a whole 500-chunk stream, per event read."""
    reads = _events(recorded)
    chunk_type = chat_pb2.ChatCompletionChunk

    def relay() -> int:
        decoder = SSEDecoder()
        count = 0
        for read in reads:
            for event in decoder.feed(read):
                if event.data == DONE:
                    return count
                mapping.decode(chunk_type, orjson.loads(event.data)).SerializeToString()
                count += 1
        return count

    assert benchmark(relay) == CHUNKS + 3
