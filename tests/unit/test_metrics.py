"""Token counts for the Prometheus metrics, from either spelling of the API's usage."""

from __future__ import annotations

import pytest

from bridge.metrics import token_counts

pytestmark = pytest.mark.timeout(30)


def test_token_counts_in_both_spellings():
    assert token_counts(
        {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_tokens": 3,
            "cache_write_tokens": 2,
            "reasoning_tokens": 1,
            "total_tokens": 14,
        }
    ) == {"input": 10, "output": 4, "cache_read": 3, "cache_write": 2, "reasoning": 1}
    assert token_counts(
        {
            "prompt_tokens": 7,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 2},
            "completion_tokens_details": {"reasoning_tokens": 3},
        }
    ) == {"input": 7, "output": 5, "cache_read": 2, "reasoning": 3}
    assert token_counts({"input_tokens": 0, "output_tokens": True}) == {}
