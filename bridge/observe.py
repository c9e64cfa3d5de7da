"""What the bridge records about each RPC: one metrics update and one log line.

The service fills an `RpcRecord` while it works (plain attribute writes: a
stream adds one to `chunks` per chunk it relays) and hands it to
`Observer.finish` when the call ends, whatever way it ends. That is the only
place metrics and the per-RPC log line are produced, so the hot path stays a
few attribute writes per call. Token counts are taken from the decoded message
the caller receives (`RpcRecord.answered`), so a metric can never count other
tokens than the caller was told of.

A chat RPC is also described once as a `GenAiCall` (the OpenTelemetry GenAI
conventions' view of it), which the Prometheus registry and, when configured,
OpenTelemetry's meter and the RPC's server span all read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai

from myrouter.chat.v1 import chat_pb2

from .errors import BridgeError, UpstreamError
from .metrics import CALL_LABELS, GenAiCall, Metrics, token_counts
from .otel import Telemetry

__all__ = ["GENAI_OPERATIONS", "PROVIDER_NAME", "Observer", "RpcRecord"]

PROVIDER_NAME = "myrouter"
"""`gen_ai.provider.name`: the API the bridge calls, as the conventions allow a provider
they do not list to name itself (its models may come from many providers)."""

GENAI_OPERATIONS: Mapping[str, str] = {
    method: gen_ai.GenAiOperationNameValues.CHAT.value
    for method in ("CreateChatCompletion", "StreamChatCompletion", "StreamChatCompletionBatches")
}
"""`gen_ai.operation.name` of each RPC that is a GenAI operation (ListModels is none)."""

_NO_LABELS: Mapping[str, str] = {}

log = logging.getLogger("bridge.rpc")


class RpcRecord:
    """One RPC as it happens; times are `time.perf_counter` readings."""

    __slots__ = (
        "answering_model",
        "attempts",
        "caller",
        "cancelled",
        "chunks",
        "error",
        "first_chunk_at",
        "labels",
        "method",
        "model",
        "request_id",
        "started_at",
        "tokens",
        "upstream_at",
    )

    def __init__(self, method: str, request_id: str, model: str) -> None:
        self.method = method
        self.request_id = request_id
        self.model = model
        self.started_at = time.perf_counter()
        self.upstream_at: float | None = None
        self.first_chunk_at: float | None = None
        self.chunks = 0
        self.tokens: dict[str, int] | None = None
        self.answering_model = ""
        self.error: BaseException | None = None
        self.cancelled = False
        self.labels = _NO_LABELS
        """`CALL_LABELS`' values for this call (a missing one is "")."""
        self.caller = ""
        """The caller's identity (`bridge.access`), for the log line; "" before it is known."""
        self.attempts: Sequence[tuple[str, str]] = ()
        """(model, outcome) of the upstream attempts, when bridge.retries made several."""

    def answered(self, message: chat_pb2.ChatCompletion | chat_pb2.ChatCompletionChunk) -> None:
        """Take the token counts, and the model that answered, from a message with usage.

        Counts, not the Usage message itself: that would keep its whole chunk
        alive for the rest of the stream.
        """
        self.tokens = token_counts(message.usage)
        self.answering_model = message.model


class Observer:
    """Publishes finished RPCs to the metrics and the log."""

    def __init__(self, metrics: Metrics, telemetry: Telemetry | None = None) -> None:
        self.metrics = metrics
        self.telemetry = telemetry
        """OpenTelemetry's share (GenAI span attributes and histograms); None when off."""

    def start(self, method: str, request_id: str, model: str = "") -> RpcRecord:
        self.metrics.started(method)
        return RpcRecord(method, request_id, model)

    def finish(self, record: RpcRecord, code: grpc.StatusCode | None) -> None:
        """Record the end of an RPC; `code` is the status it ended with (None: OK)."""
        now = time.perf_counter()
        status = (code or grpc.StatusCode.OK).name
        duration = now - record.started_at
        upstream = None if record.upstream_at is None else now - record.upstream_at
        first = None if record.first_chunk_at is None else record.first_chunk_at - record.started_at
        tokens = record.tokens or {}
        labels = tuple(record.labels.get(name, "") for name in CALL_LABELS)
        operation = GENAI_OPERATIONS.get(record.method)
        genai = None
        if operation is not None:
            genai = _genai_call(record, operation, code, labels, duration, first, tokens)
            if self.telemetry is not None:
                self.telemetry.publish(genai, tokens)
        metrics = self.metrics
        metrics.finished(
            record.method,
            status,
            duration=duration,
            upstream_latency=upstream,
            first_chunk=first,
            chunks=record.chunks,
            tokens=tokens,
            model=record.answering_model or record.model,
            labels=labels,
            genai=genai,
        )
        error = record.error
        if isinstance(error, UpstreamError):
            metrics.upstream_error(error.metadata.get("http_status", ""), error.reason)
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, Any] = {
                "method": record.method,
                "model": record.model,
                "status": status,
                "duration_ms": round(duration * 1000, 1),
                "request_id": record.request_id,
            }
            if record.caller:
                fields["caller"] = record.caller
            if first is not None:
                fields["ttfc_ms"] = round(first * 1000, 1)
            if record.chunks:
                fields["chunks"] = record.chunks
            if tokens:
                fields["tokens"] = tokens
            if len(record.attempts) > 1:
                fields["attempts"] = [
                    {"model": model, "outcome": outcome} for model, outcome in record.attempts
                ]
            if isinstance(error, BridgeError):
                fields["reason"] = error.reason
                fields["error"] = error.message
            elif error is not None:
                fields["error"] = type(error).__name__
            log.info("%s %s", record.method, status, extra=fields)


def _genai_call(
    record: RpcRecord,
    operation: str,
    code: grpc.StatusCode | None,
    labels: tuple[str, ...],
    duration: float,
    first: float | None,
    tokens: Mapping[str, int],
) -> GenAiCall:
    """The GenAI conventions' view of a finished chat RPC.

    Time to first token and per output token are the conventions' "for successful
    responses" only, and need a stream: the first chunk stands for the first token.
    """
    ok = code is None or code == grpc.StatusCode.OK
    output = tokens.get("output", 0)
    per_token = None
    if ok and first is not None and output > 1:
        per_token = (duration - first) / (output - 1)
    attributes = {
        gen_ai.GEN_AI_OPERATION_NAME: operation,
        gen_ai.GEN_AI_PROVIDER_NAME: PROVIDER_NAME,
        gen_ai.GEN_AI_REQUEST_MODEL: record.model,
        gen_ai.GEN_AI_RESPONSE_MODEL: record.answering_model,
        **dict(zip(CALL_LABELS, labels, strict=True)),
    }
    return GenAiCall(
        attributes=attributes,
        error_type="" if ok or code is None else code.name,
        duration=duration,
        first_token=first if ok else None,
        per_output_token=per_token,
        tokens={kind: tokens[kind] for kind in _GENAI_TOKEN_TYPES if kind in tokens},
    )


_GENAI_TOKEN_TYPES = (
    gen_ai.GenAiTokenTypeValues.INPUT.value,
    gen_ai.GenAiTokenTypeValues.OUTPUT.value,
)
"""`gen_ai.token.type` values; they are also the names of our own kinds for these counts."""
