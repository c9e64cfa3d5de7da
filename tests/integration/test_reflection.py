"""Server reflection over real sockets: what grpcurl and other reflection clients use."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from bridge.health import HEALTH_SERVICE_NAME
from bridge.server import CHAT_SERVICE_NAME

pytestmark = pytest.mark.timeout(30)


def test_lists_chat_health_and_reflection(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {CHAT_SERVICE_NAME, HEALTH_SERVICE_NAME, "grpc.reflection.v1alpha.ServerReflection"} <= (
        services
    )


def test_resolves_chat_service_descriptors(channel):
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName(CHAT_SERVICE_NAME)
    methods = {method.name: method for method in service.methods}
    assert set(methods) >= {"CreateChatCompletion", "StreamChatCompletion", "ListModels"}
    stream = methods["StreamChatCompletion"]
    assert stream.server_streaming
    assert stream.input_type.full_name == "myrouter.chat.v1.ChatCompletionRequest"
    assert "messages" in stream.input_type.fields_by_name
    # the transitively imported file resolves too
    assert pool.FindMessageTypeByName("google.protobuf.Struct").name == "Struct"


def test_reflection_can_be_switched_off(make_bridge):
    bridge = make_bridge(reflection=False)
    with grpc.insecure_channel(bridge.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(responses)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
