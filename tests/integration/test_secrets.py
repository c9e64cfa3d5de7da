"""No credential ever reaches a log line, a status message or error details.

One run of a real bridge process at DEBUG (every logger, httpx and httpcore
included), with a known service key and a known caller token, through
successes and every kind of failure; all its output, everything its callers
were told and its metrics page are captured and searched.
"""

from __future__ import annotations

import signal

import grpc
import httpx
import pytest

from myrouter.chat.v1 import chat_pb2
from support import (
    CALLER_TOKEN,
    SERVICE_KEY,
    chat_request,
    details_of,
    free_port,
    stub_for,
    with_scenario,
)

pytestmark = pytest.mark.timeout(60)

WRONG_TOKEN = "wrong-token-7f3a9c1e5b"
SECRETS = (CALLER_TOKEN, SERVICE_KEY, WRONG_TOKEN)


def _texts_of(error: grpc.RpcError) -> str:
    """Everything a failed call tells its caller, as one text."""
    parts = [error.details() or ""]
    parts += [f"{key}={value!r}" for key, value in (error.trailing_metadata() or ())]
    for detail in details_of(error).values():
        parts.append(str(detail))
    return "\n".join(parts)


def _exercise(target: str) -> list[str]:
    """Successes and failures with each credential; returns what callers were told."""
    told: list[str] = []
    bare = (("authorization", CALLER_TOKEN),)
    bearer = (("authorization", f"Bearer {CALLER_TOKEN}"),)
    wrong = (("authorization", f"Bearer {WRONG_TOKEN}"),)
    quoting = f"Incorrect API key provided: {CALLER_TOKEN}. Bearer {CALLER_TOKEN}"
    channel, stub = stub_for(target)
    with channel:
        assert list(stub.StreamChatCompletion(chat_request("hi"), metadata=bare))
        assert stub.CreateChatCompletion(chat_request("hi"), metadata=bearer).choices
        assert stub.CreateChatCompletion(chat_request("service key")).choices
        assert stub.ListModels(chat_pb2.ListModelsRequest(), metadata=bare).data
        failing = [
            (stub.CreateChatCompletion, chat_request(), wrong),
            (stub.CreateChatCompletion, chat_request(), None),  # the service key's own path
            (
                stub.CreateChatCompletion,
                with_scenario(chat_request(), kind="status", status=401, message=quoting),
                bearer,
            ),
            (
                stub.CreateChatCompletion,
                with_scenario(
                    chat_request(),
                    kind="status",
                    status=400,
                    message=quoting,
                    metadata={"echo": quoting},
                ),
                bearer,
            ),
            (
                stub.StreamChatCompletion,
                with_scenario(
                    chat_request("a b"), kind="midstream_error", after=1, message=quoting
                ),
                bare,
            ),
            (
                stub.StreamChatCompletion,
                with_scenario(chat_request(), kind="status", status=502, body=quoting),
                bare,
            ),
            (stub.StreamChatCompletion, with_scenario(chat_request(), kind="malformed"), bare),
        ]
        for method, request, metadata in failing:
            if metadata is None:  # the service key rejected: ask the upstream to say 401
                request = with_scenario(request, kind="status", status=401, message=quoting)
            try:
                result = method(request, metadata=metadata)
                if not hasattr(result, "choices"):
                    list(result)
            except grpc.RpcError as exc:
                told.append(_texts_of(exc))
            else:
                pytest.fail(f"expected a failure for {request}")
    return told


def test_no_secret_in_any_output_of_a_process_at_debug_level(start_bridge_process):
    metrics_port = free_port()
    process = start_bridge_process(
        "--metrics-listen", f"127.0.0.1:{metrics_port}", log_level="DEBUG"
    )
    told = _exercise(process.target)
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    assert "bridge_rpcs_total" in metrics
    told.append(metrics)
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    output = process.output()
    assert "DEBUG" in output  # the capture really was at DEBUG level
    assert "failed" in output  # and it logged the failures
    for secret in SECRETS:
        assert secret not in output
        for text in told:
            assert secret not in text
    assert len(told) == 8  # 7 failed calls and the metrics page


def test_no_secret_in_connection_failure_logs_and_status(start_bridge_process):
    # userinfo in the URL is the classic way a credential ends up in an exception text
    url = f"http://user:{SERVICE_KEY}@127.0.0.1:{free_port()}/api/v1"
    process = start_bridge_process(upstream_url=url, log_level="DEBUG")
    channel, stub = stub_for(process.target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.CreateChatCompletion(
            chat_request(), metadata=(("authorization", f"Bearer {CALLER_TOKEN}"),)
        )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    output = process.output()
    for secret in SECRETS:
        assert secret not in output
        assert secret not in _texts_of(caught.value)
