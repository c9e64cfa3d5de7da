"""bridge.upstream against the real embedded upstream: what the HTTP requests carry.

The bridge is one HTTP client shared by every caller, so nothing one answer
says may leak into another caller's request (cookies), and what sits in front
of a real API (a CDN that sets cookies, an nginx that compresses) must not
change what callers receive.
"""

from __future__ import annotations

import pytest

from myrouter.chat.v1 import chat_pb2, chat_pb2_grpc
from myrouter_upstream import Scenario
from support import CALLER_METADATA, chat_request, stub_for, with_scenario

pytestmark = pytest.mark.timeout(30)

COOKIE = "tenant_a_session=secret-of-tenant-a; Path=/"


def _stream_text(
    stub: chat_pb2_grpc.ChatServiceStub, request: chat_pb2.ChatCompletionRequest
) -> str:
    chunks = list(stub.StreamChatCompletion(request, metadata=CALLER_METADATA))
    return "".join(chunk.choices[0].delta.content for chunk in chunks if chunk.choices)


@pytest.fixture
def fresh_stub(make_bridge, upstream):
    """A bridge of its own: its HTTP client has seen no answer of any other test.

    It names the upstream by host name, as deployments do: some cookie jars
    refuse cookies from IP addresses, which would hide a leak on 127.0.0.1.
    """
    by_name = upstream.base_url.replace("127.0.0.1", "localhost")
    channel, stub = stub_for(make_bridge(upstream_url=by_name).target)
    with channel:
        yield stub


@pytest.mark.parametrize("first_call", ["unary", "stream", "models"])
def test_a_cookie_set_in_one_answer_is_never_sent_with_another_request(
    fresh_stub, upstream, first_call
):
    request = with_scenario(chat_request("for tenant a"), set_cookie=COOKIE)
    if first_call == "unary":
        fresh_stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    elif first_call == "stream":
        _stream_text(fresh_stub, request)
    else:
        upstream.set_scenario(Scenario(set_cookie=COOKIE))
        try:
            fresh_stub.ListModels(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA)
        finally:
            upstream.reset_scenario()
    fresh_stub.CreateChatCompletion(chat_request("for tenant b"), metadata=CALLER_METADATA)
    _stream_text(fresh_stub, chat_request("for tenant b"))
    fresh_stub.ListModels(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA)

    _first, *later = upstream.requests()
    assert len(later) == 3
    for record in later:
        assert "cookie" not in record.headers, record.headers


def test_a_compressed_answer_is_relayed_intact(stub, upstream):
    plain = stub.CreateChatCompletion(chat_request("one two three"), metadata=CALLER_METADATA)
    compressed = stub.CreateChatCompletion(
        with_scenario(chat_request("one two three"), compress=True), metadata=CALLER_METADATA
    )
    assert compressed.choices[0].message.content == plain.choices[0].message.content
    assert compressed.usage == plain.usage
    recorded = upstream.requests()[-1]
    assert "gzip" in recorded.headers["accept-encoding"]  # so the upstream did compress


def test_a_stream_asks_for_uncompressed_events(stub, upstream):
    """Compression would hold events back in the compressor; the bridge reads raw bytes."""
    text = _stream_text(stub, with_scenario(chat_request("one two three"), compress=True))
    assert text == "You said: one two three"
    recorded = upstream.requests()[-1]
    assert recorded.headers["accept-encoding"] == "identity"


def test_the_user_agent_names_the_bridge(stub, upstream):
    stub.CreateChatCompletion(chat_request("hi"), metadata=CALLER_METADATA)
    assert upstream.requests()[-1].headers["user-agent"].startswith("myrouter-bridge/")
