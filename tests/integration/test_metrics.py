"""The Prometheus endpoint, scraped over a real socket after real RPCs."""

from __future__ import annotations

import threading

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from support import CALLER_METADATA, chat_request, with_scenario

pytestmark = pytest.mark.timeout(30)


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (name, labels)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metered(make_bridge):
    """A new bridge (so every count starts at zero) with /metrics on a free port: (stub, port)."""
    bridge = make_bridge(metrics_listen="127.0.0.1:0")
    assert bridge.server is not None
    port = bridge.server.metrics_port
    assert port
    with grpc.insecure_channel(bridge.target) as channel:
        yield chat_pb2_grpc.ChatServiceStub(channel), port


def test_counts_and_token_totals_after_a_few_rpcs(metered):
    stub, port = metered
    relayed = 0
    inputs = outputs = 0
    for n in (3, 5, 8):
        request = with_scenario(chat_request(), chunks=n)
        chunks = list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=10))
        relayed += len(chunks)
        usage = [c.usage for c in chunks if c.HasField("usage")][-1]
        inputs += usage.input_tokens
        outputs += usage.output_tokens
    completion = stub.CreateChatCompletion(
        chat_request("count me"), metadata=CALLER_METADATA, timeout=10
    )
    inputs += completion.usage.input_tokens
    outputs += completion.usage.output_tokens
    model = completion.model
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            with_scenario(chat_request(), kind="status", status=503),
            metadata=CALLER_METADATA,
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    stub.ListModels(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA, timeout=10)

    rpcs = "bridge_rpcs_total"
    for _ in range(100):  # an aborted call's status can reach us just before it is counted
        samples = scrape(port)
        if value(samples, rpcs, method="CreateChatCompletion", code="UNAVAILABLE"):
            break
        threading.Event().wait(0.02)
    assert value(samples, rpcs, method="StreamChatCompletion", code="OK") == 3
    assert value(samples, rpcs, method="CreateChatCompletion", code="OK") == 1
    assert value(samples, rpcs, method="CreateChatCompletion", code="UNAVAILABLE") == 1
    assert value(samples, rpcs, method="ListModels", code="OK") == 1
    assert value(samples, "bridge_stream_chunks_total", method="StreamChatCompletion") == relayed
    assert (
        value(samples, "bridge_time_to_first_chunk_seconds_count", method="StreamChatCompletion")
        == 3
    )
    assert (
        value(samples, "bridge_upstream_latency_seconds_count", method="CreateChatCompletion") == 2
    )
    assert value(samples, "bridge_active_rpcs", method="StreamChatCompletion") == 0
    assert (
        value(
            samples,
            "bridge_upstream_errors_total",
            http_status="503",
            reason="UPSTREAM_HTTP_ERROR",
        )
        == 1
    )
    tokens = "bridge_tokens_total"
    assert inputs > 0 and outputs >= 16
    assert value(samples, tokens, model=model, kind="input") == inputs
    assert value(samples, tokens, model=model, kind="output") == outputs
    assert value(samples, "bridge_max_concurrent_rpcs") > 0
    # the same calls under the GenAI semantic conventions' names
    chat = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "myrouter"}
    chat["gen_ai_request_model"] = "myrouter/echo"
    usage = "gen_ai_client_token_usage_sum"
    answered = {**chat, "gen_ai_response_model": model}
    assert value(samples, usage, **answered, gen_ai_token_type="input") == inputs
    assert value(samples, usage, **answered, gen_ai_token_type="output") == outputs
    duration = "gen_ai_server_request_duration_seconds_count"
    assert value(samples, duration, **answered, error_type="") == 4
    failed = {**chat, "gen_ai_response_model": "", "error_type": "UNAVAILABLE"}
    assert value(samples, duration, **failed) == 1
    assert value(samples, "gen_ai_server_time_to_first_token_seconds_count", **answered) == 3


def test_a_cancelled_stream_counts_as_cancelled(metered):
    stub, port = metered
    request = with_scenario(chat_request(), chunks=50, chunk_delay=0.1)
    stream = stub.StreamChatCompletion(request, metadata=CALLER_METADATA, timeout=10)
    next(stream)
    stream.cancel()
    for _ in range(100):
        samples = scrape(port)
        if value(samples, "bridge_rpcs_total", method="StreamChatCompletion", code="CANCELLED"):
            break
        threading.Event().wait(0.05)
    assert value(samples, "bridge_rpcs_total", method="StreamChatCompletion", code="CANCELLED") == 1
    assert value(samples, "bridge_active_rpcs", method="StreamChatCompletion") == 0


def test_no_endpoint_unless_configured(bridge):
    assert bridge.server is not None
    assert bridge.server.metrics_port is None
