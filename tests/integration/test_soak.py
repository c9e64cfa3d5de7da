"""Soak: 1,000 streams, 200 at a time, through one bridge process; memory stays flat.

Run by `make soak` only (marker `soak`, excluded from `make test`). The bridge
is a real child process so its resident set size is its own; the embedded
upstream and the grpc.aio callers share this process. After a warm-up of
1,000 streams run the same way (connection pools, event-loop buffers, caches
and the C allocators' arenas reach their working size: measured, a 200-stream
warm-up leaves the first 1,000 soak streams 8 MiB to fill, and later rounds
then add about 1 MiB each, with no growth of the Python heap per tracemalloc),
the RSS is sampled; after the 1,000 soak streams it must be within 10 % of it.
Every stream must end OK with its complete, in-order content.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2_grpc
from support import CALLER_METADATA, SERVICE_KEY, BridgeProcess, chat_request, with_scenario

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

STREAMS = 1000
CONCURRENCY = 200
WARMUP = 1000
CHUNKS = 20
CHUNK_DELAY = 0.01
MAX_RSS_GROWTH = 0.10
EXPECTED = [f"tok{i} " for i in range(CHUNKS)]


async def _run_streams(target: str, count: int, concurrency: int) -> tuple[int, list[str]]:
    """`count` streams, at most `concurrency` at once; (chunks received, error texts)."""
    request = with_scenario(chat_request("soak"), chunks=CHUNKS, chunk_delay=CHUNK_DELAY)
    errors: list[str] = []
    received = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def worker() -> None:
            nonlocal received
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                tokens: list[str] = []
                try:
                    call = stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=60)
                    async for chunk in call:
                        received += 1
                        if chunk.choices and chunk.choices[0].delta.content:
                            tokens.append(chunk.choices[0].delta.content)
                    if tokens != EXPECTED:
                        errors.append(f"incomplete stream: {len(tokens)} tokens")
                except grpc.RpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return received, errors


def test_soak_1000_streams_200_at_a_time_memory_stays_flat(upstream):
    process = BridgeProcess(
        "--upstream-url",
        upstream.base_url,
        env={"MYROUTER_API_KEY": SERVICE_KEY},
        log_level="INFO",
    )
    try:
        started = time.monotonic()
        _, warm_errors = asyncio.run(_run_streams(process.target, WARMUP, CONCURRENCY))
        assert warm_errors == []
        upstream.clear()
        gc.collect()
        time.sleep(0.5)
        rss_warm = process.rss_kib()
        soak_started = time.monotonic()
        received, errors = asyncio.run(_run_streams(process.target, STREAMS, CONCURRENCY))
        soak_seconds = time.monotonic() - soak_started
        time.sleep(0.5)
        rss_after = process.rss_kib()
        ended = [r for r in upstream.requests() if r.ended_at is not None]
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(30)
    finally:
        process.kill()
    growth = (rss_after - rss_warm) / rss_warm
    print(
        f"\nsoak: {STREAMS} streams, {CONCURRENCY} at a time, {received} messages, "
        f"{len(errors)} errors, {soak_seconds:.1f} s "
        f"({STREAMS / soak_seconds:.0f} streams/s; total with warm-up "
        f"{time.monotonic() - started:.1f} s)\n"
        f"soak: bridge RSS after warm-up {rss_warm / 1024:.1f} MiB, after soak "
        f"{rss_after / 1024:.1f} MiB, change {growth * 100:+.1f} %"
    )
    assert errors == [], errors[:5]
    assert received == STREAMS * (CHUNKS + 3)  # role chunk, tokens, finish chunk, usage chunk
    assert len(ended) == STREAMS  # every upstream request ended (none left open)
    assert abs(growth) <= MAX_RSS_GROWTH
    assert exit_code == 0, process.output()
