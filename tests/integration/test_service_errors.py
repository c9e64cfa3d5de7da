"""Upstream HTTP failures become the right gRPC status, with the upstream's words and details."""

from __future__ import annotations

import grpc
import pytest

from bridge.config import BridgeConfig, Secret
from myrouter.chat.v1 import chat_pb2
from support import (
    CALLER_METADATA,
    chat_request,
    details_of,
    free_port,
    metadata_dict,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(30)

STATUS_TABLE = [
    (400, grpc.StatusCode.INVALID_ARGUMENT),
    (401, grpc.StatusCode.UNAUTHENTICATED),
    (402, grpc.StatusCode.FAILED_PRECONDITION),
    (403, grpc.StatusCode.PERMISSION_DENIED),
    (404, grpc.StatusCode.NOT_FOUND),
    (408, grpc.StatusCode.DEADLINE_EXCEEDED),
    (409, grpc.StatusCode.ABORTED),
    (413, grpc.StatusCode.INVALID_ARGUMENT),
    (422, grpc.StatusCode.INVALID_ARGUMENT),
    (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (499, grpc.StatusCode.CANCELLED),
    (500, grpc.StatusCode.INTERNAL),
    (501, grpc.StatusCode.UNIMPLEMENTED),
    (502, grpc.StatusCode.UNAVAILABLE),
    (503, grpc.StatusCode.UNAVAILABLE),
    (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    (529, grpc.StatusCode.UNAVAILABLE),
]


@pytest.mark.parametrize(("http_status", "expected"), STATUS_TABLE)
@pytest.mark.parametrize("rpc", ["unary", "stream"])
def test_upstream_http_status_maps_to_grpc_code(stub, http_status, expected, rpc):
    request = with_scenario(
        chat_request(), kind="status", status=http_status, message=f"upstream says {http_status}"
    )
    with pytest.raises(grpc.RpcError) as caught:
        if rpc == "unary":
            stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
        else:
            list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA))
    error = caught.value
    assert error.code() is expected
    assert error.details() == f"upstream says {http_status}"
    info = details_of(error)["ErrorInfo"]
    assert info.reason == "UPSTREAM_HTTP_ERROR"
    assert info.domain == "bridge.myrouter.example"
    assert info.metadata["http_status"] == str(http_status)
    assert info.metadata["code"] == str(http_status)
    assert "RetryInfo" not in details_of(error)


def test_retry_after_becomes_retry_info(stub):
    request = with_scenario(chat_request(), kind="status", status=429, retry_after=7)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    retry = details_of(caught.value)["RetryInfo"]
    assert retry.retry_delay.seconds == 7


def test_non_json_error_body_still_gives_a_clear_status(stub):
    request = with_scenario(
        chat_request(), kind="status", status=502, body="<html><b>Bad gateway</b></html>"
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "Bad gateway" in caught.value.details()


def test_string_error_code_and_metadata_are_in_error_info(stub):
    request = with_scenario(
        chat_request(),
        kind="status",
        status=400,
        error_code="context_length_exceeded",
        message="too long",
        metadata={"provider_name": "Acme"},
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    info = details_of(caught.value)["ErrorInfo"]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.metadata["code"] == "context_length_exceeded"
    assert info.metadata["provider_name"] == "Acme"
    assert "Acme" in info.metadata["upstream_metadata"]


def test_unary_answer_that_is_not_json_is_unavailable(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            with_scenario(chat_request(), kind="non_json"), metadata=CALLER_METADATA
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_MALFORMED_BODY"


def test_early_error_returns_request_id_in_trailers_only(stub):
    request = with_scenario(chat_request(), kind="status", status=503)
    call = stub.StreamChatCompletion(
        request, metadata=(*CALLER_METADATA, ("x-request-id", "early-1"))
    )
    with pytest.raises(grpc.RpcError):
        list(call)
    assert metadata_dict(call.trailing_metadata())["x-request-id"] == "early-1"
    assert "x-request-id" not in metadata_dict(call.initial_metadata())
    assert details_of(call)["ErrorInfo"].metadata["request_id"] == "early-1"


def test_connection_refused_is_unavailable(make_bridge):
    bridge = make_bridge(upstream_url=f"http://127.0.0.1:{free_port()}/api/v1")
    channel, stub = stub_for(bridge.target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details_of(caught.value)["ErrorInfo"].reason == "UPSTREAM_UNAVAILABLE"


def test_config_object_is_what_the_bridge_uses(make_bridge):
    bridge = make_bridge(api_key=Secret("x" * 12))
    assert isinstance(bridge.config, BridgeConfig)
    assert "x" * 12 not in repr(bridge.config)


@pytest.mark.parametrize("rpc", ["unary", "stream", "models"])
def test_a_404_that_is_no_api_error_names_the_url_and_is_logged(make_bridge, upstream, rpc, caplog):
    """A wrong base path (here /v1 for /api/v1) must not read as an unknown model."""
    wrong = upstream.base_url.replace("/api/v1", "/v1")
    channel, stub = stub_for(make_bridge(upstream_url=wrong).target)
    path = "models" if rpc == "models" else "chat/completions"
    method = "GET" if rpc == "models" else "POST"
    with channel, pytest.raises(grpc.RpcError) as caught, caplog.at_level("WARNING"):
        if rpc == "unary":
            stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA)
        elif rpc == "stream":
            list(stub.StreamChatCompletion(chat_request(), metadata=CALLER_METADATA))
        else:
            stub.ListModels(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA)
    error = caught.value
    assert error.code() is grpc.StatusCode.NOT_FOUND
    expected = (
        f"the upstream answered HTTP 404, not an API error, to {method} {wrong}/{path}: "
        "a wrong base path? check --upstream-url (MYROUTER_BASE_URL)"
    )
    assert error.details() == expected
    warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and r.name == "bridge.failures"
    ]
    assert [r.getMessage() for r in warnings] == [expected]


def test_a_404_with_the_apis_error_object_keeps_its_words(stub):
    """An unknown model is the API's own 404 with an error object: its message, unchanged."""
    request = with_scenario(chat_request(), kind="status", status=404, message="no such model")
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    assert caught.value.details() == "no such model"
