"""Token counts for the Prometheus metrics, read from the decoded Usage message."""

from __future__ import annotations

import pytest

from bridge import mapping
from bridge.metrics import Metrics, token_counts
from bridge.observe import Observer
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
