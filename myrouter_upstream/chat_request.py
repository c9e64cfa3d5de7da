"""Validating a chat completion request and distilling what the answer depends on.

The upstream only needs a handful of facts from a request (model, stream flag,
max_tokens, the text to echo, the tool to call), so parsing reduces the body to
a small frozen `ChatRequest` at once; the answer generator never looks at raw
JSON. Validation is deliberately about as strict as the real API on the members
the answer uses, and ignores everything else, so the bridge's pass-through of
unknown members can be asserted through the recording instead.

Pure: no I/O, no state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from .errors import UpstreamError

__all__ = ["ChatRequest", "content_text", "parse_chat_request"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ChatRequest:
    """The facts of a valid request that the answer depends on."""

    model: str
    stream: bool
    max_tokens: int | None
    last_role: str
    """Role of the last message."""
    last_text: str
    """Text of the last message."""
    last_user_text: str
    """Text of the last message with role "user" ("" when there is none)."""
    input_tokens: int
    """Whitespace-separated words in the text of all messages."""
    tool_name: str | None
    """The function to call when the answer must be a tool call, else None."""


def parse_chat_request(body: object, model_ids: Collection[str]) -> ChatRequest:
    """Validate `body` (decoded JSON) and distil it; raise `UpstreamError` (400/404)."""
    if not isinstance(body, Mapping):
        raise UpstreamError(400, "Request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise UpstreamError(400, "'model' is required and must be a non-empty string")
    texts, roles = _messages(body.get("messages"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise UpstreamError(400, "'stream' must be a boolean")
    max_tokens = _max_tokens(body.get("max_tokens"))
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UpstreamError(400, f"'{name}' must be a number")
    tool_names = _tools(body.get("tools"))
    tools_disabled, forced_name = _tool_choice(body.get("tool_choice"))
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, Mapping):
        raise UpstreamError(400, "'response_format' must be an object")
    if model not in model_ids:
        raise UpstreamError(404, f"Model '{model}' not found")

    last_user_text = ""
    for role, text in zip(reversed(roles), reversed(texts), strict=False):
        if role == "user":
            last_user_text = text
            break
    tool_name: str | None = None
    if tool_names and not tools_disabled and roles[-1] == "user":
        tool_name = forced_name or tool_names[0]
    return ChatRequest(
        model=model,
        stream=bool(stream),
        max_tokens=max_tokens,
        last_role=roles[-1],
        last_text=texts[-1],
        last_user_text=last_user_text,
        input_tokens=sum(len(text.split()) for text in texts),
        tool_name=tool_name,
    )


def content_text(content: object) -> str:
    """The text of a message ``content``: the string, or its "text" parts joined by " "."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    raise TypeError("content must be a string, an array or null")


def _messages(messages: object) -> tuple[list[str], list[str]]:
    if not isinstance(messages, list) or not messages:
        raise UpstreamError(400, "'messages' is required and must be a non-empty array")
    texts: list[str] = []
    roles: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise UpstreamError(400, f"messages[{index}] must be an object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise UpstreamError(400, f"messages[{index}].role is required and must be a string")
        try:
            texts.append(content_text(message.get("content")))
        except TypeError:
            raise UpstreamError(
                400, f"messages[{index}].content must be a string, an array or null"
            ) from None
        roles.append(role)
    return texts, roles


def _max_tokens(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UpstreamError(400, "'max_tokens' must be an integer >= 1")
    return value


def _tools(tools: object) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise UpstreamError(400, "'tools' must be an array")
    names: list[str] = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise UpstreamError(400, f"tools[{index}].function.name is required")
        names.append(name)
    return names


def _tool_choice(choice: object) -> tuple[bool, str | None]:
    """(tools disabled by ``"none"``, the function name an object choice forces)."""
    if choice is None:
        return False, None
    if isinstance(choice, str):
        return choice == "none", None
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return False, name
    raise UpstreamError(400, "'tool_choice' must be a string or an object naming a function")
