"""The embedded upstream over real sockets: API, faults, timing, recording, CLI.

Its pure parts (tokens, scenario parsing) are in tests/unit/test_myrouter_upstream.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from myrouter_upstream import (
    EmbeddedUpstream,
    RecordedRequest,
    Scenario,
    UpstreamConfig,
    serve,
)

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "myrouter/echo"
CREATED = 1700000000
ROOT = Path(__file__).resolve().parents[2]
STAMP = "system_fingerprint"


# -- fixtures and helpers ---------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[EmbeddedUpstream]:
    with EmbeddedUpstream(UpstreamConfig(api_keys=frozenset({KEY, "sk-other"}))) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        server: EmbeddedUpstream = request.getfixturevalue("upstream")
        server.reset_scenario()
        server.clear()


@pytest.fixture
def client(upstream: EmbeddedUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.base_url, headers=AUTH, timeout=10) as http:
        yield http


def chat_body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def sse_blocks(raw: bytes) -> list[str]:
    """Split an event stream into its blocks (events and comments), by blank lines."""
    text = raw.decode()
    blocks = text.split("\n\n")
    assert blocks[-1] == "", f"stream does not end with a blank line: {text[-80:]!r}"
    return blocks[:-1]


def data_events(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of a stream, JSON-decoded ("[DONE]" kept as a string)."""
    events: list[Any] = []
    for block in sse_blocks(raw):
        if block.startswith(":"):
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def stream(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    response = client.post("/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200, response.text
    return response


def head(gen_id: str, model: str = MODEL) -> dict[str, Any]:
    return {
        "id": gen_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "provider": "embedded",
    }


def chunk_choice(
    delta: dict[str, Any], finish_reason: str | None = None, **members: Any
) -> dict[str, Any]:
    """The one choice of a streamed chunk, as the upstream writes it."""
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, **members}


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost": 0,
    }


def content_of(events: list[Any]) -> str:
    return "".join(
        event["choices"][0]["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict) and event.get("choices")
    )


def read_until_error(response: httpx.Response) -> tuple[bytes, Exception | None]:
    received = bytearray()
    try:
        for piece in response.iter_raw():
            received += piece
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        return bytes(received), exc
    return bytes(received), None


# -- the API -----------------------------------------------------------------------


def test_models(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    ids = [model["id"] for model in body["data"]]
    assert ids[:2] == ["myrouter/echo", "myrouter/echo-large"]
    echo = body["data"][0]
    assert echo == {
        "id": "myrouter/echo",
        "object": "model",
        "created": CREATED,
        "owned_by": "myrouter",
        "name": "Echo",
        "description": echo["description"],
        "context_length": 8192,
        "pricing": {"prompt": "0", "completion": "0"},
        "architecture": {"modality": "text->text"},
    }
    assert isinstance(echo["description"], str) and echo["description"]


def test_unary_exact_json(client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions",
        json={
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello there world"},
            ],
            "temperature": 0.5,
            "some_extension": {"x": 1},
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("gen-")
    assert body == {
        "id": body["id"],
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "provider": "embedded",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "You said: hello there world"},
                "finish_reason": "stop",
                "native_finish_reason": "stop",
            }
        ],
        "usage": usage(5, 5),
    }


def test_ids_count_up_and_everything_else_is_deterministic(client: httpx.Client) -> None:
    first = client.post("/chat/completions", json=chat_body()).json()
    second = client.post("/chat/completions", json=chat_body()).json()
    n = int(first["id"].removeprefix("gen-"))
    assert second["id"] == f"gen-{n + 1}"
    assert {**first, "id": None} == {**second, "id": None}


def test_content_parts_and_tool_result(client: httpx.Client) -> None:
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "this"},
    ]
    body = client.post(
        "/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": parts}]},
    ).json()
    assert body["choices"][0]["message"]["content"] == "You said: look at this"
    assert body["usage"]["input_tokens"] == 3

    body = client.post(
        "/chat/completions",
        json={
            "model": "myrouter/echo-large",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "call_0", "content": "sunny, 21C"},
            ],
        },
    ).json()
    assert body["model"] == "myrouter/echo-large"
    assert body["choices"][0]["message"]["content"] == "Tool result: sunny, 21C"


def test_max_tokens_gives_length(client: httpx.Client) -> None:
    body = client.post("/chat/completions", json=chat_body("one two three", max_tokens=3)).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "You said: one "
    assert choice["finish_reason"] == "length"
    assert choice["native_finish_reason"] == "length"
    assert body["usage"]["output_tokens"] == 3

    exact = client.post("/chat/completions", json=chat_body("one", max_tokens=3)).json()
    assert exact["choices"][0]["finish_reason"] == "stop"

    events = data_events(stream(client, chat_body("one two three", max_tokens=2)).content)
    assert content_of(events) == "You said: "
    assert events[-3]["choices"][0]["finish_reason"] == "length"


def test_stream_exact_event_sequence(client: httpx.Client) -> None:
    response = stream(client, chat_body("hello"))
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    blocks = sse_blocks(response.content)
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks)
    events = data_events(response.content)
    gen_id = events[0]["id"]
    h = head(gen_id)
    assert events == [
        {**h, "choices": [chunk_choice({"role": "assistant", "content": ""})]},
        {**h, "choices": [chunk_choice({"content": "You "})]},
        {**h, "choices": [chunk_choice({"content": "said: "})]},
        {**h, "choices": [chunk_choice({"content": "hello"})]},
        {**h, "choices": [chunk_choice({}, "stop", native_finish_reason="stop")]},
        {**h, "choices": [], "usage": usage(1, 3)},
        "[DONE]",
    ]
    # Compact JSON on the wire, exactly as orjson writes it.
    for block, event in zip(blocks, events, strict=False):
        if event != "[DONE]":
            assert block == "data: " + orjson.dumps(event).decode()


TOOLS = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
]


def test_tool_call_unary(client: httpx.Client) -> None:
    body = client.post("/chat/completions", json=chat_body('find "cats"', tools=TOOLS)).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["native_finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "search", "arguments": '{"query": "find \\"cats\\""}'},
        }
    ]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"query": 'find "cats"'}
    assert body["usage"]["output_tokens"] == 4

    forced = client.post(
        "/chat/completions",
        json=chat_body(
            "x", tools=TOOLS, tool_choice={"type": "function", "function": {"name": "lookup"}}
        ),
    ).json()
    assert forced["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"

    disabled = client.post(
        "/chat/completions", json=chat_body("x", tools=TOOLS, tool_choice="none")
    ).json()
    assert disabled["choices"][0]["message"] == {"role": "assistant", "content": "You said: x"}


def test_tool_call_stream(client: httpx.Client) -> None:
    events = data_events(stream(client, chat_body("what is up", tools=TOOLS)).content)
    h = head(events[0]["id"])
    first_call = {
        "index": 0,
        "id": "call_0",
        "type": "function",
        "function": {"name": "search", "arguments": ""},
    }
    assert events[0] == {
        **h,
        "choices": [
            chunk_choice({"role": "assistant", "content": None, "tool_calls": [first_call]})
        ],
    }
    pieces = events[1:-3]
    assert 2 <= len(pieces) <= 3
    arguments = ""
    for piece in pieces:
        assert piece["choices"][0]["finish_reason"] is None
        calls = piece["choices"][0]["delta"]["tool_calls"]
        assert calls[0]["index"] == 0 and set(calls[0]) == {"index", "function"}
        arguments += calls[0]["function"]["arguments"]
    assert json.loads(arguments) == {"query": "what is up"}
    assert events[-3]["choices"] == [
        chunk_choice({}, "tool_calls", native_finish_reason="tool_calls")
    ]
    assert events[-2]["usage"]["output_tokens"] == 1 + len(pieces)
    assert events[-1] == "[DONE]"


# -- auth and validation -----------------------------------------------------------


def test_auth(upstream: EmbeddedUpstream) -> None:
    url = upstream.base_url + "/chat/completions"
    missing = httpx.post(url, json=chat_body())
    assert missing.status_code == 401
    assert missing.json() == {"error": {"code": 401, "message": "No auth credentials found"}}
    basic = httpx.post(url, json=chat_body(), headers={"Authorization": "Basic abc"})
    assert basic.json()["error"]["message"] == "No auth credentials found"
    wrong = httpx.post(url, json=chat_body(), headers={"Authorization": "Bearer sk-wrong-123"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"code": 401, "message": "Invalid API key"}}
    assert "sk-wrong-123" not in wrong.text
    other = httpx.post(url, json=chat_body(), headers={"Authorization": "Bearer sk-other"})
    assert other.status_code == 200
    models = httpx.get(upstream.base_url + "/models")
    assert models.status_code == 401


def test_any_token_without_api_keys() -> None:
    with EmbeddedUpstream() as server:
        ok = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer anything"})
        assert ok.status_code == 200
        empty = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer"})
        assert empty.status_code == 401


def test_unknown_model_404(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json={**chat_body(), "model": "nope/x"})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": 404, "message": "Model 'nope/x' not found"}}


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "x"}]},
        {"model": 3, "messages": [{"role": "user", "content": "x"}]},
        {"model": MODEL},
        {"model": MODEL, "messages": []},
        {"model": MODEL, "messages": [{"content": "x"}]},
        {"model": MODEL, "messages": "hi"},
        {"model": MODEL, "messages": [{"role": "user", "content": 5}]},
        {**chat_body(), "max_tokens": 0},
        {**chat_body(), "stream": "yes"},
        {**chat_body(), "scenario": {"kind": "ok", "bogus": 1}},
        {**chat_body(), "scenario": {"kind": "explode"}},
        {**chat_body(), "scenario": {"after": 1.5}},
        {**chat_body(), "scenario": "status"},
        [1, 2],
    ],
)
def test_invalid_body_400(client: httpx.Client, body: Any) -> None:
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and isinstance(error["message"], str) and error["message"]


def test_invalid_json_400(client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_unknown_api_route_is_json_404_and_recorded(
    client: httpx.Client, upstream: EmbeddedUpstream
) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404
    assert upstream.requests()[-1].path == "/api/v1/nowhere"


# -- fault scenarios -----------------------------------------------------------------


def test_status_scenario_json_body(client: httpx.Client) -> None:
    scenario = {
        "kind": "status",
        "status": 429.0,
        "retry_after": 3.0,
        "metadata": {"provider_name": "x"},
    }
    response = client.post("/chat/completions", json=chat_body(scenario=scenario))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "code": 429,
            "message": "Rate limit exceeded",
            "metadata": {"provider_name": "x"},
        }
    }
    custom = client.post(
        "/chat/completions",
        json=chat_body(
            stream=True,
            scenario={"kind": "status", "error_code": "overloaded", "message": "busy"},
        ),
    )
    assert custom.status_code == 500
    assert "retry-after" not in custom.headers
    assert custom.json() == {"error": {"code": "overloaded", "message": "busy"}}


def test_status_scenario_raw_body(client: httpx.Client) -> None:
    scenario = {
        "kind": "status",
        "status": 502,
        "body": "<html>Bad gateway</html>",
        "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    response = client.post("/chat/completions", json=chat_body(scenario=scenario))
    assert response.status_code == 502
    assert response.text == "<html>Bad gateway</html>"
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("code", "expected"), [("rate_limited", "rate_limited"), (502.0, 502), (None, "server_error")]
)
def test_midstream_error(client: httpx.Client, code: Any, expected: Any) -> None:
    scenario: dict[str, Any] = {"kind": "midstream_error"}
    if code is not None:
        scenario["error_code"] = code
    response = stream(client, chat_body("a b c d e", scenario=scenario))
    events = data_events(response.content)
    assert "[DONE]" not in events
    assert len(events) == 1 + 2 + 1  # role chunk, two content chunks, the error
    assert content_of(events[:3]) == "You said: "
    assert events[-1] == {
        **head(events[0]["id"]),
        "error": {
            "code": expected,
            "message": "Provider disconnected",
            "metadata": {"provider_name": "embedded"},
        },
        "choices": [chunk_choice({"content": ""}, "error")],
    }


def test_midstream_error_first(client: httpx.Client) -> None:
    scenario = {"kind": "midstream_error", "after": 0, "message": "boom", "metadata": {"a": 1}}
    events = data_events(stream(client, chat_body(scenario=scenario)).content)
    assert len(events) == 1
    assert events[0]["error"] == {"code": "server_error", "message": "boom", "metadata": {"a": 1}}


def test_truncate_clean(client: httpx.Client, upstream: EmbeddedUpstream) -> None:
    response = stream(client, chat_body("a b c d e", scenario={"kind": "truncate"}))
    events = data_events(response.content)  # a complete, valid chunked body
    assert len(events) == 3
    assert events[-1]["choices"][0]["delta"] == {"content": "said: "}
    # The connection stays usable: the body ended cleanly.
    assert client.get("/models").status_code == 200
    assert upstream.requests()[-2].outcome == "completed"


def test_truncate_abort(upstream: EmbeddedUpstream) -> None:
    body = chat_body("a b c d e", stream=True, scenario={"kind": "truncate", "abort": True})
    with httpx.Client(headers=AUTH, timeout=10) as http:
        with http.stream("POST", upstream.base_url + "/chat/completions", json=body) as response:
            assert response.status_code == 200
            received, error = read_until_error(response)
    assert error is not None, "an aborted body must not read as complete"
    events = data_events(received[: received.rfind(b"\n\n") + 2])
    assert content_of(events) == "You said: "
    assert b"[DONE]" not in received


def test_truncate_unary(upstream: EmbeddedUpstream) -> None:
    body = chat_body(scenario={"kind": "truncate"})
    with httpx.Client(headers=AUTH, timeout=10) as http:
        with http.stream("POST", upstream.base_url + "/chat/completions", json=body) as response:
            assert response.status_code == 200
            received, error = read_until_error(response)
    assert error is not None
    assert 0 < len(received) < int(response.headers["content-length"])


def test_malformed(client: httpx.Client) -> None:
    response = stream(client, chat_body("a b", scenario={"kind": "malformed"}))
    blocks = sse_blocks(response.content)
    assert blocks[2] == 'data: {"id": "broken", not json'
    assert json.loads(blocks[1].removeprefix("data: "))["choices"][0]["delta"] == {
        "content": "You "
    }
    assert blocks[-1] == "data: [DONE]"
    others = [json.loads(b.removeprefix("data: ")) for b in [*blocks[:2], *blocks[3:-1]]]
    assert content_of(others) == "You said: a b"


def test_hang_then_client_timeout_is_recorded_as_disconnected(
    upstream: EmbeddedUpstream,
) -> None:
    timeout = httpx.Timeout(5.0, read=0.5)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            upstream.base_url + "/chat/completions",
            json=chat_body(scenario={"kind": "hang"}),
            headers=AUTH,
            timeout=timeout,
        )
    gave_up = time.monotonic()
    assert gave_up - started >= 0.5
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "disconnected"
    assert record.status is None
    assert record.ended_at is not None and record.ended_at - gave_up < 1.0


def test_non_sse(client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions", json=chat_body("hi", stream=True, scenario={"kind": "non_sse"})
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "You said: hi"


@pytest.mark.parametrize("streaming", [False, True])
def test_non_json(client: httpx.Client, streaming: bool) -> None:
    response = client.post(
        "/chat/completions", json=chat_body(stream=streaming, scenario={"kind": "non_json"})
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b"this is not json"


def test_oversized_unary_default_size(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat_body(scenario={"kind": "oversized"}))
    assert response.status_code == 200
    content = response.json()["choices"][0]["message"]["content"]
    assert len(content) == 10 * 1024 * 1024 and set(content) == {"x"}


def test_oversized_stream(client: httpx.Client) -> None:
    size = 3 * 1024 * 1024 + 7
    response = stream(client, chat_body(scenario={"kind": "oversized", "size": size}))
    events = data_events(response.content)
    assert len(events) == 5  # role, the one big content chunk, finish, usage, [DONE]
    assert events[1]["choices"][0]["delta"]["content"] == "x" * size
    assert max(len(block) for block in sse_blocks(response.content)) > size


def test_keepalive_comments(client: httpx.Client) -> None:
    response = stream(client, chat_body("a b c", scenario={"keepalive": 2}))
    blocks = sse_blocks(response.content)
    comment = ": MYROUTER PROCESSING"
    # Comment first, then after every 2 events (9: role, 5 tokens, finish, usage, DONE).
    kinds = ["c" if block == comment else "d" for block in blocks]
    assert "".join(kinds) == "cddcddcddcddcd"
    # Nothing follows the last event, even when it completes a group of k.
    even = sse_blocks(stream(client, chat_body("a b", scenario={"keepalive": 2})).content)
    assert even[-1] == "data: [DONE]"
    assert "".join("c" if b == comment else "d" for b in even) == "cddcddcddcdd"
    assert data_events(response.content)[-1] == "[DONE]"


@pytest.mark.parametrize("batch", [1, 7])
def test_chunks_gives_exactly_n_tokens(client: httpx.Client, batch: int) -> None:
    events = data_events(stream(client, chat_body(scenario={"chunks": 50, "batch": batch})).content)
    tokens = [event["choices"][0]["delta"]["content"] for event in events[1:-3]]
    assert tokens == [f"tok{i} " for i in range(50)]
    assert events[-2]["usage"]["output_tokens"] == 50


def test_batch_does_not_change_bytes(client: httpx.Client) -> None:
    one = stream(client, chat_body(scenario={"chunks": 30, "keepalive": 4})).content
    many = stream(client, chat_body(scenario={"chunks": 30, "keepalive": 4, "batch": 8})).content
    strip = [e for e in data_events(one) if e != "[DONE]"]
    strip_many = [e for e in data_events(many) if e != "[DONE]"]
    assert [{**e, "id": 0} for e in strip] == [{**e, "id": 0} for e in strip_many]
    assert one.count(b": MYROUTER PROCESSING") == many.count(b": MYROUTER PROCESSING")


def test_dialect_openai(client: httpx.Client) -> None:
    expected = {
        "prompt_tokens": 2,
        "completion_tokens": 4,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    scenario = {"dialect": "openai"}
    unary = client.post("/chat/completions", json=chat_body(scenario=scenario)).json()
    assert unary["usage"] == expected
    events = data_events(stream(client, chat_body(scenario=scenario)).content)
    assert events[-2]["usage"] == expected


def test_reasoning(client: httpx.Client) -> None:
    detail = {
        "type": "reasoning.text",
        "text": "Thinking about it.",
        "format": "embedded-v1",
        "index": 0,
    }
    events = data_events(stream(client, chat_body("hi", scenario={"reasoning": True})).content)
    deltas = [event["choices"][0]["delta"] for event in events[:-3]]
    assert deltas[:4] == [
        {"role": "assistant", "content": ""},
        {"reasoning": "Thinking about it. "},
        {"reasoning": "Thinking about it. "},
        {"reasoning_details": [detail]},
    ]
    assert content_of(events) == "You said: hi"
    unary = client.post("/chat/completions", json=chat_body("hi", scenario={"reasoning": True}))
    message = unary.json()["choices"][0]["message"]
    assert message["reasoning"] == "Thinking about it. Thinking about it. "
    assert message["reasoning_details"] == [detail]
    assert message["content"] == "You said: hi"


# -- timing knobs ----------------------------------------------------------------------


def test_first_byte_delay(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/chat/completions", json=chat_body(scenario={"first_byte_delay": 0.3}))
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_chunk_delay_and_stall(upstream: EmbeddedUpstream) -> None:
    body = chat_body(
        "a b", stream=True, scenario={"chunk_delay": 0.05, "stall_after": 2, "stall": 0.4}
    )
    arrivals: list[tuple[float, bytes]] = []
    with httpx.Client(headers=AUTH, timeout=10) as http:
        started = time.monotonic()
        with http.stream("POST", upstream.base_url + "/chat/completions", json=body) as response:
            for piece in response.iter_raw():
                arrivals.append((time.monotonic() - started, piece))
    raw = b"".join(piece for _, piece in arrivals)
    events = data_events(raw)
    assert content_of(events) == "You said: a b"
    # 8 events -> 7 inter-event delays of 0.05 s, plus one 0.4 s stall after "said: ".
    assert arrivals[-1][0] >= 0.35 + 0.4
    stall_gap = max(b[0] - a[0] for a, b in itertools.pairwise(arrivals))
    assert stall_gap >= 0.4


def _stamped_events(upstream: EmbeddedUpstream, scenario: dict[str, Any]) -> list[Any]:
    """The stream's events, each JSON one with its arrival time (ns) under ``"_arrived"``."""
    body = chat_body(stream=True, scenario=scenario)
    events: list[Any] = []
    with (
        httpx.Client(headers=AUTH, timeout=10) as http,
        http.stream("POST", upstream.base_url + "/chat/completions", json=body) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: {"):
                events.append({**json.loads(line[6:]), "_arrived": time.time_ns()})
            elif line.startswith("data: "):
                events.append(line[6:])
    return events


def test_rate_paces_events_on_a_schedule_and_stamp_carries_each_send_time(
    client: httpx.Client, upstream: EmbeddedUpstream
) -> None:
    started = time.time_ns()
    events = _stamped_events(upstream, {"chunks": 10, "rate": 50, "stamp": True})
    assert events[-1] == "[DONE]"
    stamped_events = events[:-1]
    assert len(stamped_events) == 13  # role, 10 tokens, finish, usage
    stamps = [int(event["system_fingerprint"]) for event in stamped_events]
    # Sent on the upstream's clock, read on ours (one machine, one clock): each stamp
    # is after the request and before its own arrival, and they go up.
    assert started <= stamps[0]
    arrived = [event["_arrived"] for event in stamped_events]
    assert all(stamp <= at for stamp, at in zip(stamps, arrived, strict=True))
    assert stamps == sorted(stamps)
    # 13 events due 20 ms apart: the last is due 240 ms after the first, and none early.
    assert stamps[-1] - stamps[0] >= 240_000_000 - 2_000_000
    assert all(b - a >= 10_000_000 for a, b in itertools.pairwise(stamps))
    # Apart from the stamp, the same events as an unpaced, unstamped stream.
    plain = data_events(stream(client, chat_body(scenario={"chunks": 10})).content)
    strip = [
        {key: value for key, value in event.items() if key not in ("_arrived", "id", STAMP)}
        for event in stamped_events
    ]
    assert strip == [{k: v for k, v in e.items() if k != "id"} for e in plain[:-1]]


def test_stamp_without_rate_and_rate_after_a_stall(upstream: EmbeddedUpstream) -> None:
    fast = _stamped_events(upstream, {"chunks": 5, "stamp": True, "batch": 3})
    assert all(STAMP in event for event in fast[:-1]) and fast[-1] == "[DONE]"
    # One write carries a whole batch, so its events share a stamp.
    assert len({event[STAMP] for event in fast[:-1]}) < len(fast) - 1
    # After a 0.3 s stall the schedule starts again: no burst of the events it skipped.
    paced = _stamped_events(
        upstream, {"chunks": 6, "rate": 20, "stamp": True, "stall_after": 2, "stall": 0.3}
    )
    stamps = [int(event[STAMP]) for event in paced[:-1]]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) >= 300_000_000  # the stall
    assert min(gaps) >= 25_000_000  # 50 ms due; no two events back to back


def test_server_chunk_delay_default() -> None:
    config = UpstreamConfig(chunk_delay=0.1)
    with EmbeddedUpstream(config) as server, httpx.Client(headers=AUTH, timeout=10) as http:
        started = time.monotonic()
        http.post(server.base_url + "/chat/completions", json=chat_body("x", stream=True))
        assert time.monotonic() - started >= 0.1 * 6  # 7 events, 6 gaps
        started = time.monotonic()
        http.post(
            server.base_url + "/chat/completions",
            json=chat_body("x", stream=True, scenario={"chunk_delay": 0}),
        )
        assert time.monotonic() - started < 0.5


# -- scenario selection and control ------------------------------------------------


def test_request_scenario_overrides_server_default(
    client: httpx.Client, upstream: EmbeddedUpstream
) -> None:
    upstream.set_scenario(Scenario(kind="status", status=503))
    assert client.post("/chat/completions", json=chat_body()).status_code == 503
    assert client.get("/models").status_code == 503
    override = client.post("/chat/completions", json=chat_body(scenario={"kind": "ok"}))
    assert override.status_code == 200
    assert upstream.reset_scenario() == Scenario()
    assert client.post("/chat/completions", json=chat_body()).status_code == 200


def test_control_scenario_endpoints(client: httpx.Client, upstream: EmbeddedUpstream) -> None:
    root = upstream.root_url
    assert httpx.get(root + "/_control/scenario").json() == {"scenario": {}}
    posted = httpx.post(root + "/_control/scenario", json={"kind": "non_json", "batch": 2.0})
    assert posted.status_code == 200
    assert posted.json() == {"scenario": {"kind": "non_json", "batch": 2}}
    assert upstream.scenario == Scenario(kind="non_json", batch=2)
    assert client.post("/chat/completions", json=chat_body()).content == b"this is not json"
    bad = httpx.post(root + "/_control/scenario", json={"kindd": "ok"})
    assert bad.status_code == 400
    assert "kindd" in bad.json()["error"]["message"]
    assert httpx.post(root + "/_control/scenario", content=b"nope").status_code == 400
    reset = httpx.delete(root + "/_control/scenario")
    assert reset.json() == {"scenario": {}}
    assert client.post("/chat/completions", json=chat_body()).status_code == 200
    assert all(r.path.startswith("/api/v1/") for r in upstream.requests())


def test_configured_default_scenario_is_what_delete_restores() -> None:
    default = Scenario(kind="status", status=503)
    with EmbeddedUpstream(UpstreamConfig(default_scenario=default)) as server:
        root = server.root_url
        httpx.post(root + "/_control/scenario", json={"kind": "ok"})
        assert httpx.get(server.base_url + "/models", headers=AUTH).status_code == 200
        assert httpx.delete(root + "/_control/scenario").json() == {
            "scenario": {"kind": "status", "status": 503}
        }
        assert httpx.get(server.base_url + "/models", headers=AUTH).status_code == 503


def test_control_requests_endpoint(client: httpx.Client, upstream: EmbeddedUpstream) -> None:
    client.post("/chat/completions", json=chat_body("recorded"))
    listed = httpx.get(upstream.root_url + "/_control/requests").json()["requests"]
    assert len(listed) == 1
    entry = listed[0]
    assert entry["method"] == "POST" and entry["path"] == "/api/v1/chat/completions"
    assert entry["headers"]["authorization"] == "[redacted]"
    assert KEY not in json.dumps(listed)
    assert entry["body"]["messages"][0]["content"] == "recorded"
    assert entry["outcome"] == "completed" and entry["status"] == 200
    assert entry["ended_at"] >= entry["started_at"]
    assert httpx.delete(upstream.root_url + "/_control/requests").status_code == 200
    assert upstream.requests() == []


# -- recording -------------------------------------------------------------------------


def test_recording_headers_and_body(client: httpx.Client, upstream: EmbeddedUpstream) -> None:
    body = chat_body("hi", user="u-1", seed=7, scenario={"kind": "ok"})
    client.post("/chat/completions", json=body, headers={"X-Request-Id": "req-42"})
    (record,) = upstream.requests()
    assert isinstance(record, RecordedRequest)
    assert record.method == "POST"
    assert record.path == "/api/v1/chat/completions"
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert record.headers["x-request-id"] == "req-42"
    assert record.headers["content-type"] == "application/json"
    assert record.body == body
    assert record.outcome == "completed" and record.status == 200
    assert record.ended_at is not None and record.ended_at >= record.started_at
    # Snapshots are copies.
    record.headers.clear()
    assert upstream.requests()[0].headers["x-request-id"] == "req-42"
    assert upstream.requests()[0].seq == record.seq


def test_record_is_finished_once_the_answer_was_read(
    client: httpx.Client, upstream: EmbeddedUpstream
) -> None:
    scenarios: list[dict[str, Any]] = [
        {},
        {"kind": "midstream_error"},
        {"kind": "truncate"},
        {"kind": "status", "status": 503},
        {"chunks": 300, "batch": 5},
    ]
    for round_ in range(10):
        for scenario in scenarios:
            streaming = round_ % 2 == 0
            if scenario.get("kind") == "truncate" and not streaming:
                continue  # a unary truncate drops the connection
            upstream.clear()
            client.post("/chat/completions", json=chat_body(stream=streaming, scenario=scenario))
            (record,) = upstream.requests()  # no waiting
            assert record.outcome == "completed", (scenario, streaming)
            assert record.ended_at is not None


def test_recording_client_disconnect_mid_stream(upstream: EmbeddedUpstream) -> None:
    body = chat_body(stream=True, scenario={"chunks": 1000, "chunk_delay": 0.02})
    with httpx.Client(headers=AUTH, timeout=10) as http:
        with http.stream("POST", upstream.base_url + "/chat/completions", json=body) as response:
            seen = b""
            for piece in response.iter_raw():
                seen += piece
                if seen.count(b"\n\n") >= 3:
                    break
        closed_at = time.monotonic()
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "disconnected"
    assert record.status == 200
    assert record.ended_at is not None and record.ended_at - closed_at < 1.0


def test_stall_forever_then_disconnect(upstream: EmbeddedUpstream) -> None:
    body = chat_body(stream=True, scenario={"stall_after": 1, "stall": 1e9})
    with pytest.raises(httpx.ReadTimeout):
        with httpx.Client(headers=AUTH, timeout=httpx.Timeout(5, read=0.3)) as http:
            with http.stream("POST", upstream.base_url + "/chat/completions", json=body) as r:
                for _ in r.iter_raw():
                    pass
    record = upstream.wait_for(lambda r: r.ended_at is not None, timeout=5)
    assert record.outcome == "disconnected"


def test_wait_for_times_out(upstream: EmbeddedUpstream) -> None:
    with pytest.raises(TimeoutError):
        upstream.wait_for(lambda r: False, timeout=0.1)


def test_wait_for_sees_a_later_request(upstream: EmbeddedUpstream) -> None:
    def later() -> None:
        time.sleep(0.2)
        httpx.get(upstream.base_url + "/models", headers=AUTH)

    thread = threading.Thread(target=later)
    thread.start()
    # The predicate may read the upstream itself (it runs outside the recorder's lock).
    record = upstream.wait_for(
        lambda r: r.path.endswith("/models") and len(upstream.requests()) >= 1, timeout=5
    )
    thread.join()
    assert record.method == "GET"


# -- lifecycle and CLI ---------------------------------------------------------------


def test_start_fails_on_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = EmbeddedUpstream(UpstreamConfig(port=port))
        with pytest.raises(OSError, match="in use"):
            server.start()
        server.stop()


def test_stop_with_request_in_flight_is_quick() -> None:
    server = EmbeddedUpstream().start()
    assert server.base_url == f"http://127.0.0.1:{server.port}/api/v1"
    with pytest.raises(httpx.HTTPError):
        httpx.post(
            server.base_url + "/chat/completions",
            json=chat_body(scenario={"kind": "hang"}),
            headers=AUTH,
            timeout=0.2,
        )
    started = time.monotonic()
    server.stop()
    server.stop()
    assert time.monotonic() - started < 5


def test_serve_in_a_running_loop() -> None:
    async def scenario() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        ports: list[int] = []
        task = asyncio.create_task(serve(UpstreamConfig(), ready, stop, on_listening=ports.append))
        await asyncio.wait_for(ready.wait(), 10)
        async with httpx.AsyncClient(headers=AUTH) as http:
            url = f"http://127.0.0.1:{ports[0]}/api/v1/chat/completions"
            response = await http.post(url, json=chat_body("async"))
        assert response.json()["choices"][0]["message"]["content"] == "You said: async"
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


def test_cli_subprocess() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        [sys.executable, "-m", "myrouter_upstream", "--port", "0", "--api-key", "k1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        prefix = "embedded upstream listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.endswith("/api/v1"), line
        base_url = line.removeprefix("embedded upstream listening on ")
        response = httpx.get(base_url + "/models", headers={"Authorization": "Bearer k1"})
        assert response.status_code == 200
        assert response.json()["data"][0]["id"] == MODEL
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_bad_scenario() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "myrouter_upstream", "--port", "0", "--scenario", "{"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "embedded upstream" in result.stderr


def test_demo_runs_end_to_end_as_make_demo_runs_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "myrouter_upstream.demo"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "You said: Explain in one breath" in result.stdout
    assert "myrouter/echo" in result.stdout
    assert "both processes stopped" in result.stdout
