"""Token counts for the Prometheus metrics, read from the decoded Usage message; the GenAI
semantic-convention names beside ours."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import grpc
import pytest
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.schemas import Schemas

from bridge import mapping
from bridge.metrics import (
    GENAI_METRICS,
    GENAI_SEMCONV,
    SEMCONV_PACKAGE_VERSION,
    Metrics,
    prometheus_name,
    token_counts,
)
from bridge.observe import Observer
from bridge.policy import PolicyFile
from myrouter.chat.v1 import chat_pb2

pytestmark = pytest.mark.timeout(30)


def _usage(usage: dict[str, object]) -> chat_pb2.Usage:
    """The Usage message the caller receives for an API `usage` object: what metrics read."""
    return mapping.decode(chat_pb2.Usage, usage)


def test_token_counts_in_both_spellings():
    assert token_counts(
        _usage(
            {
                "input_tokens": 10,
                "output_tokens": 4,
                "cache_read_tokens": 3,
                "cache_write_tokens": 2,
                "reasoning_tokens": 1,
                "total_tokens": 14,
            }
        )
    ) == {"input": 10, "output": 4, "cache_read": 3, "cache_write": 2, "reasoning": 1}
    assert token_counts(
        _usage(
            {
                "prompt_tokens": 7,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 3},
            }
        )
    ) == {"input": 7, "output": 5, "cache_read": 2, "reasoning": 3}
    assert token_counts(_usage({"input_tokens": 0, "output_tokens": True})) == {}


def test_token_metrics_say_what_the_caller_was_told_when_spellings_disagree():
    """Both spellings, a count out of int32: the metric follows the decoded message."""
    chunk = mapping.decode(
        chat_pb2.ChatCompletionChunk,
        {
            "model": "acme/answering",
            "usage": {
                "input_tokens": 3,
                "prompt_tokens": 7,
                "completion_tokens": 5,
                "output_tokens": 0,
                "reasoning_tokens": 2**31,
            },
        },
    )
    metrics = Metrics()
    observer = Observer(metrics)
    record = observer.start("StreamChatCompletion", "r-1", "asked/model")
    record.answered(chunk)
    observer.finish(record, None)

    told = {
        "input": chunk.usage.input_tokens,
        "output": chunk.usage.output_tokens,
        "reasoning": chunk.usage.reasoning_tokens,
    }
    assert told == {"input": 7, "output": 0, "reasoning": 0}
    for kind, count in told.items():
        sample = metrics.registry.get_sample_value(
            "bridge_tokens_total", {"model": "acme/answering", "kind": kind}
        )
        assert (sample or 0) == count, kind


@pytest.mark.parametrize(
    ("name", "unit", "expected"),
    [
        ("gen_ai.client.token.usage", "{token}", "gen_ai_client_token_usage"),
        ("gen_ai.server.request.duration", "s", "gen_ai_server_request_duration_seconds"),
        ("http.server.request.body.size", "By", "http_server_request_body_size_bytes"),
        ("db.client.latency_seconds", "s", "db_client_latency_seconds"),
        ("system.cpu.utilization", "1", "system_cpu_utilization_ratio"),
        ("odd-name/x", "", "odd_name_x"),
    ],
)
def test_prometheus_names_follow_the_otel_compatibility_mapping(name, unit, expected):
    assert prometheus_name(name, unit) == expected


def test_genai_definitions_come_from_the_semconv_package():
    assert [(m.name, m.unit) for m in GENAI_METRICS] == [
        (gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE, "{token}"),
        (gen_ai_metrics.GEN_AI_SERVER_REQUEST_DURATION, "s"),
        (gen_ai_metrics.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "s"),
        (gen_ai_metrics.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, "s"),
    ]
    for metric in GENAI_METRICS:
        assert metric.description
        assert list(metric.buckets) == sorted(set(metric.buckets))
    assert GENAI_SEMCONV.startswith("https://opentelemetry.io/schemas/")


def _finish(observer, method, code=None, *, tokens=None, first_chunk_after=None, model="m/a"):
    record = observer.start(method, "r-1", "asked/model")
    if tokens is not None:
        record.answered(chat_pb2.ChatCompletionChunk(model=model, usage=chat_pb2.Usage(**tokens)))
    if first_chunk_after is not None:
        record.first_chunk_at = record.started_at + first_chunk_after
    observer.finish(record, code)


GENAI = {
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "myrouter",
    "gen_ai_request_model": "asked/model",
    "gen_ai_response_model": "m/a",
    "caller": "",  # a record that no caller was decided for
}


def test_a_chat_rpc_is_published_under_the_genai_names():
    metrics = Metrics()
    observer = Observer(metrics)
    _finish(
        observer,
        "StreamChatCompletion",
        tokens={"input_tokens": 7, "output_tokens": 11, "reasoning_tokens": 2},
        first_chunk_after=0.0,
    )
    sample = metrics.registry.get_sample_value
    assert sample("gen_ai_client_token_usage_sum", {**GENAI, "gen_ai_token_type": "input"}) == 7
    assert sample("gen_ai_client_token_usage_sum", {**GENAI, "gen_ai_token_type": "output"}) == 11
    assert sample("gen_ai_client_token_usage_count", {**GENAI, "gen_ai_token_type": "output"}) == 1
    # reasoning tokens are not a gen_ai.token.type: only bridge_tokens_total has them
    assert (
        sample("gen_ai_client_token_usage_count", {**GENAI, "gen_ai_token_type": "reasoning"})
        is None
    )
    assert sample("gen_ai_server_request_duration_seconds_count", {**GENAI, "error_type": ""}) == 1
    assert sample("gen_ai_server_time_to_first_token_seconds_count", GENAI) == 1
    assert sample("gen_ai_server_time_per_output_token_seconds_count", GENAI) == 1


def test_a_failed_chat_rpc_has_an_error_type_and_no_first_token():
    metrics = Metrics()
    observer = Observer(metrics)
    _finish(observer, "StreamChatCompletion", grpc.StatusCode.UNAVAILABLE, first_chunk_after=0.0)
    sample = metrics.registry.get_sample_value
    labels = {**GENAI, "gen_ai_response_model": ""}
    assert (
        sample(
            "gen_ai_server_request_duration_seconds_count", {**labels, "error_type": "UNAVAILABLE"}
        )
        == 1
    )
    assert sample("gen_ai_server_time_to_first_token_seconds_count", labels) is None
    # the bridge's own metric still sees the first chunk
    assert (
        sample("bridge_time_to_first_chunk_seconds_count", {"method": "StreamChatCompletion"}) == 1
    )


def test_list_models_is_no_genai_operation():
    metrics = Metrics()
    _finish(Observer(metrics), "ListModels")
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert "bridge_rpcs_total" in names
    assert not {n for n in names if n.startswith("gen_ai_")}


def test_the_admission_cap_is_published():
    metrics = Metrics()
    metrics.admission(64)
    assert metrics.registry.get_sample_value("bridge_max_concurrent_rpcs") == 64


def test_the_caller_label_reaches_the_caller_and_genai_metrics_not_the_older_ones():
    """The caller's label: its name in CALL_LABELS, its value in the record; the older
    bridge_* metrics keep their label sets (a contract), the caller ones carry it."""
    metrics = Metrics()
    observer = Observer(metrics)
    record = observer.start("CreateChatCompletion", "r-1", "asked/model")
    record.labels = {"caller": "team-a"}
    record.answered(chat_pb2.ChatCompletion(model="m/a", usage=chat_pb2.Usage(input_tokens=3)))
    observer.finish(record, None)
    sample = metrics.registry.get_sample_value
    caller = {"caller": "team-a"}
    rpc = {"method": "CreateChatCompletion", "code": "OK"}
    assert sample("bridge_rpcs_total", rpc) == 1
    assert sample("bridge_caller_rpcs_total", {**rpc, **caller}) == 1
    assert sample("bridge_tokens_total", {"model": "m/a", "kind": "input"}) == 3
    assert sample("bridge_caller_tokens_total", {"model": "m/a", "kind": "input", **caller}) == 3
    genai = {**GENAI, **caller}
    assert sample("gen_ai_server_request_duration_seconds_count", {**genai, "error_type": ""}) == 1
    assert sample("gen_ai_client_token_usage_sum", {**genai, "gen_ai_token_type": "input"}) == 3


def test_the_pinned_conventions_are_the_installed_and_documented_ones():
    """Bumping the package pin forces GENAI_SEMCONV and docs/operations.md along."""
    root = Path(__file__).resolve().parents[2]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    pins = [d for d in pyproject["project"]["dependencies"] if "semantic-conventions" in d]
    assert pins == [f"opentelemetry-semantic-conventions=={SEMCONV_PACKAGE_VERSION}"]
    assert list(Schemas)[-1].value == GENAI_SEMCONV
    schema = GENAI_SEMCONV.rsplit("/", 1)[1]
    operations = (root / "docs" / "operations.md").read_text()
    assert f"version **{SEMCONV_PACKAGE_VERSION}**" in operations
    assert f"schema **{schema}**" in operations


def test_policy_reloads_are_counted_by_result(tmp_path):
    metrics = Metrics()
    path = tmp_path / "policy.yaml"
    path.write_text("default: {service_key: true}\n")
    watch = PolicyFile(path, on_result=metrics.policy_reloaded)
    for text in ("default: {service_key: maybe}\n", "default: {service_key: false}\n"):
        path.write_text(text)
        os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # a change, even in one tick
        watch.check()

    def count(result: str) -> float | None:
        return metrics.registry.get_sample_value("bridge_policy_reloads_total", {"result": result})

    assert (count("ok"), count("error")) == (1.0, 1.0)


def test_the_failure_counters_the_alerts_read_start_at_zero():
    """increase() and rate() see a first failure only from a series that was there at 0."""
    sample = Metrics().registry.get_sample_value
    for result in ("ok", "error"):
        assert sample("bridge_policy_reloads_total", {"result": result}) == 0
    for mode in ("open", "closed"):
        assert sample("bridge_limits_store_failures_total", {"mode": mode}) == 0
