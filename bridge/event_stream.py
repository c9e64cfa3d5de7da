"""A streamed answer, read by one loop that owns every rule of how a stream goes and ends.

Like openai-python's ``AsyncStream.__stream__``, one generator (`EventStream._reads`)
holds every rule, and both streaming RPCs consume it:

* the framing: the answer must be ``text/event-stream`` and end with ``[DONE]``,
  so a cut stream can never pass for a finished one;
* the sizes: an event, finished or not, is within max_event_bytes;
* the ends: ``[DONE]`` ends it well; a body that ends first, or a transport
  failure (`bridge.failures`), raises, always after the events that came before.

What it yields is the data of the events, a list per network read (or per
``max_delay``, for the batched RPC). Iterating the stream turns each into its
JSON object as it is next (`_judge`: an object, and an ``error`` object raises
as `UpstreamReportedError` carrying the event, so a stream which already relayed
chunks can relay the error chunk too); `batches` does the same a list at a time.
The answer's status was judged before (`bridge.upstream`), as httpx-sse leaves
HTTP errors to its caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from .config import BridgeConfig
from .errors import BridgeError, UpstreamProtocolError, UpstreamTooLarge, UpstreamUnavailable
from .failures import (
    READING_STREAM,
    body_error,
    error_object,
    reported_error,
    transport_failure,
)
from .retries import StreamCut
from .sse import DONE, SSEDecoder
from .transport import BodyReads, body_reads
from .upstream_call import UpstreamCall
from .whole_answer import error_body

__all__ = ["DRAIN_AFTER_DONE_SECONDS", "EventStream"]

DRAIN_AFTER_DONE_SECONDS = 0.25
"""After [DONE], how long to wait for the body's end so the connection can be reused."""


class EventStream:
    """One streamed upstream answer as parsed JSON objects, each rule of the protocol checked.

    ``async for event in stream`` gets each event's object, up to ``[DONE]``;
    `batches` gets them a list at a time; any other end raises. The response is
    closed on every path by `aclose` (or ``async with``), so a caller that
    leaves early never leaves an upstream generation running. A stream is
    iterated one way only, once.
    """

    __slots__ = ("_call", "_config", "_events", "_primed", "_response", "_unfinished")

    def __init__(self, response: httpx.Response, call: UpstreamCall, config: BridgeConfig) -> None:
        self._response = response
        self._call = call
        self._config = config
        self._events: AsyncGenerator[Any, None] | None = None
        self._unfinished = 0  # bytes read since the last complete event (see `_read`)
        self._primed: _Primed | None = None

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the response: a fully read body frees its connection, a cut one drops it."""
        if self._events is not None:
            await self._events.aclose()
        if self._primed is not None:  # primed, and never iterated
            await self._primed[0].aclose()
        await self._response.aclose()

    async def prime(self) -> None:
        """Read up to the first complete event, or an end, before anyone iterates: what it
        read is kept, and `_reads` yields it first, so the one reader stays one.

        Raises what the stream's start would raise when iterated: a first event that
        is an ``error`` object, or, as `retries.StreamCut`, a stream that ended or broke
        before any event, so that `bridge.retries` can try again while the caller
        has seen nothing. A first event that is not an error is not parsed here.
        """
        await self._check_content_type()
        body = body_reads(self._response)
        decoder = SSEDecoder()
        data: list[bytes] = []
        end: BridgeError | bytes | None = None
        self._primed = (body, decoder, data, end)
        while not data and end is None:
            data, end = await self._read(body, decoder)
            self._primed = (body, decoder, data, end)
        if data:
            if b'"error"' in data[0]:  # a cheap look before the parse: errors are rare
                self._judge(data[0])
        elif isinstance(end, (UpstreamUnavailable, UpstreamProtocolError)) and not isinstance(
            end, UpstreamTooLarge
        ):
            raise StreamCut(end)

    def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]:
        if self._events is None:
            self._events = self._each()
        return self._events

    def batches(self, max_delay: float = 0.0) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The same events as a list per network read, or with `max_delay` (seconds) > 0,
        per the reads within that long after a list's first event; an end never waits.

        For a relay whose cost is per write rather than per event. The events
        before an end are delivered first, then the end raises (or, for
        ``[DONE]``, the iteration stops), as when iterating the stream.
        """
        if self._events is None:
            self._events = self._batches(max_delay)
        return self._events

    async def _each(self) -> AsyncGenerator[dict[str, Any], None]:
        """The events one by one, each parsed only when it is next: a read may hold hundreds
        of events when the caller is slow, and parsing them at once would keep them all."""
        judge = self._judge
        async for data in self._reads(0.0):
            for raw in data:
                event = judge(raw)
                yield event
                # An open stream mostly waits for its next read: keep nothing of the
                # event the caller already holds (the service drops its copy too).
                del event

    async def _batches(self, max_delay: float) -> AsyncGenerator[list[dict[str, Any]], None]:
        judge = self._judge
        async for data in self._reads(max_delay):
            events: list[dict[str, Any]] = []
            try:
                for raw in data:
                    events.append(judge(raw))
            except BridgeError:
                if events:  # the events before an invalid one go first
                    yield events
                raise
            yield events

    async def _reads(self, max_delay: float) -> AsyncGenerator[list[bytes], None]:
        """The one reader: the data of the events each read completes (never an empty list),
        up to ``[DONE]``; every other end raises once what came before it is yielded.

        With `max_delay` > 0 a list keeps gathering reads until that long after
        its first event: one ``asyncio.timeout`` around them, which cancels a
        read still waiting when it expires (`BodyReads` loses nothing that way).
        """
        read = self._read
        primed = self._primed
        if primed is None:
            await self._check_content_type()
            body = body_reads(self._response)
            decoder = SSEDecoder()
        else:
            body, decoder, data, end = primed
            self._primed = None
        try:
            if primed is None:
                data, end = await read(body, decoder)
            while True:
                if max_delay > 0 and data and end is None:
                    try:
                        async with asyncio.timeout(max_delay):
                            while end is None:
                                more, end = await read(body, decoder)
                                data += more
                    except TimeoutError:  # only the wait's own: a read raises none
                        pass
                if data:
                    yield data
                if isinstance(end, BridgeError):
                    raise end
                if end is DONE:
                    await _drain(body)
                    return
                data, end = await read(body, decoder)
        finally:
            await body.aclose()

    async def _read(
        self, body: BodyReads, decoder: SSEDecoder
    ) -> tuple[list[bytes], BridgeError | bytes | None]:
        """The next read's complete events before any end, and that end: None (none yet),
        `DONE`, or the exception a cut, failed or oversized read calls for."""
        try:
            raw = await body.read()
        except httpx.TransportError as exc:
            return [], transport_failure(exc, READING_STREAM, self._config)
        if not raw:
            return [], _truncated()
        data = decoder.feed_data(raw)
        limit = self._config.max_event_bytes
        if not data:
            self._unfinished += len(raw)
            if self._unfinished > limit:
                return [], _event_too_large(limit)
            return data, None
        self._unfinished = 0  # an event ended: the decoder holds at most this read's tail
        end: bytes | None = None
        if DONE in data:
            data = data[: data.index(DONE)]
            end = DONE
        if data and max(map(len, data)) > limit:
            return data[: _first_over(data, limit)], _event_too_large(limit)
        return data, end

    async def _check_content_type(self) -> None:
        """Refuse an answer that is not a stream of events before reading any event: a JSON
        error object in its place is the upstream's report, anything else a broken stream."""
        content_type = self._response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return
        error = body_error(await error_body(self._response, self._config))
        if error:
            raise reported_error(error, None, self._call)
        raise UpstreamProtocolError(
            f"the upstream answered a stream request with {content_type or 'no content type'}, "
            "not text/event-stream",
            reason="UPSTREAM_NOT_AN_EVENT_STREAM",
        )

    def _judge(self, data: bytes) -> dict[str, Any]:
        """One event's JSON object; raise if it is not an object, or if it is an ``error``."""
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
            raise reported_error(error_object(error), event, self._call)
        return event


_Primed = tuple[BodyReads, SSEDecoder, list[bytes], BridgeError | bytes | None]
"""What `EventStream.prime` read: the body, its decoder, the first read's events and end."""


def _first_over(data: list[bytes], limit: int) -> int:
    return next(index for index, each in enumerate(data) if len(each) > limit)


def _truncated() -> UpstreamProtocolError:
    return UpstreamProtocolError(
        "the upstream stream ended before [DONE]", reason="UPSTREAM_STREAM_TRUNCATED"
    )


def _event_too_large(limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(
        f"the upstream sent a stream event larger than the {limit}-byte limit",
        reason="UPSTREAM_EVENT_TOO_LARGE",
    )


async def _drain(body: BodyReads) -> None:
    """Read what follows [DONE] (normally just the body's end) so the connection is reusable."""
    try:
        async with asyncio.timeout(DRAIN_AFTER_DONE_SECONDS):
            while await body.read():
                pass
    except (TimeoutError, httpx.HTTPError):
        pass  # the response is closed by aclose, which drops the connection
