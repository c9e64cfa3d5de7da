"""Deterministic answers: what to say for a request, and its exact bytes on the wire.

Everything here is a pure function of the request, the scenario and the
generation id, so a test can predict every byte the upstream sends.

Why bytes are assembled by hand for content chunks: a benchmark stream can have
tens of thousands of them, and they differ only in the token. The common head
(``{"id":...,"provider":...,"choices":[{"index":0,"delta":{"content":``) and tail
are encoded once per response and each chunk costs one ``orjson.dumps`` of a
short string plus a concatenation. The result is byte-identical to dumping the
whole chunk object with orjson (compact, keys in insertion order).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import orjson

from .chat_request import ChatRequest
from .models import CREATED
from .scenario import Dialect, Scenario

__all__ = [
    "DONE_EVENT",
    "KEEPALIVE_COMMENT",
    "MALFORMED_EVENT",
    "NOT_JSON_BODY",
    "REASONING_DELTA",
    "REASONING_DETAIL",
    "STAMP_MEMBER",
    "Answer",
    "Envelope",
    "StreamPlan",
    "build_answer",
    "render_completion",
    "render_error_event",
    "render_stream",
    "stamped",
    "tokenize",
]

PROVIDER: Final = "embedded"
DONE_EVENT: Final = b"data: [DONE]\n\n"
KEEPALIVE_COMMENT: Final = b": MYROUTER PROCESSING\n\n"
MALFORMED_EVENT: Final = b'data: {"id": "broken", not json\n\n'
NOT_JSON_BODY: Final = b"this is not json"
REASONING_DELTA: Final = "Thinking about it. "
"""Streamed twice as ``delta.reasoning`` when a scenario asks for reasoning."""
REASONING_DETAIL: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "type": "reasoning.text",
        "text": "Thinking about it.",
        "format": "embedded-v1",
        "index": 0,
    }
)
"""Sent once as ``delta.reasoning_details[0]`` (a read-only view; copy it to encode)."""
TOOL_CALL_ID: Final = "call_0"
STAMP_MEMBER: Final = "system_fingerprint"
"""Where a ``stamp`` scenario puts each event's send time (see `stamped`)."""
_STAMP_HEAD: Final = b"data: {"
_STAMP_TAIL: Final = b"}\n\n"

_WORD: Final = re.compile(r"\S+\s*")


def tokenize(text: str) -> list[str]:
    """Split into word tokens, each keeping its following whitespace.

    ``"You said: hello"`` gives ``["You ", "said: ", "hello"]``; the tokens
    concatenate back to the text (answers never start with whitespace).
    """
    return _WORD.findall(text)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """What the upstream says: text tokens, or the pieces of one tool call's arguments."""

    tokens: tuple[str, ...]
    """Content tokens, or (for a tool call) the argument pieces, in streaming order."""
    finish_reason: str
    tool_name: str | None
    input_tokens: int

    @property
    def is_tool_call(self) -> bool:
        return self.tool_name is not None

    @property
    def text(self) -> str:
        """The content, or (for a tool call) the arguments JSON text."""
        return "".join(self.tokens)

    @property
    def output_tokens(self) -> int:
        """One per token; a tool call counts 1 plus its argument pieces."""
        return len(self.tokens) + (1 if self.is_tool_call else 0)


def build_answer(request: ChatRequest, scenario: Scenario) -> Answer:
    """The deterministic answer to `request` under `scenario`."""
    if scenario.kind == "oversized":
        return Answer(
            tokens=("x" * scenario.size,),
            finish_reason="stop",
            tool_name=None,
            input_tokens=request.input_tokens,
        )
    if scenario.chunks is not None:
        padding = "x" * scenario.pad
        tokens = [f"tok{index} {padding}" for index in range(scenario.chunks)]
    elif request.tool_name is not None:
        # Three pieces that concatenate to json.dumps({"query": text}).
        pieces = ('{"query": ', json.dumps(request.last_user_text, ensure_ascii=False), "}")
        return Answer(
            tokens=pieces,
            finish_reason="tool_calls",
            tool_name=request.tool_name,
            input_tokens=request.input_tokens,
        )
    elif request.last_role == "tool":
        tokens = tokenize("Tool result: " + request.last_text)
    else:
        tokens = tokenize("You said: " + request.last_user_text)
    finish_reason = "stop"
    if request.max_tokens is not None and request.max_tokens < len(tokens):
        tokens = tokens[: request.max_tokens]
        finish_reason = "length"
    return Answer(
        tokens=tuple(tokens),
        finish_reason=finish_reason,
        tool_name=None,
        input_tokens=request.input_tokens,
    )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Envelope:
    """The members every answer object of one response shares."""

    gen_id: str
    model: str
    dialect: Dialect = "myrouter"
    reasoning: bool = False

    def head(self, object_type: str) -> dict[str, Any]:
        return {
            "id": self.gen_id,
            "object": object_type,
            "created": CREATED,
            "model": self.model,
            "provider": PROVIDER,
        }

    def usage(self, answer: Answer) -> dict[str, Any]:
        prompt, completion = answer.input_tokens, answer.output_tokens
        if self.dialect == "openai":
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            }
        return {
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "cost": 0,
        }

    def chunk(self, **members: Any) -> bytes:
        """One ``data:`` event of a ``chat.completion.chunk`` with `members` appended."""
        payload = orjson.dumps({**self.head("chat.completion.chunk"), **members})
        return b"data: " + payload + b"\n\n"


def render_completion(answer: Answer, envelope: Envelope) -> bytes:
    """The unary (``stream: false``) response body."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if answer.is_tool_call else answer.text,
    }
    if envelope.reasoning:
        message["reasoning"] = REASONING_DELTA * 2
        message["reasoning_details"] = [dict(REASONING_DETAIL)]
    if answer.tool_name is not None:
        message["tool_calls"] = [
            {
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": answer.tool_name, "arguments": answer.text},
            }
        ]
    body = envelope.head("chat.completion")
    body["choices"] = [
        {
            "index": 0,
            "message": message,
            "finish_reason": answer.finish_reason,
            "native_finish_reason": answer.finish_reason,
        }
    ]
    body["usage"] = envelope.usage(answer)
    return orjson.dumps(body)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPlan:
    """A whole stream as three runs of encoded events.

    Faults and stalls are placed by content position, so the writer needs to
    know where the content run starts and ends; see `Scenario`.
    """

    preamble: Sequence[bytes]
    """The role chunk and any reasoning chunks."""
    content: Sequence[bytes]
    """One event per token (or tool-argument piece)."""
    tail: Sequence[bytes]
    """The finish chunk, the usage chunk and ``[DONE]``."""


def render_stream(answer: Answer, envelope: Envelope) -> StreamPlan:
    """The events of a ``stream: true`` response."""
    if answer.tool_name is not None:
        first_delta: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": answer.tool_name, "arguments": ""},
                }
            ],
        }
        content = [
            envelope.chunk(
                choices=[
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                        "finish_reason": None,
                    }
                ]
            )
            for piece in answer.tokens
        ]
    else:
        first_delta = {"role": "assistant", "content": ""}
        content = _content_events(answer.tokens, envelope)
    preamble = [envelope.chunk(choices=[_choice(first_delta)])]
    if envelope.reasoning:
        preamble += [envelope.chunk(choices=[_choice({"reasoning": REASONING_DELTA})])] * 2
        preamble.append(
            envelope.chunk(choices=[_choice({"reasoning_details": [dict(REASONING_DETAIL)]})])
        )
    finish = {
        "index": 0,
        "delta": {},
        "finish_reason": answer.finish_reason,
        "native_finish_reason": answer.finish_reason,
    }
    tail = (
        envelope.chunk(choices=[finish]),
        envelope.chunk(choices=[], usage=envelope.usage(answer)),
        DONE_EVENT,
    )
    return StreamPlan(preamble=preamble, content=content, tail=tail)


def render_error_event(
    envelope: Envelope, code: int | str, message: str, metadata: dict[str, Any]
) -> bytes:
    """A mid-stream ``error`` event, as MyRouter sends one after the status line."""
    return envelope.chunk(
        error={"code": code, "message": message, "metadata": metadata},
        choices=[{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    )


def stamped(event: bytes, nanoseconds: int) -> bytes:
    """`event` with ``"system_fingerprint": "<nanoseconds>"`` appended to its JSON object.

    Why bytes again: the events are rendered once per response, and the stamp is
    only known right before each write. Anything but a JSON object event (``[DONE]``,
    a keepalive comment, a malformed event) is returned as it is. The events never
    carry ``system_fingerprint`` of their own, so the member is not duplicated.
    """
    if not (event.startswith(_STAMP_HEAD) and event.endswith(_STAMP_TAIL)):
        return event
    comma = b"" if event.endswith(b"{}\n\n") else b","
    return b'%s%s"%s":"%d"}\n\n' % (event[:-3], comma, STAMP_MEMBER.encode(), nanoseconds)


def _choice(delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": None}


def _content_events(tokens: Sequence[str], envelope: Envelope) -> list[bytes]:
    head = orjson.dumps(envelope.head("chat.completion.chunk"))
    prefix = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":{"content":'
    suffix = b'},"finish_reason":null}]}\n\n'
    dumps = orjson.dumps
    return [prefix + dumps(token) + suffix for token in tokens]
