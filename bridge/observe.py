"""What the bridge records about each RPC: one metrics update and one log line.

The service fills an `RpcRecord` while it works (plain attribute writes: a
stream adds one to `chunks` per chunk it relays) and hands it to
`Observer.finish` when the call ends, whatever way it ends. That is the only
place metrics and the per-RPC log line are produced, so the hot path stays a
few attribute writes per call. Token counts are taken from the decoded message
the caller receives (`RpcRecord.answered`), so a metric can never count other
tokens than the caller was told of.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import grpc

from myrouter.chat.v1 import chat_pb2

from .errors import BridgeError, UpstreamError
from .metrics import Metrics, token_counts

__all__ = ["Observer", "RpcRecord"]

log = logging.getLogger("bridge.rpc")


class RpcRecord:
    """One RPC as it happens; times are `time.perf_counter` readings."""

    __slots__ = (
        "answering_model",
        "attempts",
        "cancelled",
        "chunks",
        "error",
        "first_chunk_at",
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

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

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
