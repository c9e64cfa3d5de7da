"""The servicer's one error path: whatever fails, the record carries the caller's status.

A stand-in context plays grpc.aio's: `abort` records the code and raises
AbortError as grpc's does, or (to play a failure of abort itself) raises
something else; the observer's metrics then say which status was recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from bridge.access import Access
from bridge.admission import Admission
from bridge.config import BridgeConfig
from bridge.errors import UpstreamHTTPError
from bridge.metrics import Metrics
from bridge.observe import Observer
from bridge.service import RpcScope, TooLarge, Undecodable, requested_model
from myrouter.chat.v1 import chat_pb2


class Context:
    def __init__(self, *, abort_fails: bool = False) -> None:
        self._code: grpc.StatusCode | None = None
        self._abort_fails = abort_fails

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", "r1"),)

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def cancelled(self) -> bool:
        return False

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        if self._abort_fails:
            raise RuntimeError("abort itself failed")
        self._code = code
        raise grpc.aio.AbortError()


def run(context: Context, failure: BaseException | None, request: object = None) -> Metrics:
    metrics = Metrics()
    scope = RpcScope(
        Admission(max_calls=4, shutdown_grace=1),
        Access.from_config(BridgeConfig()),
        Observer(metrics),
        context,
        "M",
        request,
    )

    async def body() -> None:
        async with scope:
            if failure is not None:
                raise failure

    with pytest.raises((grpc.aio.AbortError, RuntimeError)):  # abort's, or its own failure
        asyncio.run(body())
    return metrics


def counted(metrics: Metrics, code: str) -> float:
    value = metrics.registry.get_sample_value("bridge_rpcs_total", {"method": "M", "code": code})
    return value or 0.0


def test_an_error_is_recorded_with_the_code_the_caller_got():
    metrics = run(Context(), UpstreamHTTPError(429, "slow down", retry_after=1e300))
    assert counted(metrics, "RESOURCE_EXHAUSTED") == 1
    assert counted(metrics, "OK") == 0


def test_an_error_whose_abort_fails_is_recorded_unknown_never_ok():
    metrics = run(Context(abort_fails=True), UpstreamHTTPError(429, "slow down"))
    assert counted(metrics, "UNKNOWN") == 1  # what grpc answers for an escaping exception
    assert counted(metrics, "OK") == 0


def test_an_undecodable_request_is_refused_on_entry():
    metrics = run(Context(), None, Undecodable("myrouter.chat.v1.ChatCompletionRequest"))
    assert counted(metrics, "INVALID_ARGUMENT") == 1


def test_a_too_large_request_is_refused_on_entry_as_resource_exhausted():
    metrics = run(Context(), None, TooLarge("myrouter.chat.v1.ChatCompletionRequest", 2048, 1024))
    assert counted(metrics, "RESOURCE_EXHAUSTED") == 1
    assert counted(metrics, "INVALID_ARGUMENT") == 0


@pytest.mark.parametrize(
    ("request_message", "model"),
    [
        (chat_pb2.ChatCompletionRequest(model="m/a"), "m/a"),
        (
            chat_pb2.StreamChatCompletionBatchesRequest(
                request=chat_pb2.ChatCompletionRequest(model="m/b")
            ),
            "m/b",
        ),
        (chat_pb2.ListModelsRequest(), ""),
        (Undecodable("myrouter.chat.v1.StreamChatCompletionBatchesRequest"), ""),
        (None, ""),
    ],
)
def test_the_recorded_model_is_the_one_the_request_names(request_message, model):
    assert requested_model(request_message) == model
    scope = RpcScope(
        Admission(max_calls=4, shutdown_grace=1),
        Access.from_config(BridgeConfig()),
        Observer(Metrics()),
        Context(),
        "M",
        request_message,
    )
    assert scope.record.model == model
