"""Credentials: the caller's token passes through; the service key is the fallback."""

from __future__ import annotations

import grpc
import pytest

from bridge.config import Secret
from support import CALLER_METADATA, CALLER_TOKEN, SERVICE_KEY, chat_request, details_of, stub_for

pytestmark = pytest.mark.timeout(30)


def test_caller_authorization_is_forwarded(stub, upstream):
    stub.CreateChatCompletion(chat_request(), metadata=CALLER_METADATA)
    assert upstream.requests()[0].headers["authorization"] == f"Bearer {CALLER_TOKEN}"


def test_bare_token_gets_the_bearer_prefix(stub, upstream):
    stub.CreateChatCompletion(chat_request(), metadata=(("authorization", CALLER_TOKEN),))
    assert upstream.requests()[0].headers["authorization"] == f"Bearer {CALLER_TOKEN}"


def test_service_key_is_used_without_caller_authorization(stub, upstream):
    list(stub.StreamChatCompletion(chat_request()))
    assert upstream.requests()[0].headers["authorization"] == f"Bearer {SERVICE_KEY}"


def test_no_credentials_at_all_is_unauthenticated_and_never_calls_upstream(make_bridge, upstream):
    bridge = make_bridge(api_key=None)
    channel, stub = stub_for(bridge.target)
    with channel:
        for rpc in (stub.CreateChatCompletion, stub.StreamChatCompletion):
            with pytest.raises(grpc.RpcError) as caught:
                result = rpc(chat_request())
                list(result) if rpc is stub.StreamChatCompletion else None
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert details_of(caught.value)["ErrorInfo"].reason == "MISSING_CREDENTIALS"
    assert upstream.requests() == []


def test_refused_caller_token_is_unauthenticated(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            chat_request(), metadata=(("authorization", "Bearer wrong-token-1"),)
        )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "wrong-token-1" not in caught.value.details()


def test_refused_service_key_is_internal_and_never_shows_the_key(make_bridge):
    bad_key = "sk-refused-service-key-000"
    bridge = make_bridge(api_key=Secret(bad_key))
    channel, stub = stub_for(bridge.target)
    with channel:
        for rpc in ("unary", "stream"):
            with pytest.raises(grpc.RpcError) as caught:
                if rpc == "unary":
                    stub.CreateChatCompletion(chat_request())
                else:
                    list(stub.StreamChatCompletion(chat_request()))
            error = caught.value
            assert error.code() is grpc.StatusCode.INTERNAL
            assert "service key" in error.details()
            info = details_of(error)["ErrorInfo"]
            assert info.reason == "SERVICE_KEY_REJECTED"
            everything = error.details() + repr(details_of(error)) + repr(error.trailing_metadata())
            assert bad_key not in everything


def test_upstream_message_quoting_the_token_is_redacted(stub):
    from support import with_scenario

    request = with_scenario(
        chat_request(),
        kind="status",
        status=400,
        message=f"Incorrect API key provided: {CALLER_TOKEN}. Bearer {CALLER_TOKEN}",
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    assert CALLER_TOKEN not in caught.value.details()
    assert "[redacted]" in caught.value.details()
