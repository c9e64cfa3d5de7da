"""bridge.whole_answer: a completion, a model list, an error answer, each read whole."""

from __future__ import annotations

import grpc
import pytest
from scripted import (
    unary,
)

from bridge import errors

pytestmark = pytest.mark.timeout(30)


def test_a_completion_is_its_json_object():
    answer, body = unary(b'{"id": "x", "choices": []}')
    assert answer == {"id": "x", "choices": []}
    assert body.closed


def test_an_error_answer_without_choices_is_reported_with_the_answer():
    answer, _ = unary(b'{"error": {"code": "server_error", "message": "boom"}, "usage": {}}')
    assert isinstance(answer, errors.UpstreamReportedError)
    assert answer.code is grpc.StatusCode.INTERNAL
    assert answer.event["usage"] == {}


def test_an_error_beside_choices_is_part_of_the_answer():
    answer, _ = unary(b'{"error": "partial", "choices": [{"index": 0}]}')
    assert answer == {"error": "partial", "choices": [{"index": 0}]}


def test_a_model_list_has_no_in_band_errors():
    answer, _ = unary(b'{"error": "odd", "data": []}', models=True)
    assert answer == {"error": "odd", "data": []}


@pytest.mark.parametrize("content", [b"not json", b"[1]"])
def test_a_body_that_is_not_a_json_object_is_malformed(content):
    answer, body = unary(content)
    assert isinstance(answer, errors.UpstreamProtocolError)
    assert answer.reason == "UPSTREAM_MALFORMED_BODY"
    assert body.closed


def test_a_body_over_the_cap_is_too_large():
    answer, body = unary(b'{"pad": "' + b"x" * 2000 + b'"}', max_response_bytes=1024)
    assert isinstance(answer, errors.UpstreamTooLarge)
    assert answer.reason == "UPSTREAM_RESPONSE_TOO_LARGE"
    assert body.closed


def test_an_error_status_of_a_whole_body_keeps_the_upstreams_words():
    answer, body = unary(b"<b>Bad gateway</b>", status=502)
    assert isinstance(answer, errors.UpstreamHTTPError)
    assert answer.code is grpc.StatusCode.UNAVAILABLE
    assert answer.message == "<b>Bad gateway</b>"
    assert body.closed
