"""bench/floor.py: the grpc.aio floor must send exactly what the bridge sends, and no more.

`make bench` reads "bridge vs floor" as the cost of the bridge's own work; that
holds only if the floor's answers are the bridge's, byte for byte, with the
same initial metadata. The batched floor (StreamChatCompletionBatches) sends the
same chunks, grouped as the upstream writes them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from bench.load import bridge_request
from bench.run import BURST_SCENARIO, STREAM_SCENARIO, TTFC_SCENARIO, UNARY_SCENARIO, floor_argv
from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from support import (
    CALLER_METADATA,
    REPO_ROOT,
    SERVICE_KEY,
    chat_request,
    metadata_dict,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def floor(upstream) -> Iterator[chat_pb2_grpc.ChatServiceStub]:
    process = subprocess.Popen(
        floor_argv(upstream.base_url),  # as bench/run.py starts it, less the load settings
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "MYROUTER_API_KEY": SERVICE_KEY},
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        assert match, line
        with grpc.insecure_channel(match.group(1)) as channel:
            yield chat_pb2_grpc.ChatServiceStub(channel)
    finally:
        process.terminate()
        assert process.wait(15) == 0


def _wire(messages) -> list[bytes]:
    """Serialized messages, less the generation id (the upstream numbers its answers)."""
    out = []
    for message in messages:
        copy = type(message)()
        copy.CopyFrom(message)
        assert copy.id.startswith("gen-")
        copy.ClearField("id")
        out.append(copy.SerializeToString(deterministic=True))
    return out


def test_the_floor_streams_the_bridges_messages(floor, stub, upstream):
    request = with_scenario(chat_request("floor check"), chunks=20, batch=1)
    relayed = list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA))
    for _ in range(2):  # the first call fetches once; the second replays
        call = floor.StreamChatCompletion(request, metadata=CALLER_METADATA)
        replayed = list(call)
        assert _wire(replayed) == _wire(relayed)
        assert len(replayed) == 20 + 3  # role, 20 tokens, finish, usage
        assert metadata_dict(call.initial_metadata())["x-request-id"]
    assert len(upstream.requests()) == 2  # the bridge's, and the floor's one fetch


def _batches(stub, request) -> tuple[list[int], list[chat_pb2.ChatCompletionChunk], Any]:
    """A batched call's chunks per message, its chunks in order, and the call."""
    call = stub.StreamChatCompletionBatches(
        chat_pb2.StreamChatCompletionBatchesRequest(request=request), metadata=CALLER_METADATA
    )
    messages = list(call)
    return [len(m.chunks) for m in messages], [c for m in messages for c in m.chunks], call


@pytest.mark.parametrize(("batch", "sizes"), [(1, [1] * 23), (16, [16, 7])])
def test_the_batched_floor_sends_the_bridges_chunks_as_the_upstream_writes_them(
    floor, stub, upstream, batch, sizes
):
    request = with_scenario(chat_request("batched floor check"), chunks=20, batch=batch)
    _, relayed, _ = _batches(stub, request)
    for _ in range(2):  # the first call fetches once; the second replays
        grouping, replayed, call = _batches(floor, request)
        assert _wire(replayed) == _wire(relayed)
        assert grouping == sizes  # role, 20 tokens, finish, usage: `batch` a write
        assert metadata_dict(call.initial_metadata())["x-request-id"]
    assert len(upstream.requests()) == 2  # the bridge's, and the floor's one fetch


def test_the_floor_answers_the_bridges_completion(floor, stub):
    request = with_scenario(chat_request("floor check"), chunks=16)
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    for _ in range(2):
        answer, call = floor.CreateChatCompletion.with_call(request, metadata=CALLER_METADATA)
        assert _wire([answer]) == _wire([completion])
        assert metadata_dict(call.initial_metadata())["x-request-id"]


def test_different_requests_get_different_answers(floor):
    def stream(chunks: int) -> list[chat_pb2.ChatCompletionChunk]:
        request = with_scenario(chat_request("a"), chunks=chunks)
        return list(floor.StreamChatCompletion(request, metadata=CALLER_METADATA))

    short, long = stream(2), stream(5)
    assert (len(short), len(long)) == (5, 8)
    assert isinstance(short[0], chat_pb2.ChatCompletionChunk)


BENCH_STREAMS = pytest.mark.parametrize(
    "scenario", [STREAM_SCENARIO, BURST_SCENARIO, TTFC_SCENARIO], ids=["stream", "bursts", "ttfc"]
)


@BENCH_STREAMS
def test_the_bench_streams_are_prefetched_and_are_the_bridges(floor, stub, upstream, scenario):
    request = bridge_request(scenario)  # exactly what bench/load.py sends
    call = floor.StreamChatCompletion(request, metadata=CALLER_METADATA)
    replayed = list(call)
    assert metadata_dict(call.initial_metadata())["x-request-id"]
    assert upstream.requests() == []  # answered at start-up: the floor calls no upstream
    relayed = list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA))
    assert len(relayed) == scenario["chunks"] + 3  # role, tokens, finish, usage
    assert _wire(replayed) == _wire(relayed)


@BENCH_STREAMS
def test_the_bench_batches_are_prefetched_and_are_the_bridges(floor, stub, upstream, scenario):
    request = bridge_request(scenario)
    grouping, replayed, call = _batches(floor, request)
    assert metadata_dict(call.initial_metadata())["x-request-id"]
    assert upstream.requests() == []
    _, relayed, _ = _batches(stub, request)
    assert _wire(replayed) == _wire(relayed)
    whole, rest = divmod(scenario["chunks"] + 3, scenario["batch"])
    assert grouping == [scenario["batch"]] * whole + ([rest] if rest else [])


def test_the_bench_completion_is_prefetched_and_is_the_bridges(floor, stub, upstream):
    request = bridge_request(UNARY_SCENARIO)
    answer, call = floor.CreateChatCompletion.with_call(request, metadata=CALLER_METADATA)
    assert metadata_dict(call.initial_metadata())["x-request-id"]
    assert upstream.requests() == []
    assert _wire([answer]) == _wire([stub.CreateChatCompletion(request, metadata=CALLER_METADATA)])
