"""Every validation rule refuses the call with BadRequest details and no upstream call."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest

from myrouter.chat.v1 import chat_pb2
from support import CALLER_METADATA, chat_request, details_of

pytestmark = pytest.mark.timeout(30)


def _no_messages() -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(model="myrouter/echo")


def _no_role() -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        model="myrouter/echo", messages=[chat_pb2.ChatMessage(content="hi")]
    )


def _extra(**members: Any) -> chat_pb2.ChatCompletionRequest:
    request = chat_request()
    request.extra.update(members)
    return request


INVALID = [
    ("model", lambda: chat_request(model="")),
    ("model", lambda: chat_request(model="   ")),
    ("messages", _no_messages),
    ("messages[0].role", _no_role),
    ("max_tokens", lambda: chat_request(max_tokens=0)),
    ("max_tokens", lambda: chat_request(max_tokens=-5)),
    ("temperature", lambda: chat_request(temperature=-0.01)),
    ("temperature", lambda: chat_request(temperature=2.01)),
    ("temperature", lambda: chat_request(temperature=math.nan)),
    ("top_p", lambda: chat_request(top_p=-0.1)),
    ("top_p", lambda: chat_request(top_p=1.5)),
    ("extra.stream", lambda: _extra(stream=False)),
    ("extra.temperature", lambda: _extra(temperature=9)),
]


@pytest.mark.parametrize(("field", "make"), INVALID)
@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_invalid_request_is_refused_before_the_upstream(stub, upstream, field, make, rpc):
    with pytest.raises(grpc.RpcError) as caught:
        if rpc == "unary":
            stub.CreateChatCompletion(make(), metadata=CALLER_METADATA)
        else:
            list(stub.StreamChatCompletion(make(), metadata=CALLER_METADATA))
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = details_of(error)["BadRequest"].field_violations
    assert field in [v.field for v in violations]
    assert field in error.details()
    assert upstream.requests() == []


def test_all_violations_are_reported_together(stub, upstream):
    request = chat_pb2.ChatCompletionRequest(model="", max_tokens=0, temperature=3, top_p=2)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    fields = {v.field for v in details_of(caught.value)["BadRequest"].field_violations}
    assert fields == {"model", "messages", "max_tokens", "temperature", "top_p"}
    assert upstream.requests() == []


@pytest.mark.parametrize(
    "fields",
    [{"max_tokens": 1}, {"temperature": 0.0}, {"temperature": 2.0}, {"top_p": 0.0}, {"top_p": 1.0}],
)
def test_boundary_values_are_accepted(stub, fields):
    stub.CreateChatCompletion(chat_request(**fields), metadata=CALLER_METADATA)


def test_unusable_request_id_is_refused(stub, upstream):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            chat_request(), metadata=(*CALLER_METADATA, ("x-request-id", "x" * 300))
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert upstream.requests() == []
