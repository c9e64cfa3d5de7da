"""Requests and call metadata, built from the plain Python values a caller already has.

Pure: no I/O. A message may be a ``(role, content)`` pair, a dict in the API's
JSON shape (as openai-python takes it), or a ``chat_pb2.ChatMessage``; tools
and the other parameters likewise. JSON members the contract does not model go
to the message's ``extra``, as the bridge expects them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from myrouter.chat.v1 import chat_pb2

__all__ = [
    "ChatMessageLike",
    "ToolLike",
    "batches_request",
    "build_request",
    "call_metadata",
    "chat_request",
]

ChatMessageLike = tuple[str, str] | Mapping[str, Any] | chat_pb2.ChatMessage
"""One message of a conversation: ``("user", "Hi")``, ``{"role": "user", "content": "Hi"}``."""

ToolLike = Mapping[str, Any] | chat_pb2.Tool
"""A tool: ``{"type": "function", "function": {"name": ..., "parameters": {...}}}``."""

_M = TypeVar("_M", bound=Message)


def build_request(
    model: str,
    messages: Iterable[ChatMessageLike],
    *,
    tools: Iterable[ToolLike] = (),
    tool_choice: str | Mapping[str, Any] | None = None,
    response_format: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    user: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> chat_pb2.ChatCompletionRequest:
    """A ChatCompletionRequest for a conversation, with tools and optional parameters.

    ``tool_choice`` is a mode (``"auto"``, ``"none"``, ``"required"``) or the
    API's ``{"type": "function", "function": {"name": ...}}``; ``extra`` holds
    provider parameters (``{"seed": 7}``). A value that does not fit the
    contract raises ValueError naming it, before any call is made.
    """
    request = chat_pb2.ChatCompletionRequest(
        model=model,
        messages=[_message(m, f"messages[{i}]") for i, m in enumerate(messages)],
        tools=[_tool(t, f"tools[{i}]") for i, t in enumerate(tools)],
    )
    if isinstance(tool_choice, str):
        request.tool_choice.mode = tool_choice
    elif tool_choice is not None:
        request.tool_choice.tool.CopyFrom(
            _parse(chat_pb2.NamedToolChoice, tool_choice, "tool_choice")
        )
    if response_format is not None:
        request.response_format.CopyFrom(
            _parse(chat_pb2.ResponseFormat, response_format, "response_format")
        )
    if max_tokens is not None:
        request.max_tokens = max_tokens
    if temperature is not None:
        request.temperature = temperature
    if top_p is not None:
        request.top_p = top_p
    if user:
        request.user = user
    if extra:
        request.extra.update(extra)
    return request


def chat_request(
    model: str,
    prompt: str,
    *,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    extra: dict[str, Any] | None = None,
) -> chat_pb2.ChatCompletionRequest:
    """The common request: an optional system message, then one user message."""
    conversation = [("system", system)] if system else []
    return build_request(
        model,
        [*conversation, ("user", prompt)],
        max_tokens=max_tokens,
        temperature=temperature,
        extra=extra,
    )


def call_metadata(token: str | None, request_id: str | None = None) -> list[tuple[str, str]]:
    """The metadata of a call: ``authorization: Bearer <token>`` and ``x-request-id``, if given.

    For sync stubs and other RPCs (ListModels) what the helpers send.
    """
    metadata = []
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    if request_id:
        metadata.append(("x-request-id", request_id))
    return metadata


def batches_request(
    request: chat_pb2.ChatCompletionRequest, max_delay: float
) -> chat_pb2.StreamChatCompletionBatchesRequest:
    """``request`` for StreamChatCompletionBatches, whose chunks the bridge may hold up to
    ``max_delay`` seconds (0: none) to send more with them."""
    batches = chat_pb2.StreamChatCompletionBatchesRequest(request=request)
    if max_delay > 0:
        batches.max_delay.FromNanoseconds(round(max_delay * 1e9))
    return batches


def _message(message: ChatMessageLike, where: str) -> chat_pb2.ChatMessage:
    if isinstance(message, chat_pb2.ChatMessage):
        return message
    if isinstance(message, tuple):
        if len(message) != 2 or not all(isinstance(part, str) for part in message):
            raise ValueError(f"{where}: a pair must be (role, content), two strings")
        return chat_pb2.ChatMessage(role=message[0], content=message[1])
    if not isinstance(message, Mapping):
        raise ValueError(f"{where}: expected a (role, content) pair, a dict or a ChatMessage")
    content = message.get("content")
    if isinstance(content, list):  # the API's content parts: [{"type": "text", ...}, ...]
        fields = {k: v for k, v in message.items() if k != "content"}
        return _parse(chat_pb2.ChatMessage, {**fields, "content_parts": content}, where)
    return _parse(chat_pb2.ChatMessage, message, where)


def _tool(tool: ToolLike, where: str) -> chat_pb2.Tool:
    if isinstance(tool, chat_pb2.Tool):
        return tool
    return _parse(chat_pb2.Tool, tool, where)


def _parse(message_type: type[_M], value: Mapping[str, Any], where: str) -> _M:
    """``value`` as ``message_type``: modelled members by name, the others into ``extra``."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a dict, got {type(value).__name__}")
    fields = message_type.DESCRIPTOR.fields_by_name
    modelled = {k: v for k, v in value.items() if k in fields and k != "extra" and v is not None}
    others = {k: v for k, v in value.items() if k not in fields}
    try:
        parsed = json_format.ParseDict(modelled, message_type())
    except json_format.ParseError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if others:
        parsed.extra.update(others)  # type: ignore[attr-defined]  # every such type has extra
    return parsed
