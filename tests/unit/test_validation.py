"""Tests for bridge.validation: each rule of validate_chat_request on its own, on
top of a request that is valid otherwise; several violations reported
together; and a rich valid request accepted."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from bridge.errors import InvalidRequest
from bridge.mapping import struct_from_dict
from bridge.validation import (
    MAX_BATCH_DELAY,
    RESERVED_EXTRA_MEMBERS,
    validate_batches_request,
    validate_chat_request,
)
from myrouter.chat.v1 import chat_pb2 as pb

Mutation = Callable[[pb.ChatCompletionRequest], None]


def minimal_request() -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        model="openai/gpt-4o", messages=[pb.ChatMessage(role="user", content="Hello")]
    )


def rich_request() -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        model="anthropic/claude-3.5-sonnet",
        messages=[
            pb.ChatMessage(role="system", content="Be brief."),
            pb.ChatMessage(
                role="user",
                name="ada",
                content_parts=[
                    pb.ContentPart(type="text", text="What is this?"),
                    pb.ContentPart(
                        type="image_url",
                        image_url=pb.ImageUrl(url="https://x.example/a.png", detail="low"),
                    ),
                ],
            ),
            pb.ChatMessage(
                role="assistant",
                tool_calls=[
                    pb.ToolCall(
                        id="call_1",
                        type="function",
                        function=pb.FunctionCall(name="lookup", arguments='{"q": "a"}'),
                    )
                ],
            ),
            pb.ChatMessage(role="tool", tool_call_id="call_1", content="result"),
        ],
        max_tokens=1,
        temperature=2.0,
        top_p=0.0,
        tools=[
            pb.Tool(
                type="function",
                function=pb.FunctionDefinition(
                    name="lookup",
                    description="Look it up.",
                    parameters=struct_from_dict({"type": "object", "properties": {}}),
                    strict=True,
                ),
            ),
            pb.Tool(type="web_search"),  # a non-function tool needs no function name
        ],
        tool_choice=pb.ToolChoice(
            tool=pb.NamedToolChoice(type="function", function=pb.FunctionName(name="lookup"))
        ),
        response_format=pb.ResponseFormat(
            type="json_schema",
            json_schema=pb.JsonSchemaFormat(
                name="answer", schema=struct_from_dict({"type": "object"}), strict=True
            ),
        ),
        user="user-42",
        extra=struct_from_dict(
            {"seed": 7, "stop": ["END"], "provider": {"sort": "price"}, "reasoning": {}}
        ),
    )


def violations_of(request: pb.ChatCompletionRequest) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request(request)
    return caught.value.violations


def violated_fields(request: pb.ChatCompletionRequest) -> list[str]:
    return [field for field, _ in violations_of(request)]


def mutated(mutation: Mutation) -> pb.ChatCompletionRequest:
    request = minimal_request()
    mutation(request)
    return request


# --------------------------------------------------------------------------- #
# Valid requests
# --------------------------------------------------------------------------- #


def test_minimal_request_is_valid() -> None:
    validate_chat_request(minimal_request())


def test_rich_request_is_valid() -> None:
    validate_chat_request(rich_request())


# --------------------------------------------------------------------------- #
# Each rule alone
# --------------------------------------------------------------------------- #


def _set(field: str, value: object) -> Mutation:
    def mutate(request: pb.ChatCompletionRequest) -> None:
        setattr(request, field, value)

    return mutate


def _clear_messages(request: pb.ChatCompletionRequest) -> None:
    del request.messages[:]


def _message_role(role: str) -> Mutation:
    def mutate(request: pb.ChatCompletionRequest) -> None:
        request.messages.append(pb.ChatMessage(role=role, content="second"))

    return mutate


def _content_and_parts(request: pb.ChatCompletionRequest) -> None:
    request.messages.append(
        pb.ChatMessage(
            role="user", content="text", content_parts=[pb.ContentPart(type="text", text="t")]
        )
    )


def _empty_content_and_parts(request: pb.ChatCompletionRequest) -> None:
    request.messages[0].content = ""
    request.messages[0].content_parts.add(type="text", text="t")


def _tool(tool: pb.Tool) -> Mutation:
    def mutate(request: pb.ChatCompletionRequest) -> None:
        request.tools.append(pb.Tool(type="function", function=pb.FunctionDefinition(name="ok")))
        request.tools.append(tool)

    return mutate


def _named_tool_choice(name: str) -> Mutation:
    def mutate(request: pb.ChatCompletionRequest) -> None:
        request.tool_choice.tool.type = "function"
        request.tool_choice.tool.function.name = name

    return mutate


def _response_format(response_format: pb.ResponseFormat) -> Mutation:
    def mutate(request: pb.ChatCompletionRequest) -> None:
        request.response_format.CopyFrom(response_format)

    return mutate


def _extra(**members: Any) -> Mutation:
    def mutate(request: pb.ChatCompletionRequest) -> None:
        request.extra.update(members)

    return mutate


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        pytest.param(_set("model", ""), "model", id="model-empty"),
        pytest.param(_set("model", "   \t"), "model", id="model-blank"),
        pytest.param(_clear_messages, "messages", id="no-messages"),
        pytest.param(_message_role(""), "messages[1].role", id="role-missing"),
        pytest.param(_message_role("  "), "messages[1].role", id="role-blank"),
        pytest.param(_content_and_parts, "messages[1].content_parts", id="content-and-parts"),
        pytest.param(
            _empty_content_and_parts, "messages[0].content_parts", id="empty-content-and-parts"
        ),
        pytest.param(_set("max_tokens", 0), "max_tokens", id="max_tokens-0"),
        pytest.param(_set("max_tokens", -1), "max_tokens", id="max_tokens-negative"),
        pytest.param(_set("temperature", -0.1), "temperature", id="temperature-below-0"),
        pytest.param(_set("temperature", 2.1), "temperature", id="temperature-above-2"),
        pytest.param(_set("temperature", math.nan), "temperature", id="temperature-nan"),
        pytest.param(_set("temperature", math.inf), "temperature", id="temperature-inf"),
        pytest.param(_set("temperature", -math.inf), "temperature", id="temperature-minus-inf"),
        pytest.param(_set("top_p", -0.1), "top_p", id="top_p-below-0"),
        pytest.param(_set("top_p", 1.1), "top_p", id="top_p-above-1"),
        pytest.param(_set("top_p", math.nan), "top_p", id="top_p-nan"),
        pytest.param(
            _tool(pb.Tool(function=pb.FunctionDefinition(name="f"))),
            "tools[1].type",
            id="tool-without-type",
        ),
        pytest.param(
            _tool(pb.Tool(type="function", function=pb.FunctionDefinition(description="d"))),
            "tools[1].function.name",
            id="function-tool-without-name",
        ),
        pytest.param(_named_tool_choice(""), "tool_choice.tool.function.name", id="named-choice"),
        pytest.param(
            _response_format(pb.ResponseFormat(json_schema=pb.JsonSchemaFormat(name="s"))),
            "response_format.type",
            id="response_format-without-type",
        ),
        pytest.param(
            _response_format(pb.ResponseFormat(type="json_schema")),
            "response_format.json_schema",
            id="json_schema-without-schema",
        ),
        pytest.param(_extra(model="other/model"), "extra.model", id="extra-model"),
        pytest.param(_extra(temperature=0.5), "extra.temperature", id="extra-temperature"),
        pytest.param(_extra(stream=False), "extra.stream", id="extra-stream"),
        pytest.param(_extra(messages=[]), "extra.messages", id="extra-messages"),
        pytest.param(_extra(tool_choice="auto"), "extra.tool_choice", id="extra-tool_choice"),
    ],
)
def test_each_rule_alone_is_reported_with_its_field_path(mutation: Mutation, field: str) -> None:
    violations = violations_of(mutated(mutation))

    assert [f for f, _ in violations] == [field]
    assert all(why for _, why in violations)


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(_set("max_tokens", 1), id="max_tokens-1"),
        pytest.param(_set("max_tokens", 2**31 - 1), id="max_tokens-int32-max"),
        pytest.param(_set("temperature", 0.0), id="temperature-0"),
        pytest.param(_set("temperature", 2.0), id="temperature-2"),
        pytest.param(_set("top_p", 0.0), id="top_p-0"),
        pytest.param(_set("top_p", 1.0), id="top_p-1"),
        pytest.param(_extra(seed=42), id="extra-seed"),
        pytest.param(_extra(stop=["\n"], provider={"order": ["A"]}), id="extra-stop-provider"),
        pytest.param(_named_tool_choice("lookup"), id="named-choice-with-name"),
        pytest.param(
            lambda r: r.tool_choice.CopyFrom(pb.ToolChoice(mode="auto")), id="mode-choice"
        ),
        pytest.param(_tool(pb.Tool(type="web_search")), id="non-function-tool-without-name"),
        pytest.param(_response_format(pb.ResponseFormat(type="json_object")), id="json_object"),
        pytest.param(_response_format(pb.ResponseFormat(type="text")), id="text-format"),
        pytest.param(
            lambda r: r.messages.append(pb.ChatMessage(role="assistant")),
            id="message-without-content",
        ),
        pytest.param(
            lambda r: r.messages.append(pb.ChatMessage(role="assistant", content="")),
            id="message-with-empty-content",
        ),
    ],
)
def test_boundary_and_allowed_values_pass(mutation: Mutation) -> None:
    validate_chat_request(mutated(mutation))


def test_unset_sampling_fields_pass() -> None:
    request = minimal_request()

    assert not request.HasField("temperature")
    assert not request.HasField("top_p")
    assert not request.HasField("max_tokens")
    validate_chat_request(request)


def test_violation_message_names_the_bad_value() -> None:
    [(field, why)] = violations_of(mutated(_set("temperature", 2.5)))

    assert field == "temperature"
    assert "2.5" in why


def test_reserved_extra_members_cover_every_modelled_field_and_stream() -> None:
    modelled = {
        field.name for field in pb.ChatCompletionRequest.DESCRIPTOR.fields if field.name != "extra"
    }

    assert modelled | {"stream"} == RESERVED_EXTRA_MEMBERS
    assert "extra" not in RESERVED_EXTRA_MEMBERS


# --------------------------------------------------------------------------- #
# Several violations together
# --------------------------------------------------------------------------- #


def test_several_violations_are_reported_together_in_rule_order() -> None:
    request = pb.ChatCompletionRequest(
        model=" ",
        messages=[
            pb.ChatMessage(role="user", content="fine"),
            pb.ChatMessage(content="no role"),
            pb.ChatMessage(
                role="user", content="x", content_parts=[pb.ContentPart(type="text", text="y")]
            ),
        ],
        max_tokens=0,
        temperature=3.0,
        top_p=-1.0,
        tools=[pb.Tool(), pb.Tool(type="function")],
        tool_choice=pb.ToolChoice(tool=pb.NamedToolChoice(type="function")),
        response_format=pb.ResponseFormat(type="json_schema"),
        extra=struct_from_dict({"stream": True, "model": "x", "seed": 1}),
    )

    assert violated_fields(request) == [
        "model",
        "messages[1].role",
        "messages[2].content_parts",
        "max_tokens",
        "temperature",
        "top_p",
        "tools[0].type",
        "tools[1].function.name",
        "tool_choice.tool.function.name",
        "response_format.json_schema",
        "extra.model",
        "extra.stream",
    ]


def test_missing_model_and_messages_are_both_reported() -> None:
    assert violated_fields(pb.ChatCompletionRequest()) == ["model", "messages"]


def test_invalid_request_summarises_every_violation_and_maps_to_invalid_argument() -> None:
    request = pb.ChatCompletionRequest(model="m", max_tokens=-5, top_p=9.0)

    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request(request)

    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    for field in ("messages", "max_tokens", "top_p"):
        assert field in error.message
    assert "-5" in error.message


def test_extra_below_the_top_may_not_name_a_modelled_field() -> None:
    # issue #12: the contract's rule for `extra` holds at every level, not only the request's
    request = pb.ChatCompletionRequest(
        model="m",
        messages=[
            pb.ChatMessage(role="user", content="hi"),
            pb.ChatMessage(
                role="user",
                content_parts=[pb.ContentPart(type="text", text="a")],
            ),
        ],
        tools=[pb.Tool(type="function", function=pb.FunctionDefinition(name="f"))],
    )
    request.messages[0].extra.update({"content": "smuggled", "custom": 1})
    request.messages[1].content_parts[0].extra.update({"text": "x"})
    request.tools[0].function.extra.update({"name": "g"})
    request.tools[0].function.parameters.update({"name": "a JSON schema member, not a field"})
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request(request)
    assert [field for field, _ in caught.value.violations] == [
        "messages[0].extra.content",
        "messages[1].content_parts[0].extra.text",
        "tools[0].function.extra.name",
    ]


def _batches(max_delay: Any = None, **request: Any) -> pb.StreamChatCompletionBatchesRequest:
    chat = pb.ChatCompletionRequest(
        model="m", messages=[pb.ChatMessage(role="user", content="hi")], **request
    )
    batches = pb.StreamChatCompletionBatchesRequest(request=chat)
    if max_delay is not None:
        batches.max_delay.CopyFrom(max_delay)
    return batches


def test_a_batches_request_waits_as_asked_up_to_the_cap() -> None:
    assert validate_batches_request(_batches()) == 0.0
    assert validate_batches_request(_batches(duration_pb2.Duration(nanos=100_000_000))) == 0.1
    assert validate_batches_request(_batches(duration_pb2.Duration(seconds=5))) == MAX_BATCH_DELAY
    assert MAX_BATCH_DELAY == 1.0  # what the contract promises


def test_a_batches_request_names_every_violation_under_its_field() -> None:
    batches = _batches(duration_pb2.Duration(seconds=-1), max_tokens=0)
    batches.request.model = ""
    with pytest.raises(InvalidRequest) as caught:
        validate_batches_request(batches)
    fields = [field for field, _ in caught.value.violations]
    assert fields == ["request.model", "request.max_tokens", "max_delay"]
    with pytest.raises(InvalidRequest):
        validate_batches_request(_batches(duration_pb2.Duration(nanos=-5)))
