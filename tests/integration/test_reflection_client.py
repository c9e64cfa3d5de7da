"""A generic client driven by server reflection alone, the way grpcurl works: discover
ChatService, fetch its descriptors (and those of google/protobuf/struct.proto, which the
contract imports), build the messages at run time and call the bridge with JSON in and
out. Nothing here uses the generated stubs, so a caller in any language with a
reflection-aware tool can do the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from myrouter.chat.v1 import chat_pb2
from support import CALLER_TOKEN

pytestmark = pytest.mark.timeout(30)

SERVICE = "myrouter.chat.v1.ChatService"
METADATA = (("authorization", f"Bearer {CALLER_TOKEN}"),)


class ReflectionClient:
    """Calls any method of any service the server reflects, taking and giving JSON."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._database = ProtoReflectionDescriptorDatabase(channel)
        self.pool = DescriptorPool(self._database)  # fed only by the server's answers

    def services(self) -> list[str]:
        return list(self._database.get_services())

    def method(self, service: str, name: str) -> MethodDescriptor:
        return self.pool.FindServiceByName(service).methods_by_name[name]

    def call(self, service: str, name: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        method = self.method(service, name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        kind = self._channel.unary_stream if method.server_streaming else self._channel.unary_unary
        callable_ = kind(
            f"/{service}/{name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        message = json_format.ParseDict(request, request_class())
        answer = callable_(message, metadata=METADATA, timeout=10)
        for response in answer if method.server_streaming else [answer]:
            yield json_format.MessageToDict(response, preserving_proto_field_name=True)


@pytest.fixture
def client(channel) -> ReflectionClient:
    return ReflectionClient(channel)


def test_discovers_chat_service_and_its_methods(client):
    assert SERVICE in client.services()
    methods = client.pool.FindServiceByName(SERVICE).methods_by_name
    assert {
        "CreateChatCompletion",
        "StreamChatCompletion",
        "StreamChatCompletionBatches",
        "ListModels",
    } <= set(methods)
    assert methods["StreamChatCompletion"].server_streaming
    assert methods["StreamChatCompletionBatches"].server_streaming
    request_file = methods["CreateChatCompletion"].input_type.file
    # The well-known types the contract imports (Duration for max_delay, since
    # StreamChatCompletionBatches) come with it, so a reflection client resolves them.
    assert [dep.name for dep in request_file.dependencies] == [
        "google/protobuf/duration.proto",
        "google/protobuf/struct.proto",
    ]
    # The reflected descriptors are complete: field for field what the contract declares.
    reflected = request_file.serialized_pb
    assert reflected == chat_pb2.DESCRIPTOR.serialized_pb


def test_calls_unary_with_json_including_a_struct(client, upstream):
    request = {
        "model": "myrouter/echo",
        "messages": [{"role": "user", "content": "reflected hello"}],
        "max_tokens": 20,
        "extra": {"seed": 7, "provider": {"order": ["a", "b"]}},
    }
    (answer,) = client.call(SERVICE, "CreateChatCompletion", request)
    assert answer["choices"][0]["message"]["content"] == "You said: reflected hello"
    assert answer["usage"]["total_tokens"] > 0
    sent = upstream.requests()[-1].body
    assert sent["seed"] == 7 and sent["provider"] == {"order": ["a", "b"]}


def test_calls_the_stream_and_sees_each_chunk(client):
    request = {"model": "myrouter/echo", "messages": [{"role": "user", "content": "a b c"}]}
    chunks = list(client.call(SERVICE, "StreamChatCompletion", request))
    text = "".join(
        choice.get("delta", {}).get("content", "")
        for chunk in chunks
        for choice in chunk.get("choices", [])
    )
    assert text == "You said: a b c"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)


def test_calls_the_batched_stream_with_a_json_duration(client):
    request = {
        "request": {"model": "myrouter/echo", "messages": [{"role": "user", "content": "a b c"}]},
        "max_delay": "0.05s",
    }
    messages = list(client.call(SERVICE, "StreamChatCompletionBatches", request))
    chunks = [chunk for message in messages for chunk in message["chunks"]]
    text = "".join(
        choice.get("delta", {}).get("content", "")
        for chunk in chunks
        for choice in chunk.get("choices", [])
    )
    assert text == "You said: a b c"
    assert len(chunks) == 8 and 1 <= len(messages) <= 8


def test_a_failed_call_reports_its_status(client):
    request = {"model": "nope/none", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(grpc.RpcError) as caught:
        list(client.call(SERVICE, "CreateChatCompletion", request))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
