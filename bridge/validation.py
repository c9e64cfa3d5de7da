"""Checks a chat request before it can cost anything upstream.

All violations are collected, not just the first, so a caller fixes their
request in one round trip; each names the offending field by its path
(``messages[2].role``), as google.rpc.BadRequest expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from myrouter.chat.v1 import chat_pb2

from .errors import InvalidRequest
from .mapping import member_names

__all__ = [
    "MAX_BATCH_DELAY",
    "RESERVED_EXTRA_MEMBERS",
    "validate_batches_request",
    "validate_chat_request",
]

MAX_BATCH_DELAY = 1.0
"""The longest `StreamChatCompletionBatchesRequest.max_delay` honoured, in seconds (the
contract says so): a batch is for saving per-message cost, not for holding an answer back."""

RESERVED_EXTRA_MEMBERS = frozenset(
    field.name
    for field in chat_pb2.ChatCompletionRequest.DESCRIPTOR.fields
    if field.name != "extra"
) | {"stream"}
"""Request `extra` members that would shadow a checked field or the RPC's own choice."""


def validate_chat_request(
    request: chat_pb2.ChatCompletionRequest, *, max_messages: int | None = None
) -> None:
    """Raise InvalidRequest listing every rule `request` breaks.

    `max_messages` is the operator's cap on the conversation length (a hostile
    caller could otherwise send millions of tiny messages within the byte cap).
    """
    violations: list[tuple[str, str]] = []
    add = violations.append

    if not request.model.strip():
        add(("model", "is required: a model id from ListModels"))
    if not request.messages:
        add(("messages", "at least one message is required"))
    if max_messages is not None and len(request.messages) > max_messages:
        add(
            (
                "messages",
                f"at most {max_messages} messages are accepted, got {len(request.messages)}",
            )
        )
        raise InvalidRequest(violations)  # do not walk a hostile list any further
    for i, message in enumerate(request.messages):
        if not message.role.strip():
            add((f"messages[{i}].role", "is required"))
        if message.HasField("content") and message.content_parts:
            add((f"messages[{i}].content_parts", "set either content or content_parts, not both"))
    if request.HasField("max_tokens") and request.max_tokens < 1:
        add(("max_tokens", f"must be at least 1, got {request.max_tokens}"))
    if request.HasField("temperature") and not _within(request.temperature, 0.0, 2.0):
        add(("temperature", f"must be between 0 and 2, got {request.temperature}"))
    if request.HasField("top_p") and not _within(request.top_p, 0.0, 1.0):
        add(("top_p", f"must be between 0 and 1, got {request.top_p}"))
    for i, tool in enumerate(request.tools):
        if not tool.type:
            add((f"tools[{i}].type", 'is required ("function")'))
        if tool.type == "function" and not tool.function.name:
            add((f"tools[{i}].function.name", "is required"))
    if request.HasField("tool_choice") and request.tool_choice.WhichOneof("choice") is None:
        add(("tool_choice", "set either mode or tool"))
    choice = request.tool_choice
    if choice.WhichOneof("choice") == "tool" and not choice.tool.function.name:
        add(("tool_choice.tool.function.name", "is required"))
    if request.HasField("response_format"):
        response_format = request.response_format
        if not response_format.type:
            add(("response_format.type", 'is required ("text", "json_object" or "json_schema")'))
        if response_format.type == "json_schema" and not response_format.HasField("json_schema"):
            add(("response_format.json_schema", 'is required when type is "json_schema"'))
    for key in sorted(set(request.extra.fields) & RESERVED_EXTRA_MEMBERS):
        add(
            (f"extra.{key}", "names a modelled field or the RPC's own choice; use the field itself")
        )
    for field, value in request.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.name != "extra":
            _nested_extra(field, value, field.name, add)

    if violations:
        raise InvalidRequest(violations)


def _nested_extra(
    field: FieldDescriptor, value: Any, path: str, add: Callable[[tuple[str, str]], None]
) -> None:
    """The contract's rule for `extra` ("may never name a modelled field") below the top:
    an `extra` member named like a field would reach the API as that member whenever
    the field is unset, past every check of the field itself."""
    if field.message_type is None or field.message_type.full_name.startswith("google.protobuf."):
        return  # a Struct's members are the caller's JSON, not modelled fields
    items = enumerate(value) if field.is_repeated else ((None, value),)
    for i, message in items:
        here = path if i is None else f"{path}[{i}]"
        members = member_names(message.DESCRIPTOR)
        for sub, sub_value in message.ListFields():
            if sub.name == "extra":
                for key in sorted(set(sub_value.fields) & members):
                    add((f"{here}.extra.{key}", "names a modelled field; use the field itself"))
            elif sub.type == FieldDescriptor.TYPE_MESSAGE:
                _nested_extra(sub, sub_value, f"{here}.{sub.name}", add)


def validate_batches_request(
    request: chat_pb2.StreamChatCompletionBatchesRequest, *, max_messages: int | None = None
) -> float:
    """Raise InvalidRequest listing every rule `request` breaks; else return its wait.

    The chat request's rules are `validate_chat_request`'s, their fields named
    under ``request.``. The wait is in seconds, cut to `MAX_BATCH_DELAY`.
    """
    violations: list[tuple[str, str]] = []
    try:
        validate_chat_request(request.request, max_messages=max_messages)
    except InvalidRequest as invalid:
        violations += [(f"request.{field}", why) for field, why in invalid.violations]
    delay = request.max_delay
    seconds, nanos = delay.seconds, delay.nanos
    if seconds < 0 or not 0 <= nanos <= 999_999_999:
        violations.append(
            ("max_delay", f"must be a duration of 0 or more, got {seconds} s {nanos} ns")
        )
    if violations:
        raise InvalidRequest(violations)
    return min(seconds + nanos / 1e9, MAX_BATCH_DELAY)


def _within(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high
