"""The upstream's answers, judged in one place: an HTTP response in, parsed JSON events out.

Like openai-python's ``AsyncStream`` and httpx-sse's ``EventSource``, one
adapter (`EventStream`) owns every rule of what a valid answer is, for both
kinds of call, and its callers only ever see dicts:

* the status: anything but 200 becomes `UpstreamHTTPError` (or
  `ServiceKeyRejected`), from the error object of a bounded error body;
* the framing: a stream must be ``text/event-stream`` and end with ``[DONE]``,
  so a cut stream can never pass for a finished one;
* the sizes: every event and every whole body has a configured cap;
* the JSON: each event, and each whole body, must be a JSON object;
* the in-band ``error`` object, which it raises itself as
  `UpstreamReportedError` carrying the event, so that a stream which already
  relayed chunks can relay the error chunk too before it ends.

The error object is normalised here once (a string, or any other value, is its
message), and httpx's transport exceptions become the bridge's here once
(`transport_failure`, for sending as well as for reading).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from .config import BridgeConfig
from .errors import (
    BridgeError,
    ServiceKeyRejected,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamReportedError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnavailable,
    parse_retry_after,
)
from .redaction import redact
from .sse import DONE, SSEDecoder
from .transport import BodyReads, body_reads, raw_reads
from .upstream_call import UpstreamCall

__all__ = [
    "READING_BODY",
    "READING_STREAM",
    "SENDING",
    "EventStream",
    "TransportFailures",
    "error_object",
    "transport_failure",
]

log = logging.getLogger("bridge.events")

DRAIN_AFTER_DONE_SECONDS = 0.25
"""After [DONE], how long to wait for the body's end so the connection can be reused."""
MAX_ERROR_BODY_BYTES = 64 * 1024

FailureRules = Mapping[type[httpx.TransportError], tuple[type[BridgeError], str]]
"""httpx exception class -> (bridge exception class, message template).

Templates may name ``{kind}`` (the httpx class's name), ``{detail}`` (its text,
credentials redacted) and ``{config}`` (the BridgeConfig)."""

SENDING: FailureRules = {
    httpx.ConnectTimeout: (
        UpstreamUnavailable,
        "could not connect to the upstream within {config.connect_timeout:g} s",
    ),
    httpx.TimeoutException: (UpstreamTimeout, "the upstream did not answer in time"),
    httpx.TransportError: (UpstreamUnavailable, "could not reach the upstream ({kind}: {detail})"),
}
"""While sending the request and waiting for the response's head."""

READING_BODY: FailureRules = {
    httpx.TimeoutException: (UpstreamTimeout, "the upstream did not finish its answer in time"),
    httpx.TransportError: (
        UpstreamUnavailable,
        "the upstream connection broke while reading its answer ({kind})",
    ),
}
"""While reading a whole body (a unary answer, a model list, an error body)."""

READING_STREAM: FailureRules = {
    httpx.TimeoutException: (
        UpstreamTimeout,
        "the upstream stream was silent for {config.stream_idle_timeout:g} s",
    ),
    httpx.TransportError: (
        UpstreamUnavailable,
        "the upstream connection broke mid-stream ({kind})",
    ),
}
"""While reading a stream's events: the read timeout is the idle timeout."""


def transport_failure(
    exc: httpx.TransportError,
    rules: FailureRules,
    config: BridgeConfig,
    call: UpstreamCall | None = None,
) -> BridgeError:
    """The bridge's exception for an httpx transport failure, by one of the tables above.

    The most specific class the table names wins: the exception's MRO is walked
    up to the first class in `rules`, so a table's order never matters (as in
    httpx's own ``map_httpcore_exceptions``). Every table names
    ``httpx.TransportError`` itself, so every failure finds a rule. `call`, when
    given, is whose credentials to redact from the exception's text.
    """
    for cls in type(exc).__mro__:
        rule = rules.get(cls)
        if rule is not None:
            error, template = rule
            detail = str(exc) if call is None else redact(str(exc), call.secrets())
            return error(template.format(kind=type(exc).__name__, detail=detail, config=config))
    raise AssertionError(f"no rule for httpx.TransportError in {rules}")  # pragma: no cover


class TransportFailures:
    """Turns the httpx transport exception raised inside into the bridge's (`transport_failure`).

    Anything else passes untouched. A slotted class rather than a
    ``contextmanager`` generator, created per request, never kept by a stream.
    """

    __slots__ = ("_call", "_config", "_rules")

    def __init__(
        self, rules: FailureRules, config: BridgeConfig, call: UpstreamCall | None = None
    ) -> None:
        self._rules = rules
        self._config = config
        self._call = call

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, httpx.TransportError):
            raise transport_failure(exc, self._rules, self._config, self._call) from None


class EventStream:
    """One upstream response as parsed JSON objects, each rule of the protocol checked.

    A stream request iterates it (``async for event in stream``) and gets each
    event's object, up to ``[DONE]``; any other end raises. A unary request
    awaits `completion` or `json` for the whole body as one object. Either way
    the response is closed on every path: by `json` itself, by `aclose` (or
    ``async with``) for a stream, so a caller that leaves early never leaves an
    upstream generation running.
    """

    __slots__ = ("_call", "_config", "_events", "_response", "_unfinished")

    def __init__(self, response: httpx.Response, call: UpstreamCall, config: BridgeConfig) -> None:
        self._response = response
        self._call = call
        self._config = config
        self._events: AsyncGenerator[Any, None] | None = None
        self._unfinished = 0  # bytes read since the last complete event (see `_complete`)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the response: a fully read body frees its connection, a cut one drops it."""
        if self._events is not None:
            await self._events.aclose()
        await self._response.aclose()

    def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        if self._events is None:
            self._events = self._stream()
        return self._events

    def batches(self, max_delay: float = 0.0) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The same events, as a list per network read: what one read completed, in order.

        For a relay whose cost is per write rather than per event, with the same
        rules and ends as iterating the stream: the events before an end are
        delivered, then ``[DONE]`` ends the iteration and anything else raises.
        With `max_delay` (seconds) > 0, a list keeps gathering reads until that
        long after its first event arrived; an end never waits for it. A stream
        is iterated one way only, once.
        """
        if self._events is None:
            self._events = self._batches(max_delay)
        return self._events

    async def _stream(self) -> AsyncGenerator[dict[str, Any], None]:
        """The events of a server-sent-event answer, one by one: the per-event hot path.

        Each event is parsed only when it is next: a read may hold hundreds of
        events when the caller is slow, and parsing them all at once would keep
        hundreds of dicts per stream alive (measured: 2.5x the objects, and
        3x the garbage collector's time, at 256 streams).
        """
        await self._check_stream()
        decoder = SSEDecoder()
        raw_chunks = raw_reads(self._response)
        complete = self._complete
        judge = self._judge
        # A bare ``except``, not `TransportFailures`: a ``with`` block would keep its
        # manager and bound __exit__ (120 bytes) for the stream's whole life.
        try:
            async for raw in raw_chunks:
                for data in complete(decoder, raw):
                    if data == DONE:
                        await _drain(raw_chunks)
                        return
                    event = judge(data)
                    yield event
                    # An open stream mostly waits for its next read: keep nothing of the
                    # event the caller already holds (the service drops its copy too).
                    del event
        except httpx.TransportError as exc:
            raise transport_failure(exc, READING_STREAM, self._config) from None
        raise _truncated()

    async def _batches(self, max_delay: float) -> AsyncGenerator[list[dict[str, Any]], None]:
        """`batches`: each list is one read's events, or with a wait the reads within it.

        The wait is one ``asyncio.timeout`` around the reads of a list, which
        cancels a read still waiting when it expires: `BodyReads` loses nothing
        that way, so a wait costs one timer per list, nothing per read. Every
        end leaves at once, with the events that came before it.
        """
        await self._check_stream()
        body = body_reads(self._response)
        decoder = SSEDecoder()
        pending: list[dict[str, Any]] = []
        try:
            while True:
                end = await self._read_into(pending, body, decoder)
                if max_delay > 0 and pending and end is False:
                    try:
                        async with asyncio.timeout(max_delay):
                            while end is False:
                                end = await self._read_into(pending, body, decoder)
                    except TimeoutError:  # only the wait's own: reads raise httpx's
                        pass
                if pending:
                    yield pending
                    pending = []
                if end is True:
                    await _drain(_each_read(body))
                    return
                if end:
                    raise end
        finally:
            await body.aclose()

    async def _read_into(
        self, out: list[dict[str, Any]], body: BodyReads, decoder: SSEDecoder
    ) -> BridgeError | bool:
        """Append the objects of the events the next read completes to `out`; its end.

        False: no end yet; True: ``[DONE]``; or the exception the read's end calls
        for (a cut stream, a failed read, an oversized, invalid or ``error``
        event), which the caller raises once it has delivered what came before.
        """
        try:
            raw = await body.read()
        except httpx.TransportError as exc:
            return transport_failure(exc, READING_STREAM, self._config)
        if not raw:
            return _truncated()
        try:
            sse_events = self._complete(decoder, raw)
        except BridgeError as too_large:
            return too_large
        return self._parse(sse_events, out)

    def _complete(self, decoder: SSEDecoder, raw: bytes) -> list[bytes]:
        """The data of the events `raw` completes; raise once an unfinished event outgrows
        max_event_bytes (the bytes read since the last event are what the decoder holds)."""
        sse_events = decoder.feed_data(raw)
        if sse_events:
            self._unfinished = 0
        else:
            self._unfinished += len(raw)
            if self._unfinished > self._config.max_event_bytes:
                raise _event_too_large(self._config.max_event_bytes)
        return sse_events

    async def _check_stream(self) -> None:
        """Refuse an answer that is not a stream of events before reading any event."""
        response = self._response
        if response.status_code != 200:
            raise await self._http_error()
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise await self._not_an_event_stream(content_type)

    def _parse(self, sse_events: list[bytes], out: list[dict[str, Any]]) -> BridgeError | bool:
        """Append the object of each event to `out`, up to an end; return that end.

        False: no end in these events; True: ``[DONE]``; or the exception an
        oversized, invalid or ``error`` event calls for, which the caller raises
        once it has delivered the events before it.
        """
        judge = self._judge
        append = out.append
        try:
            for data in sse_events:
                if data == DONE:
                    return True
                append(judge(data))
        except BridgeError as failure:
            return failure
        return False

    def _judge(self, data: bytes) -> dict[str, Any]:
        """One event's JSON object; raise if it is oversized, not an object, or an ``error``."""
        max_event = self._config.max_event_bytes
        if len(data) > max_event:
            raise _event_too_large(max_event)
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            event = None
        if type(event) is not dict:
            raise UpstreamProtocolError(
                "the upstream sent a stream event that is not a JSON object",
                reason="UPSTREAM_MALFORMED_EVENT",
            )
        error = event.get("error")
        if error is not None:
            raise self._reported_error(error_object(error), event)
        return event

    async def completion(self) -> dict[str, Any]:
        """A chat completion: `json`, and an ``error`` object without choices raises."""
        answer = await self.json()
        error = answer.get("error")
        if error is not None and not answer.get("choices"):
            raise self._reported_error(error_object(error), answer)
        return answer

    async def json(self) -> dict[str, Any]:
        """The whole body, which must be one JSON object within max_response_bytes."""
        response = self._response
        try:
            if response.status_code != 200:
                raise await self._http_error()
            body = await self._read_body(self._config.max_response_bytes)
        finally:
            await response.aclose()
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                "the upstream answered 200 with a body that is not JSON",
                reason="UPSTREAM_MALFORMED_BODY",
            ) from None
        if type(parsed) is not dict:
            raise UpstreamProtocolError(
                "the upstream answered 200 with JSON that is not an object",
                reason="UPSTREAM_MALFORMED_BODY",
            )
        return parsed

    async def _read_body(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        with TransportFailures(READING_BODY, self._config):
            try:
                async for part in self._response.aiter_bytes():
                    size += len(part)
                    if size > limit:
                        raise UpstreamTooLarge(
                            f"the upstream's answer exceeds the {limit}-byte limit",
                            reason="UPSTREAM_RESPONSE_TOO_LARGE",
                        )
                    parts.append(part)
            except httpx.DecodingError:  # not a TransportError: the bytes came, but not as said
                raise UpstreamProtocolError(
                    "the upstream's answer does not decode as its Content-Encoding says",
                    reason="UPSTREAM_MALFORMED_BODY",
                ) from None
        return b"".join(parts)

    async def _error_body(self) -> tuple[bytes, dict[str, Any]]:
        """A failed answer's body (empty if too big to be an error object) and its error."""
        try:
            body = await self._read_body(MAX_ERROR_BODY_BYTES)
        except UpstreamProtocolError:
            body = b""
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if type(parsed) is dict else None
        return body, {} if error is None else error_object(error)

    async def _http_error(self) -> BridgeError:
        status = self._response.status_code
        call = self._call
        body, error = await self._error_body()
        message = _message_of(error, body) or f"the upstream answered HTTP {status}"
        if status == 404 and not error:
            message = _wrong_path_message(self._response.request)
        message = redact(message, call.secrets())
        if status in (401, 403) and call.using_service_key:
            return ServiceKeyRejected(
                f"the upstream refused the bridge's service key (HTTP {status}); "
                "the operator must check MYROUTER_API_KEY or --api-key-file",
                metadata={"http_status": str(status)},
            )
        return UpstreamHTTPError(
            status,
            message,
            upstream_code=error.get("code"),
            retry_after=parse_retry_after(self._response.headers.get("retry-after")),
            metadata=_error_metadata(error, call),
        )

    async def _not_an_event_stream(self, content_type: str) -> BridgeError:
        _body, error = await self._error_body()
        if error:
            return self._reported_error(error, None)
        return UpstreamProtocolError(
            f"the upstream answered a stream request with {content_type or 'no content type'}, "
            "not text/event-stream",
            reason="UPSTREAM_NOT_AN_EVENT_STREAM",
        )

    def _reported_error(
        self, error: Mapping[str, Any], event: Mapping[str, Any] | None
    ) -> UpstreamReportedError:
        """The exception for an `error` object the upstream put in a 200 answer."""
        call = self._call
        message = _message_of(error, b"") or "the upstream reported an error"
        code = error.get("code")
        return UpstreamReportedError(
            code if isinstance(code, (int, str)) and not isinstance(code, bool) else None,
            redact(message, call.secrets()),
            metadata=_error_metadata(error, call),
            event=event,
        )


def _wrong_path_message(request: httpx.Request) -> str:
    """A 404 that is no error object of the API: the URL is wrong, not the model. Logged too,
    since only the operator (its --upstream-url, base path included) can put it right."""
    message = (
        f"the upstream answered HTTP 404, not an API error, to {request.method} {request.url}: "
        "a wrong base path? check --upstream-url (MYROUTER_BASE_URL)"
    )
    log.warning("%s", message)
    return message


def error_object(error: object) -> dict[str, Any]:
    """An answer's ``error`` member as an object: a string, or any other value, is its message."""
    return error if type(error) is dict else {"message": str(error)}


def _truncated() -> UpstreamProtocolError:
    return UpstreamProtocolError(
        "the upstream stream ended before [DONE]", reason="UPSTREAM_STREAM_TRUNCATED"
    )


def _event_too_large(limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(
        f"the upstream sent a stream event larger than the {limit}-byte limit",
        reason="UPSTREAM_EVENT_TOO_LARGE",
    )


async def _drain(raw_chunks: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE] (normally just the body's end) so the connection is reusable."""
    try:
        async with asyncio.timeout(DRAIN_AFTER_DONE_SECONDS):
            async for _ in raw_chunks:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass  # the response is closed by aclose, which drops the connection


async def _each_read(body: BodyReads) -> AsyncGenerator[bytes, None]:
    while raw := await body.read():
        yield raw


def _message_of(error: Mapping[str, Any], body: bytes) -> str:
    message = error.get("message")
    if isinstance(message, str) and message:
        return message
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:300] if text else ""


def _error_metadata(error: Mapping[str, Any], call: UpstreamCall) -> dict[str, str]:
    """ErrorInfo metadata (strings only) from the upstream's error object."""
    out: dict[str, str] = {}
    metadata = error.get("metadata")
    if isinstance(metadata, dict) and metadata:
        text = orjson.dumps(metadata).decode()
        out["upstream_metadata"] = redact(text[:2000], call.secrets())
        provider = metadata.get("provider_name")
        if isinstance(provider, str):
            out["provider_name"] = provider
    error_type = error.get("type")
    if isinstance(error_type, str):
        out["type"] = error_type
    return out
