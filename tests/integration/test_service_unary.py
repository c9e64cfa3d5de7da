"""CreateChatCompletion and ListModels end to end: gRPC stub -> bridge -> embedded upstream."""

from __future__ import annotations

import grpc
import orjson
import pytest

from bridge import mapping
from myrouter.chat.v1 import chat_pb2
from support import CALLER_METADATA, chat_request, metadata_dict, with_scenario

pytestmark = pytest.mark.timeout(30)


def test_unary_completion_relays_the_whole_answer(stub, upstream):
    completion, call = stub.CreateChatCompletion.with_call(
        chat_request("hello there"), metadata=CALLER_METADATA
    )

    assert completion.object == "chat.completion"
    assert completion.model == "myrouter/echo"
    assert completion.provider == "embedded"
    assert completion.created == 1700000000
    assert completion.id.startswith("gen-")
    [choice] = completion.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: hello there"
    assert choice.finish_reason == "stop"
    assert completion.usage.input_tokens == 2
    assert completion.usage.output_tokens == 4
    assert completion.usage.total_tokens == 6
    assert completion.usage.extra["cost"] == 0  # unmodelled member kept
    [recorded] = upstream.requests()
    assert recorded.method == "POST"
    assert recorded.path.endswith("/chat/completions")
    assert recorded.body["stream"] is False
    assert recorded.body["model"] == "myrouter/echo"
    assert recorded.body["messages"] == [{"role": "user", "content": "hello there"}]
    assert "x-request-id" in metadata_dict(call.initial_metadata())


def test_unary_sends_every_modelled_parameter(stub, upstream):
    request = chat_request(
        "weather?",
        max_tokens=50,
        temperature=0.0,
        top_p=1.0,
        user="end-user-7",
        tools=[
            chat_pb2.Tool(
                type="function",
                function=chat_pb2.FunctionDefinition(name="get_weather", description="Weather"),
            )
        ],
        tool_choice=chat_pb2.ToolChoice(mode="auto"),
        response_format=chat_pb2.ResponseFormat(type="json_object"),
    )
    request.tools[0].function.parameters.update({"type": "object", "properties": {}})
    request.extra.update({"seed": 7, "provider": {"order": ["a", "b"]}})

    stub.CreateChatCompletion(request, metadata=CALLER_METADATA)

    body = upstream.requests()[0].body
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.0  # presence: 0 is sent, not dropped
    assert body["top_p"] == 1.0
    assert body["user"] == "end-user-7"
    assert body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    assert body["seed"] == 7 and isinstance(body["seed"], int)
    assert body["provider"] == {"order": ["a", "b"]}


def test_unset_optional_parameters_are_not_sent(stub, upstream):
    stub.CreateChatCompletion(chat_request("hi"), metadata=CALLER_METADATA)
    body = upstream.requests()[0].body
    for absent in ("max_tokens", "temperature", "top_p", "tools", "tool_choice", "user"):
        assert absent not in body


def test_unary_tool_call_answer(stub):
    request = chat_request(
        "weather in Paris",
        tools=[chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="lookup"))],
    )
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA)

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.HasField("content")
    [tool_call] = choice.message.tool_calls
    assert tool_call.id == "call_0"
    assert tool_call.type == "function"
    assert tool_call.function.name == "lookup"
    assert orjson.loads(tool_call.function.arguments) == {"query": "weather in Paris"}


def test_named_tool_choice_and_multimodal_content_reach_the_upstream(stub, upstream):
    message = chat_pb2.ChatMessage(
        role="user",
        content_parts=[
            chat_pb2.ContentPart(type="text", text="what is this?"),
            chat_pb2.ContentPart(
                type="image_url", image_url=chat_pb2.ImageUrl(url="data:image/png;base64,AAAA")
            ),
        ],
    )
    request = chat_pb2.ChatCompletionRequest(
        model="myrouter/echo",
        messages=[message],
        tools=[
            chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="a")),
            chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="b")),
        ],
        tool_choice=chat_pb2.ToolChoice(
            tool=chat_pb2.NamedToolChoice(type="function", function=chat_pb2.FunctionName(name="b"))
        ),
    )
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA)

    body = upstream.requests()[0].body
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "b"}}
    assert completion.choices[0].message.tool_calls[0].function.name == "b"


def test_max_tokens_gives_length_finish(stub):
    completion = stub.CreateChatCompletion(
        chat_request("one two three four five", max_tokens=2), metadata=CALLER_METADATA
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "You said: "


def test_openai_usage_dialect_fills_input_and_output_tokens(stub):
    request = with_scenario(chat_request("a b c"), dialect="openai")
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    assert completion.usage.input_tokens == 3
    assert completion.usage.output_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.input_tokens + completion.usage.output_tokens
    )
    assert "prompt_tokens_details" in completion.usage.extra


def test_reasoning_is_relayed_in_unary_answers(stub):
    request = with_scenario(chat_request("think"), reasoning=True)
    completion = stub.CreateChatCompletion(request, metadata=CALLER_METADATA)
    message = completion.choices[0].message
    assert message.reasoning
    assert message.reasoning_details[0].type == "reasoning.text"


def test_unary_answer_is_lossless(stub, upstream):
    """Every JSON member of the upstream's answer is in the message (modelled or in extra)."""
    completion = stub.CreateChatCompletion(chat_request("hi"), metadata=CALLER_METADATA)
    encoded = mapping.encode(completion)
    assert encoded["choices"][0]["message"] == {"role": "assistant", "content": "You said: hi"}
    assert set(encoded) >= {"id", "object", "created", "model", "choices", "usage", "provider"}


def test_list_models(stub, upstream):
    models, call = stub.ListModels.with_call(chat_pb2.ListModelsRequest(), metadata=CALLER_METADATA)
    ids = [model.id for model in models.data]
    assert "myrouter/echo" in ids and "myrouter/echo-large" in ids
    echo = models.data[ids.index("myrouter/echo")]
    assert echo.context_length > 0
    assert echo.owned_by
    assert "pricing" in echo.extra  # unmodelled members are kept
    assert models.object == "list"
    [recorded] = upstream.requests()
    assert recorded.method == "GET" and recorded.path.endswith("/models")
    assert (
        metadata_dict(call.initial_metadata())["x-request-id"] == recorded.headers["x-request-id"]
    )


def test_unknown_model_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(chat_request(model="nope/none"), metadata=CALLER_METADATA)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "nope/none" in caught.value.details()
