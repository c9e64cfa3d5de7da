"""Tests for bridge.mapping: JSON <-> protobuf for every message of the contract.

Realistic OpenAI/OpenRouter answers are decoded field by field and encoded
back; the faithfulness rules of the module (unknown and mistyped members kept
in ``extra``, null == absent, the members with two JSON shapes, the OpenAI
usage dialect, integral numbers, zero indexes) each get their own test; and
property tests check ``encode(decode(obj)) == obj`` for generated chunks and
completions written in the MyRouter dialect.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mapping import (
    decode,
    decode_each,
    encode,
    member_names,
    struct_from_dict,
    struct_to_dict,
)
from myrouter.chat.v1 import chat_pb2 as pb

JSON = dict[str, Any]


def roundtrip(cls: type[Message], obj: Mapping[str, Any]) -> JSON:
    return encode(decode(cls, obj))


def extra_of(message: Message) -> JSON:
    return struct_to_dict(message.extra)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- #
# Realistic upstream objects
# --------------------------------------------------------------------------- #

COMPLETION_WITH_TOOL_CALLS: JSON = {
    "id": "gen-1732512000-AbCdEfGh",
    "provider": "OpenAI",
    "model": "openai/gpt-4o-2024-11-20",
    "object": "chat.completion",
    "created": 1732512000,
    "choices": [
        {
            "logprobs": None,
            "finish_reason": "tool_calls",
            "native_finish_reason": "tool_calls",
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "",
                "refusal": None,
                "reasoning": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_9pDx3",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris", "unit": "celsius"}',
                        },
                    },
                    {
                        "index": 1,
                        "id": "call_7QaZ1",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
                    },
                ],
            },
        }
    ],
    "system_fingerprint": "fp_831e067d82",
    "usage": {
        "prompt_tokens": 82,
        "completion_tokens": 41,
        "total_tokens": 123,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0},
    },
}

# The members every chunk of one streamed answer repeats.
TOOL_CALL_STREAM_HEAD: JSON = {
    "id": "gen-1732512001-XyZ",
    "provider": "Anthropic",
    "model": "anthropic/claude-3.5-sonnet",
    "object": "chat.completion.chunk",
    "created": 1732512001,
}

TOOL_CALL_CHUNKS: list[JSON] = [
    {
        **TOOL_CALL_STREAM_HEAD,
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "toolu_01A",
                            "type": "function",
                            "function": {"name": "search", "arguments": ""},
                        }
                    ],
                },
                "finish_reason": None,
                "native_finish_reason": None,
                "logprobs": None,
            }
        ],
    },
    {
        **TOOL_CALL_STREAM_HEAD,
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"q": "gr'}}]},
                "finish_reason": None,
            }
        ],
    },
    {
        **TOOL_CALL_STREAM_HEAD,
        "choices": [
            {
                "index": 0,
                "delta": {"content": "", "role": "assistant"},
                "finish_reason": "tool_calls",
                "native_finish_reason": "tool_use",
            }
        ],
    },
]

# The members of USAGE_CHUNK's usage that Usage does not model: kept in `extra`, as sent.
USAGE_EXTRA: JSON = {
    "cost": 0.00855,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 1024},
    "completion_tokens_details": {"reasoning_tokens": 128},
}

USAGE_CHUNK: JSON = {
    **TOOL_CALL_STREAM_HEAD,
    "choices": [],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500, **USAGE_EXTRA},
}

REASONING_CHUNK: JSON = {
    "id": "gen-1732512002-R",
    "object": "chat.completion.chunk",
    "created": 1732512002,
    "model": "anthropic/claude-3.7-sonnet:thinking",
    "choices": [
        {
            "index": 0,
            "delta": {
                "role": "assistant",
                "content": "",
                "reasoning": "Let me think about the units first.",
                "reasoning_details": [
                    {
                        "type": "reasoning.text",
                        "text": "Let me think about the units first.",
                        "signature": None,
                        "format": "anthropic-claude-v1",
                        "index": 0,
                    }
                ],
            },
            "finish_reason": None,
        }
    ],
}

ENCRYPTED_REASONING_CHUNK: JSON = {
    "id": "gen-1732512002-R",
    "object": "chat.completion.chunk",
    "created": 1732512002,
    "model": "openai/o3-mini",
    "choices": [
        {
            "index": 0,
            "delta": {
                "reasoning_details": [
                    {
                        "type": "reasoning.summary",
                        "summary": "Compared both options.",
                        "id": "rs_1",
                        "format": "openai-responses-v1",
                        "index": 1,
                    },
                    {
                        "type": "reasoning.encrypted",
                        "data": "gAAAAABn0opaque==",
                        "id": "rs_2",
                        "format": "openai-responses-v1",
                        "index": 2,
                    },
                ]
            },
        }
    ],
}

MODELS_LIST: JSON = {
    "data": [
        {
            "id": "openai/gpt-4o",
            "canonical_slug": "openai/gpt-4o",
            "hugging_face_id": "",
            "name": "OpenAI: GPT-4o",
            "created": 1715558400,
            "description": "GPT-4o is OpenAI's flagship model.",
            "context_length": 128000,
            "architecture": {
                "modality": "text+image->text",
                "input_modalities": ["text", "image", "file"],
                "output_modalities": ["text"],
                "tokenizer": "GPT",
                "instruct_type": None,
            },
            "pricing": {
                "prompt": "0.0000025",
                "completion": "0.00001",
                "request": "0",
                "image": "0.003613",
                "input_cache_read": "0.00000125",
            },
            "top_provider": {
                "context_length": 128000,
                "max_completion_tokens": 16384,
                "is_moderated": True,
            },
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice"],
        },
        {
            "id": "meta-llama/llama-3.1-8b-instruct",
            "object": "model",
            "owned_by": "meta-llama",
            "name": "Meta: Llama 3.1 8B Instruct",
            "created": 1721692800,
            "context_length": 131072,
            "pricing": {"prompt": "0.00000002", "completion": "0.00000005"},
        },
    ]
}


# --------------------------------------------------------------------------- #
# Whole objects: chat completion
# --------------------------------------------------------------------------- #


def test_completion_with_tool_calls_decodes_every_modelled_field() -> None:
    completion = decode(pb.ChatCompletion, COMPLETION_WITH_TOOL_CALLS)

    assert completion.id == "gen-1732512000-AbCdEfGh"
    assert completion.provider == "OpenAI"
    assert completion.model == "openai/gpt-4o-2024-11-20"
    assert completion.object == "chat.completion"
    assert completion.created == 1732512000
    assert completion.system_fingerprint == "fp_831e067d82"
    assert not completion.HasField("extra")
    [choice] = completion.choices
    assert choice.index == 0
    assert choice.finish_reason == "tool_calls"
    assert choice.native_finish_reason == "tool_calls"
    assert not choice.HasField("logprobs")
    message = choice.message
    assert message.role == "assistant"
    assert message.HasField("content") and message.content == ""
    assert not message.HasField("refusal")
    assert not message.HasField("reasoning")
    assert [call.id for call in message.tool_calls] == ["call_9pDx3", "call_7QaZ1"]
    assert [call.type for call in message.tool_calls] == ["function", "function"]
    assert message.tool_calls[0].function.name == "get_weather"
    assert message.tool_calls[0].function.arguments == '{"city": "Paris", "unit": "celsius"}'
    # ToolCall has no index: OpenRouter's "index" is kept in the call's extra.
    assert extra_of(message.tool_calls[1]) == {"index": 1}


def test_completion_usage_in_openai_dialect_fills_the_modelled_counts() -> None:
    usage = decode(pb.ChatCompletion, COMPLETION_WITH_TOOL_CALLS).usage

    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (82, 41, 123)
    assert usage.cache_read_tokens == 64
    assert usage.reasoning_tokens == 12
    assert extra_of(usage) == {
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0},
    }


def test_completion_with_tool_calls_encodes_back_in_the_myrouter_dialect() -> None:
    encoded = roundtrip(pb.ChatCompletion, COMPLETION_WITH_TOOL_CALLS)

    expected = copy.deepcopy(COMPLETION_WITH_TOOL_CALLS)
    choice = expected["choices"][0]
    del choice["logprobs"]  # null == absent
    del choice["message"]["refusal"]
    del choice["message"]["reasoning"]
    expected["usage"] = {
        "input_tokens": 82,
        "output_tokens": 41,
        "total_tokens": 123,
        "cache_read_tokens": 64,
        "reasoning_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0},
    }
    assert encoded == expected


# --------------------------------------------------------------------------- #
# Whole objects: stream chunks
# --------------------------------------------------------------------------- #


def test_first_tool_call_chunk_carries_id_type_and_name() -> None:
    chunk = decode(pb.ChatCompletionChunk, TOOL_CALL_CHUNKS[0])

    assert chunk.object == "chat.completion.chunk"
    assert chunk.provider == "Anthropic"
    assert chunk.created == 1732512001
    [choice] = chunk.choices
    assert choice.delta.role == "assistant"
    assert not choice.delta.HasField("content")
    [call] = choice.delta.tool_calls
    assert (call.index, call.id, call.type) == (0, "toolu_01A", "function")
    assert call.function.name == "search"
    assert call.function.arguments == ""
    assert choice.finish_reason == ""
    assert not choice.HasField("extra")


def test_later_tool_call_chunk_carries_an_arguments_piece() -> None:
    chunk = decode(pb.ChatCompletionChunk, TOOL_CALL_CHUNKS[1])

    [call] = chunk.choices[0].delta.tool_calls
    assert call.index == 0
    assert call.id == ""
    assert call.function.arguments == '{"q": "gr'


def test_last_tool_call_chunk_carries_the_finish_reasons() -> None:
    choice = decode(pb.ChatCompletionChunk, TOOL_CALL_CHUNKS[2]).choices[0]

    assert choice.finish_reason == "tool_calls"
    assert choice.native_finish_reason == "tool_use"
    assert choice.delta.HasField("content") and choice.delta.content == ""


@pytest.mark.parametrize("index", [1, 2])
def test_tool_call_chunks_encode_back_without_their_nulls(index: int) -> None:
    source = TOOL_CALL_CHUNKS[index]

    assert roundtrip(pb.ChatCompletionChunk, source) == _without_nulls(source)


def test_first_tool_call_chunk_encodes_back_without_nulls_and_empty_arguments() -> None:
    # FunctionCall.arguments has no presence: "" is its default, left out on encode.
    expected = _without_nulls(TOOL_CALL_CHUNKS[0])
    del expected["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]

    assert roundtrip(pb.ChatCompletionChunk, TOOL_CALL_CHUNKS[0]) == expected


def test_usage_chunk_decodes_usage_and_keeps_cost_in_extra() -> None:
    chunk = decode(pb.ChatCompletionChunk, USAGE_CHUNK)

    assert list(chunk.choices) == []
    usage = chunk.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (1200, 300, 1500)
    assert usage.cache_read_tokens == 1024
    assert usage.reasoning_tokens == 128
    assert extra_of(usage) == USAGE_EXTRA


def test_usage_chunk_encodes_usage_in_the_myrouter_dialect() -> None:
    encoded = roundtrip(pb.ChatCompletionChunk, USAGE_CHUNK)

    assert encoded["usage"] == {
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "cache_read_tokens": 1024,
        "reasoning_tokens": 128,
        **USAGE_EXTRA,
    }
    assert encoded["id"] == "gen-1732512001-XyZ"


def test_reasoning_delta_decodes_text_and_details() -> None:
    delta = decode(pb.ChatCompletionChunk, REASONING_CHUNK).choices[0].delta

    assert delta.reasoning == "Let me think about the units first."
    [detail] = delta.reasoning_details
    assert detail.type == "reasoning.text"
    assert detail.text == "Let me think about the units first."
    assert detail.format == "anthropic-claude-v1"
    assert detail.HasField("index") and detail.index == 0
    assert not detail.HasField("signature")


def test_reasoning_detail_index_zero_survives_encode_because_it_has_presence() -> None:
    encoded = roundtrip(pb.ChatCompletionChunk, REASONING_CHUNK)

    assert encoded["choices"][0]["delta"]["reasoning_details"][0]["index"] == 0
    assert encoded == _without_nulls(REASONING_CHUNK)


def test_summary_and_encrypted_reasoning_details_round_trip() -> None:
    chunk = decode(pb.ChatCompletionChunk, ENCRYPTED_REASONING_CHUNK)

    summary, encrypted = chunk.choices[0].delta.reasoning_details
    assert (summary.type, summary.summary, summary.id) == (
        "reasoning.summary",
        "Compared both options.",
        "rs_1",
    )
    assert not summary.HasField("data")
    assert (encrypted.type, encrypted.data, encrypted.index) == (
        "reasoning.encrypted",
        "gAAAAABn0opaque==",
        2,
    )
    assert encode(chunk) == ENCRYPTED_REASONING_CHUNK


# --------------------------------------------------------------------------- #
# Whole objects: models
# --------------------------------------------------------------------------- #


def test_models_list_decodes_modelled_fields() -> None:
    models = decode(pb.ListModelsResponse, MODELS_LIST)

    gpt, llama = models.data
    assert (gpt.id, gpt.name, gpt.created, gpt.context_length) == (
        "openai/gpt-4o",
        "OpenAI: GPT-4o",
        1715558400,
        128000,
    )
    assert gpt.description == "GPT-4o is OpenAI's flagship model."
    assert (llama.object, llama.owned_by) == ("model", "meta-llama")


def test_models_list_keeps_pricing_and_architecture_in_extra() -> None:
    gpt = decode(pb.ListModelsResponse, MODELS_LIST).data[0]

    extra = extra_of(gpt)
    assert extra["pricing"] == MODELS_LIST["data"][0]["pricing"]
    assert extra["architecture"] == MODELS_LIST["data"][0]["architecture"]
    assert extra["top_provider"]["max_completion_tokens"] == 16384
    assert type(extra["top_provider"]["max_completion_tokens"]) is int
    assert extra["per_request_limits"] is None
    assert set(extra) == {
        "canonical_slug",
        "hugging_face_id",
        "architecture",
        "pricing",
        "top_provider",
        "per_request_limits",
        "supported_parameters",
    }


def test_models_list_round_trips() -> None:
    assert roundtrip(pb.ListModelsResponse, MODELS_LIST) == MODELS_LIST


# --------------------------------------------------------------------------- #
# Requests and the remaining message types
# --------------------------------------------------------------------------- #

RICH_REQUEST: JSON = {
    "model": "openai/gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "name": "ada",
            "content": [
                {"type": "text", "text": "What is in this picture and this file?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.png", "detail": "high"},
                },
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
                },
                {"type": "file", "file": {"file_id": "file-abc123"}},
            ],
        },
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"x": 1}'},
                }
            ],
            "reasoning_details": [
                {"type": "reasoning.encrypted", "data": "opaque", "id": "rs_9", "index": 0}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "max_tokens": 256,
    "temperature": 0.7,
    "top_p": 0.9,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a value up.",
                "parameters": {
                    "type": "object",
                    "properties": {"x": {"type": "integer", "minimum": 0}},
                    "required": ["x"],
                },
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "The answer.",
            "schema": {"type": "object", "properties": {"v": {"type": "number"}}},
            "strict": False,
        },
    },
    "user": "user-1234",
    "seed": 7,
    "stop": ["\n\n"],
    "provider": {"order": ["OpenAI", "Azure"], "allow_fallbacks": False},
    "reasoning": {"effort": "high"},
}


def test_rich_request_decodes_into_modelled_fields() -> None:
    request = decode(pb.ChatCompletionRequest, RICH_REQUEST)

    assert request.model == "openai/gpt-4o"
    assert request.max_tokens == 256
    assert request.temperature == 0.7
    assert request.top_p == 0.9
    assert request.user == "user-1234"
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool"]
    parts = request.messages[1].content_parts
    assert [p.type for p in parts] == ["text", "image_url", "input_audio", "file", "file"]
    assert parts[1].image_url.detail == "high"
    assert parts[2].input_audio.format == "wav"
    assert parts[3].file.filename == "a.pdf"
    assert parts[4].file.file_id == "file-abc123"
    assert request.messages[3].tool_call_id == "call_1"
    assert request.tools[0].function.strict is True
    assert struct_to_dict(request.tools[0].function.parameters)["required"] == ["x"]
    assert request.tool_choice.tool.function.name == "lookup"
    assert request.response_format.json_schema.HasField("strict")
    assert request.response_format.json_schema.strict is False
    assert extra_of(request) == {
        "seed": 7,
        "stop": ["\n\n"],
        "provider": {"order": ["OpenAI", "Azure"], "allow_fallbacks": False},
        "reasoning": {"effort": "high"},
    }


def test_rich_request_round_trips() -> None:
    assert roundtrip(pb.ChatCompletionRequest, RICH_REQUEST) == RICH_REQUEST


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (pb.ImageUrl, {"url": "data:image/png;base64,iVBO", "detail": "low", "x": 1}),
        (pb.InputAudio, {"data": "AAAA", "format": "mp3", "x": [1]}),
        (pb.File, {"filename": "f.txt", "file_data": "data:text/plain;base64,aGk=", "x": {}}),
        (pb.FunctionCall, {"name": "f", "arguments": "{not json", "x": True}),
        (pb.FunctionName, {"name": "f", "x": "y"}),
        (pb.FunctionDefinition, {"name": "f", "description": "d", "strict": False, "x": 0}),
        (pb.Tool, {"type": "function", "function": {"name": "f"}, "x": "y"}),
        (pb.NamedToolChoice, {"type": "function", "function": {"name": "f"}, "x": "y"}),
        (pb.ResponseFormat, {"type": "json_object", "x": "y"}),
        (pb.JsonSchemaFormat, {"name": "s", "schema": {"type": "object"}, "strict": True}),
        (pb.ToolCall, {"id": "c", "type": "function", "function": {"name": "f"}, "x": 2}),
        (pb.ReasoningDetail, {"type": "reasoning.text", "text": "", "index": 0, "x": "y"}),
        (pb.Usage, {"input_tokens": 1, "cache_write_tokens": 3, "x": 0.5}),
        (pb.StreamError, {"code": "server_error", "message": "m", "metadata": {"raw": "r"}}),
        (pb.Delta, {"refusal": "I can't help with that.", "x": "y"}),
        (pb.Model, {"id": "m", "owned_by": "o", "x": "y"}),
        (pb.ChatMessage, {"role": "assistant", "refusal": "", "reasoning": "r", "x": "y"}),
        (pb.ContentPart, {"type": "text", "text": "t", "x": "y"}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_every_message_type_round_trips(cls: type[Message], obj: JSON) -> None:
    message = decode(cls, obj)

    assert isinstance(message, cls)
    assert encode(message) == obj


def test_message_without_extra_field_refuses_unknown_members() -> None:
    with pytest.raises(ValueError, match="ListModelsRequest"):
        decode(pb.ListModelsRequest, {"unexpected": 1})


def test_empty_object_decodes_to_default_message_and_encodes_empty() -> None:
    message = decode(pb.ChatCompletionChunk, {})

    assert message == pb.ChatCompletionChunk()
    assert encode(message) == {}


# --------------------------------------------------------------------------- #
# Unknown and mistyped members
# --------------------------------------------------------------------------- #


def test_unknown_members_land_in_extra_and_come_back_on_encode() -> None:
    obj = {
        "id": "c1",
        "service_tier": "default",
        "nested": {"a": [1, "two", False, {"b": None}]},
    }

    chunk = decode(pb.ChatCompletionChunk, obj)

    assert chunk.id == "c1"
    assert extra_of(chunk) == {
        "service_tier": "default",
        "nested": {"a": [1, "two", False, {"b": None}]},
    }
    assert encode(chunk) == obj


def test_unknown_null_member_is_kept_as_null_in_extra() -> None:
    chunk = decode(pb.ChatCompletionChunk, {"id": "c1", "moderation": None})

    assert extra_of(chunk) == {"moderation": None}
    assert encode(chunk) == {"id": "c1", "moderation": None}


@pytest.mark.parametrize(
    ("cls", "obj", "mistyped"),
    [
        (pb.ChunkChoice, {"index": "0"}, "index"),
        (pb.ChatCompletionChunk, {"created": 1.5}, "created"),
        (pb.ChatCompletionChunk, {"created": "1732512000"}, "created"),
        (pb.ChatCompletion, {"id": 123}, "id"),
        (pb.ChatMessage, {"role": "user", "content": 5}, "content"),
        (pb.ChatMessage, {"role": "user", "content": {"text": "hi"}}, "content"),
        (pb.ChatMessage, {"role": "user", "content": [{"type": "text"}, "bare"]}, "content"),
        (pb.ChatMessage, {"role": "user", "tool_calls": {"id": "x"}}, "tool_calls"),
        (pb.Delta, {"content": ["a", "b"]}, "content"),
        (pb.Delta, {"tool_calls": [{"index": 0}, 7]}, "tool_calls"),
        (pb.FunctionDefinition, {"name": "f", "strict": "yes"}, "strict"),
        (pb.FunctionDefinition, {"name": "f", "parameters": ["not", "an", "object"]}, "parameters"),
        (pb.ChatCompletionRequest, {"model": "m", "temperature": "0.5"}, "temperature"),
        (pb.ChatCompletionRequest, {"model": "m", "temperature": True}, "temperature"),
        (pb.ChatCompletionRequest, {"model": "m", "max_tokens": 10.5}, "max_tokens"),
        (pb.ChatCompletionRequest, {"model": "m", "max_tokens": True}, "max_tokens"),
        (pb.ChatCompletionRequest, {"model": "m", "tool_choice": 3}, "tool_choice"),
        (pb.Usage, {"input_tokens": "12"}, "input_tokens"),
        (pb.Usage, {"prompt_tokens": 1.5}, "prompt_tokens"),
        (pb.StreamError, {"code": 429.5}, "code"),
        (pb.StreamError, {"code": True}, "code"),
        (pb.Model, {"id": "m", "context_length": "128k"}, "context_length"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_mistyped_modelled_member_lands_in_extra_instead_of_raising(
    cls: type[Message], obj: JSON, mistyped: str
) -> None:
    message = decode(cls, obj)

    assert extra_of(message) == {mistyped: obj[mistyped]}
    field = "content_parts" if mistyped == "content" and cls is pb.ChatMessage else mistyped
    if field in cls.DESCRIPTOR.fields_by_name:
        field_descriptor = cls.DESCRIPTOR.fields_by_name[field]
        if field_descriptor.has_presence:
            assert not message.HasField(field)
        else:
            assert not getattr(message, field)


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (pb.ChatCompletionChunk, {"id": "c", "created": 1.5}),
        (pb.ChatCompletion, {"id": 123, "model": "m"}),
        (pb.ChatMessage, {"role": "user", "content": 5}),
        (pb.ChatMessage, {"role": "user", "content": [{"type": "text", "text": "a"}, "oops"]}),
        (pb.ChatCompletionRequest, {"model": "m", "temperature": "hot"}),
        (pb.Usage, {"input_tokens": "12", "output_tokens": 3}),
    ],
)
def test_mistyped_member_comes_back_unchanged_on_encode(cls: type[Message], obj: JSON) -> None:
    assert roundtrip(cls, obj) == obj


@pytest.mark.parametrize(
    ("cls", "obj"),
    [
        (pb.ChunkChoice, {"index": "0", "delta": {"content": "hi"}}),
        (pb.ChunkChoice, {"index": "1", "delta": {"content": "hi"}}),
        (pb.Choice, {"index": 2**40, "finish_reason": "stop"}),
        (pb.ToolCallDelta, {"index": 1.5, "id": "call_1"}),
    ],
)
def test_mistyped_index_comes_back_unchanged_on_encode(cls: type[Message], obj: JSON) -> None:
    assert roundtrip(cls, obj) == obj


@pytest.mark.parametrize(
    ("cls", "member", "value"),
    [
        (pb.ChunkChoice, "index", 2**31),
        (pb.ChunkChoice, "index", -(2**31) - 1),
        (pb.ReasoningDetail, "index", 2**31),
        (pb.Model, "context_length", 2**31),
        (pb.Usage, "input_tokens", 2**32),
        (pb.Usage, "prompt_tokens", 2**31),
        (pb.ChatCompletionRequest, "max_tokens", 2**31),
        (pb.StreamError, "code", 2**31),
    ],
)
def test_out_of_range_int32_lands_in_extra(cls: type[Message], member: str, value: int) -> None:
    message = decode(cls, {member: value})

    assert extra_of(message) == {member: value}


def test_int32_bounds_themselves_fit_the_field() -> None:
    low = decode(pb.ReasoningDetail, {"index": -(2**31)})
    high = decode(pb.ReasoningDetail, {"index": 2**31 - 1})

    assert (low.index, high.index) == (-(2**31), 2**31 - 1)
    assert not low.HasField("extra") and not high.HasField("extra")


def test_int64_created_accepts_values_beyond_int32() -> None:
    chunk = decode(pb.ChatCompletionChunk, {"created": 2**40})

    assert chunk.created == 2**40
    assert not chunk.HasField("extra")


def test_int64_created_beyond_int64_lands_in_extra() -> None:
    chunk = decode(pb.ChatCompletionChunk, {"created": 2**63})

    assert chunk.created == 0
    assert "created" in extra_of(chunk)


def test_integer_temperature_fills_the_double_field() -> None:
    request = decode(pb.ChatCompletionRequest, {"model": "m", "temperature": 1})

    assert request.HasField("temperature") and request.temperature == 1.0
    assert not request.HasField("extra")


# --------------------------------------------------------------------------- #
# null == absent
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("cls", "member"),
    [
        (pb.ChatMessage, "content"),
        (pb.ChatMessage, "refusal"),
        (pb.ChatMessage, "tool_calls"),
        (pb.Delta, "role"),
        (pb.Delta, "content"),
        (pb.Delta, "tool_calls"),
        (pb.ChunkChoice, "finish_reason"),
        (pb.ChunkChoice, "logprobs"),
        (pb.ChunkChoice, "delta"),
        (pb.ChatCompletionChunk, "usage"),
        (pb.ChatCompletionChunk, "error"),
        (pb.ChatCompletionChunk, "created"),
        (pb.ChatCompletionRequest, "max_tokens"),
        (pb.ChatCompletionRequest, "temperature"),
        (pb.ChatCompletionRequest, "tool_choice"),
        (pb.ReasoningDetail, "signature"),
        (pb.StreamError, "code"),
        (pb.Usage, "prompt_tokens"),
    ],
)
def test_null_modelled_member_is_the_same_as_absent(cls: type[Message], member: str) -> None:
    message = decode(cls, {member: None})

    assert message == cls()
    assert member not in encode(message)


# --------------------------------------------------------------------------- #
# Members with two JSON shapes
# --------------------------------------------------------------------------- #


def test_string_content_fills_content() -> None:
    message = decode(pb.ChatMessage, {"role": "user", "content": "hello"})

    assert message.HasField("content") and message.content == "hello"
    assert list(message.content_parts) == []
    assert encode(message) == {"role": "user", "content": "hello"}


def test_empty_string_content_is_kept_because_content_has_presence() -> None:
    message = decode(pb.ChatMessage, {"role": "assistant", "content": ""})

    assert message.HasField("content")
    assert encode(message) == {"role": "assistant", "content": ""}


def test_content_array_fills_content_parts_and_encodes_back_as_content() -> None:
    obj = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe this."},
            {"type": "image_url", "image_url": {"url": "https://x.example/a.jpg"}},
        ],
    }

    message = decode(pb.ChatMessage, obj)

    assert not message.HasField("content")
    assert [part.type for part in message.content_parts] == ["text", "image_url"]
    assert message.content_parts[0].text == "Describe this."
    assert message.content_parts[1].image_url.url == "https://x.example/a.jpg"
    assert encode(message) == obj
    assert "content_parts" not in encode(message)


def test_cache_control_is_kept_in_the_parts_extra() -> None:
    obj = {
        "role": "user",
        "content": [
            {
                "type": "text",
                "text": "A very long document ...",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
    }

    part = decode(pb.ChatMessage, obj).content_parts[0]

    assert extra_of(part) == {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert roundtrip(pb.ChatMessage, obj) == obj


def test_content_parts_is_not_a_json_member_name() -> None:
    message = decode(pb.ChatMessage, {"role": "user", "content_parts": "x"})

    assert list(message.content_parts) == []
    assert extra_of(message) == {"content_parts": "x"}


def test_unknown_content_parts_member_does_not_replace_content_on_encode() -> None:
    obj = {"role": "user", "content": "hello", "content_parts": ["junk"]}

    assert roundtrip(pb.ChatMessage, obj) == obj


@pytest.mark.parametrize("mode", ["auto", "none", "required", "some_future_mode"])
def test_tool_choice_string_fills_mode(mode: str) -> None:
    request = decode(pb.ChatCompletionRequest, {"model": "m", "tool_choice": mode})

    assert request.tool_choice.WhichOneof("choice") == "mode"
    assert request.tool_choice.mode == mode
    assert encode(request) == {"model": "m", "tool_choice": mode}


def test_tool_choice_object_fills_tool() -> None:
    obj = {
        "model": "m",
        "tool_choice": {"type": "function", "function": {"name": "lookup"}, "x": 1},
    }

    request = decode(pb.ChatCompletionRequest, obj)

    assert request.tool_choice.WhichOneof("choice") == "tool"
    assert request.tool_choice.tool.type == "function"
    assert request.tool_choice.tool.function.name == "lookup"
    assert extra_of(request.tool_choice.tool) == {"x": 1}
    assert encode(request) == obj


def test_numeric_error_code_sets_http_status_and_encodes_back_to_a_number() -> None:
    obj = {"code": 429, "message": "Rate limit exceeded", "metadata": {"provider_name": "X"}}

    error = decode(pb.StreamError, obj)

    assert error.code == "429"
    assert error.http_status == 429
    assert struct_to_dict(error.metadata) == {"provider_name": "X"}
    encoded = encode(error)
    assert encoded == obj
    assert type(encoded["code"]) is int


@pytest.mark.parametrize("code", ["server_error", "429", "rate_limit_exceeded"])
def test_string_error_code_leaves_http_status_unset_and_stays_a_string(code: str) -> None:
    error = decode(pb.StreamError, {"code": code, "message": "m"})

    assert error.code == code
    assert error.http_status == 0
    assert encode(error) == {"code": code, "message": "m"}


def test_error_chunk_round_trips() -> None:
    obj = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1732512003,
        "model": "m",
        "error": {"code": 502, "message": "Provider returned error", "metadata": {"raw": "x"}},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }

    chunk = decode(pb.ChatCompletionChunk, obj)

    assert chunk.error.http_status == 502
    assert encode(chunk) == obj


@pytest.mark.parametrize(
    "obj",
    [
        {"code": "server_error", "http_status": 500, "message": "m"},
        {"code": "429", "http_status": 429, "message": "m"},
    ],
)
def test_unknown_http_status_member_of_an_error_round_trips(obj: JSON) -> None:
    assert roundtrip(pb.StreamError, obj) == obj


def test_numeric_error_code_zero_encodes_back_to_a_number() -> None:
    assert roundtrip(pb.StreamError, {"code": 0, "message": "m"}) == {"code": 0, "message": "m"}


# --------------------------------------------------------------------------- #
# Usage dialects
# --------------------------------------------------------------------------- #


def test_openai_usage_fills_input_and_output_tokens() -> None:
    usage = decode(pb.Usage, {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})

    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (10, 5, 15)
    assert not usage.HasField("extra")
    assert encode(usage) == {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}


CACHED_USAGE = {
    "prompt_tokens": 1000,
    "prompt_tokens_details": {"cached_tokens": 700, "audio_tokens": 0},
}
REASONING_USAGE = {
    "completion_tokens": 300,
    "completion_tokens_details": {"reasoning_tokens": 256, "accepted_prediction_tokens": 0},
}


@pytest.mark.parametrize(
    ("obj", "field", "expected"),
    [(CACHED_USAGE, "cache_read_tokens", 700), (REASONING_USAGE, "reasoning_tokens", 256)],
    ids=["cached_tokens", "reasoning_tokens"],
)
def test_openai_tokens_detail_fills_its_field_and_is_kept(
    obj: JSON, field: str, expected: int
) -> None:
    usage = decode(pb.Usage, obj)

    assert getattr(usage, field) == expected
    details = {key: value for key, value in obj.items() if key.endswith("_details")}
    assert extra_of(usage) == details  # the whole detail object, unknown members and all


def test_cache_write_tokens_detail_fills_cache_write_tokens() -> None:
    usage = decode(pb.Usage, {"prompt_tokens_details": {"cache_write_tokens": 33}})

    assert usage.cache_write_tokens == 33


def test_myrouter_counts_win_over_openai_details() -> None:
    usage = decode(
        pb.Usage,
        {
            "cache_read_tokens": 5,
            "reasoning_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 500},
            "completion_tokens_details": {"reasoning_tokens": 600},
        },
    )

    assert (usage.cache_read_tokens, usage.reasoning_tokens) == (5, 6)


@pytest.mark.parametrize(
    "details",
    [
        {"cached_tokens": "7"},
        {"cached_tokens": 7.5},
        {"cached_tokens": True},
        {"cached_tokens": None},
        {"cached_tokens": 2**31},
    ],
)
def test_mistyped_cached_tokens_detail_is_ignored(details: JSON) -> None:
    usage = decode(pb.Usage, {"prompt_tokens_details": details})

    assert usage.cache_read_tokens == 0
    assert extra_of(usage) == {"prompt_tokens_details": details}


@pytest.mark.parametrize("details", ["cached", [1, 2], 7])
def test_details_that_are_not_objects_are_kept_and_ignored(details: Any) -> None:
    usage = decode(
        pb.Usage, {"prompt_tokens_details": details, "completion_tokens_details": details}
    )

    assert (usage.cache_read_tokens, usage.reasoning_tokens) == (0, 0)
    assert extra_of(usage) == {
        "prompt_tokens_details": details,
        "completion_tokens_details": details,
    }


def test_myrouter_usage_dialect_round_trips() -> None:
    obj = {
        "input_tokens": 10,
        "output_tokens": 20,
        "total_tokens": 30,
        "cache_read_tokens": 4,
        "cache_write_tokens": 2,
        "reasoning_tokens": 8,
        "cost": 0.0001,
    }

    assert roundtrip(pb.Usage, obj) == obj


# --------------------------------------------------------------------------- #
# Numbers in extra, zero indexes, request encoding
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("number", [0, 1, -1, 42, 2**31, -(2**40), 2**53 - 1, -(2**53 - 1)])
def test_integral_numbers_in_extra_come_back_as_ints(number: int) -> None:
    encoded = roundtrip(pb.Usage, {"n": number, "deep": {"list": [number]}})

    assert encoded == {"n": number, "deep": {"list": [number]}}
    assert type(encoded["n"]) is int
    assert type(encoded["deep"]["list"][0]) is int


@pytest.mark.parametrize("number", [0.5, -1.25, 1e-9, 0.00855])
def test_fractional_numbers_in_extra_stay_floats(number: float) -> None:
    encoded = roundtrip(pb.Usage, {"n": number})

    assert encoded == {"n": number}
    assert type(encoded["n"]) is float


def test_integral_float_in_extra_comes_back_as_int() -> None:
    encoded = roundtrip(pb.ChatCompletionChunk, {"n": 3.0})

    assert type(encoded["n"]) is int and encoded["n"] == 3


def test_struct_helpers_round_trip_nested_json() -> None:
    value = {"a": [1, 2.5, "s", True, None, {"b": []}], "c": {}}

    assert struct_to_dict(struct_from_dict(value)) == value
    assert isinstance(struct_from_dict(value), struct_pb2.Struct)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (pb.Choice(), {"index": 0}),
        (pb.ChunkChoice(), {"index": 0}),
        (pb.ToolCallDelta(), {"index": 0}),
        (pb.ChunkChoice(delta=pb.Delta(content="x")), {"index": 0, "delta": {"content": "x"}}),
        (pb.ToolCallDelta(id="call_1"), {"index": 0, "id": "call_1"}),
    ],
    ids=["Choice", "ChunkChoice", "ToolCallDelta", "ChunkChoice-with-delta", "ToolCallDelta-id"],
)
def test_index_zero_is_written_on_encode(message: Message, expected: JSON) -> None:
    assert encode(message) == expected


@pytest.mark.parametrize(
    "message",
    [pb.ReasoningDetail(), pb.ChatCompletionChunk(), pb.Usage(), pb.Model(), pb.ChatMessage()],
    ids=lambda m: type(m).__name__,
)
def test_other_messages_do_not_write_zero_values(message: Message) -> None:
    assert encode(message) == {}


def test_request_extra_members_are_merged_into_the_body() -> None:
    request = pb.ChatCompletionRequest(
        model="m",
        messages=[pb.ChatMessage(role="user", content="hi")],
        extra=struct_from_dict({"seed": 7, "provider": {"sort": "price"}}),
    )

    assert encode(request) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 7,
        "provider": {"sort": "price"},
    }


@pytest.mark.parametrize(
    ("field_kwargs", "member", "expected"),
    [
        ({"model": "real/model"}, "model", "real/model"),
        ({"temperature": 0.2}, "temperature", 0.2),
        ({"max_tokens": 5}, "max_tokens", 5),
        ({"user": "u-1"}, "user", "u-1"),
        ({"tool_choice": pb.ToolChoice(mode="none")}, "tool_choice", "none"),
    ],
)
def test_request_modelled_field_wins_over_extra_member_of_the_same_name(
    field_kwargs: dict[str, Any], member: str, expected: Any
) -> None:
    request = pb.ChatCompletionRequest(
        extra=struct_from_dict({member: "from-extra", "seed": 1}), **field_kwargs
    )

    encoded = encode(request)

    assert encoded[member] == expected
    assert encoded["seed"] == 1


def test_request_extra_member_of_an_unset_modelled_name_passes_through() -> None:
    # Validation refuses this; encode itself only guarantees set fields win.
    request = pb.ChatCompletionRequest(model="m", extra=struct_from_dict({"top_p": 0.5}))

    assert encode(request) == {"model": "m", "top_p": 0.5}


def test_encode_puts_extra_first_and_modelled_fields_on_top_for_nested_messages() -> None:
    message = pb.ChatMessage(role="assistant", extra=struct_from_dict({"role": "intruder"}))

    assert encode(message) == {"role": "assistant"}


# --------------------------------------------------------------------------- #
# Property tests: encode(decode(obj)) == obj in the MyRouter dialect
# --------------------------------------------------------------------------- #

INT32_MAX = 2**31 - 1
JSON_INT = st.integers(min_value=-(2**53), max_value=2**53)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
NON_EMPTY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12)
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.-", min_size=1, max_size=16)

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(TEXT, st.booleans(), JSON_INT),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(TEXT, children, max_size=3),
    ),
    max_leaves=8,
)


def _names(cls: type[Message]) -> frozenset[str]:
    return frozenset(cls.DESCRIPTOR.fields_by_name)


# Unknown member names exclude every field name of the message (which also
# keeps out "content_parts" and "http_status", covered by their own tests
# above) and the OpenAI usage aliases, since the property speaks the MyRouter
# dialect only.
_RESERVED: dict[type[Message], frozenset[str]] = {
    pb.Usage: frozenset(
        {"prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"}
    ),
}


def with_unknowns(
    cls: type[Message],
    required: Mapping[str, st.SearchStrategy[Any]],
    optional: Mapping[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[JSON]:
    """Objects with the given modelled members plus up to 3 unknown ones."""
    taken = _names(cls) | _RESERVED.get(cls, frozenset())
    unknown = st.dictionaries(
        st.one_of(WORD, TEXT).filter(lambda key: key not in taken), JSON_VALUES, max_size=3
    )
    modelled = st.fixed_dictionaries(dict(required), optional=dict(optional))
    return st.builds(lambda m, u: {**u, **m}, modelled, unknown)


def json_objects() -> st.SearchStrategy[JSON]:
    return st.dictionaries(TEXT, JSON_VALUES, max_size=3)


POSITIVE_INT32 = st.integers(min_value=1, max_value=INT32_MAX)
INDEX = st.integers(min_value=0, max_value=INT32_MAX)

FUNCTION_CALLS = with_unknowns(
    pb.FunctionCall, {}, {"name": NON_EMPTY_TEXT, "arguments": NON_EMPTY_TEXT}
)
TOOL_CALL_DELTAS = with_unknowns(
    pb.ToolCallDelta,
    {"index": INDEX},
    {"id": NON_EMPTY_TEXT, "type": st.just("function"), "function": FUNCTION_CALLS},
)
TOOL_CALLS = with_unknowns(
    pb.ToolCall,
    {"id": NON_EMPTY_TEXT, "type": st.just("function"), "function": FUNCTION_CALLS},
    {},
)
REASONING_DETAILS = with_unknowns(
    pb.ReasoningDetail,
    {"type": st.sampled_from(["reasoning.text", "reasoning.summary", "reasoning.encrypted"])},
    {
        "id": NON_EMPTY_TEXT,
        "format": NON_EMPTY_TEXT,
        "index": st.integers(min_value=-(2**31), max_value=INT32_MAX),
        "text": TEXT,
        "summary": TEXT,
        "data": TEXT,
        "signature": TEXT,
    },
)
REASONING_AND_REFUSAL = {  # a delta and a whole message carry them alike
    "reasoning": TEXT,
    "refusal": TEXT,
    "reasoning_details": st.lists(REASONING_DETAILS, min_size=1, max_size=2),
}
DELTAS = with_unknowns(
    pb.Delta,
    {},
    {
        "role": st.sampled_from(["assistant", "tool", ""]),
        "content": TEXT,
        "tool_calls": st.lists(TOOL_CALL_DELTAS, min_size=1, max_size=2),
        **REASONING_AND_REFUSAL,
    },
)
FINISH_REASONS = st.sampled_from(["stop", "length", "tool_calls", "content_filter", "error"])


def choices(
    cls: type[Message], body: str, bodies: st.SearchStrategy[JSON]
) -> st.SearchStrategy[JSON]:
    """Choices of a chunk (`body` "delta") or of a completion ("message"): they end alike."""
    return with_unknowns(
        cls,
        {"index": INDEX, body: bodies},
        {
            "finish_reason": FINISH_REASONS,
            "native_finish_reason": NON_EMPTY_TEXT,
            "logprobs": json_objects(),
        },
    )


CHUNK_CHOICES = choices(pb.ChunkChoice, "delta", DELTAS)
USAGES = with_unknowns(
    pb.Usage,
    {},
    {
        name: POSITIVE_INT32
        for name in (
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        )
    },
)
STREAM_ERRORS = with_unknowns(
    pb.StreamError,
    {},
    {
        # Code 0 is excluded: see test_numeric_error_code_zero_encodes_back_to_a_number.
        "code": st.one_of(
            st.integers(min_value=-(2**31), max_value=INT32_MAX).filter(bool), NON_EMPTY_TEXT
        ),
        "message": NON_EMPTY_TEXT,
        "metadata": json_objects(),
    },
)
COMMON_TOP = {
    "id": NON_EMPTY_TEXT,
    "created": st.integers(min_value=1, max_value=2**62),
    "model": NON_EMPTY_TEXT,
}
COMMON_OPTIONAL = {
    "usage": USAGES,
    "system_fingerprint": NON_EMPTY_TEXT,
    "provider": NON_EMPTY_TEXT,
}
CHUNKS = with_unknowns(
    pb.ChatCompletionChunk,
    {**COMMON_TOP, "object": st.just("chat.completion.chunk")},
    {
        **COMMON_OPTIONAL,
        "choices": st.lists(CHUNK_CHOICES, min_size=1, max_size=2),
        "error": STREAM_ERRORS,
    },
)

CONTENT_PARTS = with_unknowns(
    pb.ContentPart,
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file"])},
    {
        "text": TEXT,
        "image_url": with_unknowns(
            pb.ImageUrl, {"url": NON_EMPTY_TEXT}, {"detail": st.sampled_from(["auto", "low"])}
        ),
        "input_audio": with_unknowns(
            pb.InputAudio, {"data": NON_EMPTY_TEXT, "format": st.just("wav")}, {}
        ),
        "file": with_unknowns(
            pb.File,
            {},
            {"filename": NON_EMPTY_TEXT, "file_data": NON_EMPTY_TEXT, "file_id": NON_EMPTY_TEXT},
        ),
    },
)
MESSAGES = with_unknowns(
    pb.ChatMessage,
    {"role": st.sampled_from(["assistant", "user", "system", "developer", "tool"])},
    {
        "content": st.one_of(TEXT, st.lists(CONTENT_PARTS, min_size=1, max_size=2)),
        "name": NON_EMPTY_TEXT,
        "tool_call_id": NON_EMPTY_TEXT,
        "tool_calls": st.lists(TOOL_CALLS, min_size=1, max_size=2),
        **REASONING_AND_REFUSAL,
    },
)
CHOICES = choices(pb.Choice, "message", MESSAGES)
COMPLETIONS = with_unknowns(
    pb.ChatCompletion,
    {
        **COMMON_TOP,
        "object": st.just("chat.completion"),
        "choices": st.lists(CHOICES, min_size=1, max_size=2),
    },
    COMMON_OPTIONAL,
)

PROPERTY_SETTINGS: Callable[[Any], Any] = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# Requests and model lists: the two remaining top-level types, unknown members
# at every level included (the request's own extra is what the bridge forwards).

NON_EMPTY_OBJECTS = st.dictionaries(TEXT, JSON_VALUES, min_size=1, max_size=3)
FUNCTION_DEFINITIONS = with_unknowns(
    pb.FunctionDefinition,
    {"name": NON_EMPTY_TEXT},
    {"description": NON_EMPTY_TEXT, "parameters": NON_EMPTY_OBJECTS, "strict": st.booleans()},
)
TOOLS = with_unknowns(pb.Tool, {"type": st.just("function"), "function": FUNCTION_DEFINITIONS}, {})
NAMED_TOOL_CHOICES = with_unknowns(
    pb.NamedToolChoice,
    {
        "type": st.just("function"),
        "function": with_unknowns(pb.FunctionName, {"name": NON_EMPTY_TEXT}, {}),
    },
    {},
)
RESPONSE_FORMATS = with_unknowns(
    pb.ResponseFormat,
    {"type": st.sampled_from(["text", "json_object", "json_schema"])},
    {
        "json_schema": with_unknowns(
            pb.JsonSchemaFormat,
            {"name": NON_EMPTY_TEXT},
            {
                "description": NON_EMPTY_TEXT,
                "schema": NON_EMPTY_OBJECTS,
                "strict": st.booleans(),
            },
        )
    },
)
REQUESTS = with_unknowns(
    pb.ChatCompletionRequest,
    {"model": NON_EMPTY_TEXT, "messages": st.lists(MESSAGES, min_size=1, max_size=3)},
    {
        "max_tokens": POSITIVE_INT32,
        "temperature": st.floats(min_value=0, max_value=2),
        "top_p": st.floats(min_value=0, max_value=1),
        "tools": st.lists(TOOLS, min_size=1, max_size=2),
        "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), NAMED_TOOL_CHOICES),
        "response_format": RESPONSE_FORMATS,
        "user": NON_EMPTY_TEXT,
    },
)
MODELS = with_unknowns(
    pb.Model,
    {"id": NON_EMPTY_TEXT},
    {
        "object": st.just("model"),
        "created": st.integers(min_value=1, max_value=2**62),
        "owned_by": NON_EMPTY_TEXT,
        "name": NON_EMPTY_TEXT,
        "description": NON_EMPTY_TEXT,
        "context_length": POSITIVE_INT32,
    },
)
MODEL_LISTS = with_unknowns(
    pb.ListModelsResponse,
    {"data": st.lists(MODELS, min_size=1, max_size=3)},  # an empty repeated field is absent
    {"object": st.just("list")},
)


# Every top-level type, by the strategy that draws its JSON.
ROUND_TRIPS: Mapping[str, tuple[type[Message], st.SearchStrategy[JSON]]] = {
    "chunk": (pb.ChatCompletionChunk, CHUNKS),
    "completion": (pb.ChatCompletion, COMPLETIONS),
    "request": (pb.ChatCompletionRequest, REQUESTS),
    "model_list": (pb.ListModelsResponse, MODEL_LISTS),
}


@pytest.mark.parametrize("kind", sorted(ROUND_TRIPS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_round_trips(kind: str, data: st.DataObject) -> None:
    cls, objects = ROUND_TRIPS[kind]
    obj = data.draw(objects)
    assert encode(decode(cls, obj)) == obj


@pytest.mark.parametrize("kind", ["chunk", "request"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_decoded_message_survives_the_wire(kind: str, data: st.DataObject) -> None:
    """What a caller builds and sends over gRPC (a request), or receives (a chunk), is the
    same message after the trip, and encodes to the same JSON."""
    cls, objects = ROUND_TRIPS[kind]
    obj = data.draw(objects)
    message = decode(cls, obj)
    received = cls.FromString(message.SerializeToString())
    assert received == message
    assert encode(received) == obj


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def _without_nulls(value: Any) -> Any:
    """`value` with every null object member removed (null == absent)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def test_decode_each_builds_the_chunks_decode_would_build_one_by_one() -> None:
    events = [
        *TOOL_CALL_CHUNKS,
        REASONING_CHUNK,
        ENCRYPTED_REASONING_CHUNK,
        USAGE_CHUNK,
        {"id": "x", "odd": {"kept": [1, "a"]}, "error": {"code": 429, "message": "m"}},
    ]
    batch = decode_each(
        pb.StreamChatCompletionBatchesResponse, "chunks", pb.ChatCompletionChunk, events
    )
    assert list(batch.chunks) == [decode(pb.ChatCompletionChunk, event) for event in events]
    assert batch.chunks[-1].error.http_status == 429
    assert struct_to_dict(batch.chunks[-1].extra) == {"odd": {"kept": [1, "a"]}}


@pytest.mark.parametrize(
    "message",
    [
        pb.ChatMessage(role="user", content_parts=[pb.ContentPart(type="text", text="hi")]),
        pb.ChatMessage(role="user", content="hi", name="n"),
        pb.StreamError(code="429", http_status=429, message="slow down"),
        pb.StreamError(code="server_error", http_status=500, message="oops"),
    ],
)
def test_member_names_hold_every_member_encode_writes(message: Any) -> None:
    # validation refuses an `extra` member named like any of them (bridge/validation.py)
    assert set(encode(message)) <= member_names(message.DESCRIPTOR)
    assert "content_parts" in member_names(pb.ChatMessage.DESCRIPTOR)  # the field's own name too
