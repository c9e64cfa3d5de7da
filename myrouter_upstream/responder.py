"""Putting an answer on the wire, with the timing and faults a scenario asks for.

This is the only module that writes to sockets. It works at the level of
`aiohttp.web.StreamResponse` (status line, then body writes) so that it can
control exactly when bytes leave: delay the status line, stall between two
events, end a chunked body early, or drop the TCP connection mid-body.

Why the stream writer has a plain fast path: benchmarks push tens of thousands
of events through one stream with no delay, so in that mode each event costs
one ``StreamResponse.write`` call (or one per ``batch`` events) and nothing else.
Paced streams (``rate``) are the benchmark's other shape: thousands of them at
once, each on a schedule, so each event costs one timer and one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from .answers import (
    KEEPALIVE_COMMENT,
    MALFORMED_EVENT,
    NOT_JSON_BODY,
    Envelope,
    StreamPlan,
    build_answer,
    render_completion,
    render_error_event,
    render_stream,
    stamped,
)
from .chat_request import ChatRequest
from .errors import default_message, error_body
from .models import models_body
from .recording import RecordedRequest
from .scenario import Scenario
from .state import UpstreamState

__all__ = ["JSON", "Exchange", "respond_chat", "respond_models"]

JSON: Final = "application/json"
_SSE_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
    }
)
_STREAM_FAULTS: Final = frozenset({"midstream_error", "truncate", "malformed"})
_DRAIN_LIMIT: Final = 5.0
"""Longest wait, in seconds, for written bytes to leave before an abort."""


@dataclasses.dataclass(slots=True)
class Exchange:
    """One API request in flight: its aiohttp request, its record, its response once begun."""

    request: web.Request
    state: UpstreamState
    record: RecordedRequest
    body: Any
    body_is_json: bool
    response: web.StreamResponse | None = None
    provisional: bool = False
    """True while the writes that end the response are under way (see `completing`)."""
    scenario: Scenario | None = None
    """The scenario answering, for what applies to every response (cookie, compression)."""

    async def begin(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        content_length: int | None = None,
    ) -> web.StreamResponse:
        """Send the status line and headers now; chunked unless a length is given."""
        response = web.StreamResponse(status=status, headers=headers)
        if content_length is None:
            response.enable_chunked_encoding()
        else:
            response.content_length = content_length
        return await self._prepare(response)

    async def send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """A whole response at once (status line and body leave in one write)."""
        response = web.Response(
            status=status, body=body, headers={"Content-Type": content_type, **(headers or {})}
        )
        await self._prepare(response)
        self.completing()
        await response.write_eof()
        self.completed()
        return response

    async def _prepare(self, response: web.StreamResponse) -> web.StreamResponse:
        self.response = response
        scenario = self.scenario
        if scenario is not None:
            if scenario.set_cookie is not None:
                response.headers.add("Set-Cookie", scenario.set_cookie)
            if scenario.compress:
                response.enable_compression()  # only if the request's Accept-Encoding allows
        self.state.recorder.set_status(self.record, response.status)
        await response.prepare(self.request)
        return response

    def completing(self) -> None:
        """Stamp "completed" just before the bytes that end the response are written.

        Why before: a client that has read the whole answer must find the record
        finished, not race the server thread for it. If those last writes then
        fail, the middleware replaces the stamp with "disconnected".
        """
        self.state.recorder.finish(self.record, "completed")
        self.provisional = True

    def completed(self) -> None:
        """The writes that end the response were handed to the transport."""
        self.provisional = False

    def ended_by_script(self) -> None:
        """Stamp "completed" for good before a scripted connection close.

        The close cancels the handler (aiohttp's handler cancellation); the
        scenario ran to its end all the same.
        """
        self.state.recorder.finish(self.record, "completed")
        self.provisional = False


async def respond_models(exchange: Exchange, scenario: Scenario) -> web.StreamResponse:
    """``GET /models``; honours the timing and the whole-response faults of `scenario`."""
    exchange.scenario = scenario
    early = await _whole_response_fault(exchange, scenario)
    if early is not None:
        return early
    return await exchange.send(200, models_body(), JSON)


async def respond_chat(
    exchange: Exchange, request: ChatRequest, scenario: Scenario
) -> web.StreamResponse:
    """``POST /chat/completions`` for a validated `request` under `scenario`."""
    exchange.scenario = scenario
    envelope = Envelope(
        gen_id=exchange.state.next_gen_id(),
        model=request.model,
        dialect=scenario.dialect,
        reasoning=scenario.reasoning,
    )
    early = await _whole_response_fault(exchange, scenario)
    if early is not None:
        return early
    answer = build_answer(request, scenario)
    if request.stream and scenario.kind != "non_sse":
        return await _stream(exchange, render_stream(answer, envelope), envelope, scenario)
    return await _unary(exchange, render_completion(answer, envelope), scenario)


async def _whole_response_fault(
    exchange: Exchange, scenario: Scenario
) -> web.StreamResponse | None:
    """Apply ``first_byte_delay``, then answer for the kinds that replace the response."""
    if scenario.first_byte_delay > 0:
        await asyncio.sleep(scenario.first_byte_delay)
    if scenario.kind == "hang":
        await asyncio.get_running_loop().create_future()  # until the client goes away
    if scenario.kind == "status":
        return await _send_status(exchange, scenario)
    if scenario.kind == "non_json":
        return await exchange.send(200, NOT_JSON_BODY, JSON)
    return None


async def _send_status(exchange: Exchange, scenario: Scenario) -> web.StreamResponse:
    headers = {} if scenario.retry_after is None else {"Retry-After": scenario.retry_after}
    if scenario.body is not None:
        content_type = scenario.content_type or "text/html; charset=utf-8"
        return await exchange.send(scenario.status, scenario.body.encode(), content_type, headers)
    body = error_body(
        scenario.status if scenario.error_code is None else scenario.error_code,
        scenario.message or default_message(scenario.status),
        scenario.metadata,
    )
    return await exchange.send(scenario.status, body, JSON, headers)


async def _unary(exchange: Exchange, body: bytes, scenario: Scenario) -> web.StreamResponse:
    """A JSON body; ``truncate`` cuts it in half, ``stall`` holds it after the headers."""
    stall_after = scenario.effective_stall_after
    if scenario.kind != "truncate" and stall_after is None:
        return await exchange.send(200, body, JSON)
    response = await exchange.begin(200, {"Content-Type": JSON}, content_length=len(body))
    if stall_after is not None:
        await asyncio.sleep(scenario.stall)
    if scenario.kind == "truncate":
        # A Content-Length body cannot end early cleanly: send half, then close.
        await response.write(body[: len(body) // 2])
        await _close_connection(exchange, abort=scenario.abort)
        return response
    exchange.completing()
    await response.write(body)
    await response.write_eof()
    exchange.completed()
    return response


async def _stream(
    exchange: Exchange, plan: StreamPlan, envelope: Envelope, scenario: Scenario
) -> web.StreamResponse:
    """Server-sent events, with the stall and the fault placed by content position."""
    delay = scenario.chunk_delay
    if delay is None:
        # A schedule replaces the server's default gap (a scenario cannot give both).
        delay = 0.0 if scenario.rate is not None else exchange.state.config.chunk_delay
    response = await exchange.begin(200, _SSE_HEADERS)
    writer = _EventWriter(
        response,
        delay=delay,
        batch=scenario.batch,
        keepalive=scenario.keepalive,
        rate=scenario.rate,
        stamp=scenario.stamp,
    )

    content = plan.content
    actions: list[tuple[int, int, str]] = []
    stall_after = scenario.effective_stall_after
    if stall_after is not None:
        actions.append((min(stall_after, len(content)), 0, "stall"))
    if scenario.kind in _STREAM_FAULTS:
        actions.append((min(scenario.effective_after, len(content)), 1, scenario.kind))
    actions.sort()

    cursor = 0
    preamble_sent = False
    for position, _, action in actions:
        if position > 0 and not preamble_sent:
            await writer.events(plan.preamble)
            preamble_sent = True
        await writer.events(content[cursor:position])
        cursor = position
        if action == "stall":
            await writer.flush()
            await asyncio.sleep(scenario.stall)
            writer.restart_schedule()
        elif action == "malformed":
            await writer.event(MALFORMED_EVENT)
        elif action == "midstream_error":
            await writer.final_event(_error_event(envelope, scenario), exchange.completing)
            await response.write_eof()
            exchange.completed()
            return response
        else:  # truncate
            await writer.flush()
            if scenario.abort:
                await _close_connection(exchange, abort=True)
            else:
                exchange.completing()
                await response.write_eof()
                exchange.completed()
            return response
    if not preamble_sent:
        await writer.events(plan.preamble)
    await writer.events(content[cursor:])
    await writer.events(plan.tail[:-1])
    await writer.final_event(plan.tail[-1], exchange.completing)
    await response.write_eof()
    exchange.completed()
    return response


def _error_event(envelope: Envelope, scenario: Scenario) -> bytes:
    metadata = (
        {"provider_name": "embedded"} if scenario.metadata is None else dict(scenario.metadata)
    )
    return render_error_event(
        envelope,
        "server_error" if scenario.error_code is None else scenario.error_code,
        scenario.message or "Provider disconnected",
        metadata,
    )


class _EventWriter:
    """Writes ``data:`` events with the delay or rate, keepalive comments, batching and
    stamps asked for."""

    __slots__ = (
        "_batch",
        "_delay",
        "_due",
        "_interval",
        "_keepalive",
        "_pending",
        "_response",
        "_sent",
        "_stamp",
        "_unflushed",
    )

    def __init__(
        self,
        response: web.StreamResponse,
        *,
        delay: float,
        batch: int,
        keepalive: int | None,
        rate: float | None = None,
        stamp: bool = False,
    ) -> None:
        self._response = response
        self._delay = delay
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._due: float | None = None
        """Loop time the next event is due at (a rate only); None: due now, the
        schedule starts with it."""
        self._stamp = stamp
        # Batching only makes sense without delays.
        self._batch = batch if delay == 0 and rate is None else 1
        self._keepalive = keepalive
        self._pending: list[bytes] = [] if keepalive is None else [KEEPALIVE_COMMENT]
        self._sent = 0
        self._unflushed = 0

    def restart_schedule(self) -> None:
        """After a stall: the next event is due now, not all those the stall skipped."""
        self._due = None

    async def event(self, data: bytes) -> None:
        await self._pause()
        self._add(data)
        if self._unflushed >= self._batch:
            await self.flush()

    async def final_event(self, data: bytes, stamp: Callable[[], None]) -> None:
        """The event that ends the stream: `stamp` runs after any delay, right before it leaves."""
        await self._pause()
        stamp()
        self._add(data, final=True)
        await self.flush()

    async def _pause(self) -> None:
        if self._interval:
            await self.flush()
            now = asyncio.get_running_loop().time()
            if self._due is None:
                self._due = now
            elif self._due > now:
                await asyncio.sleep(self._due - now)
            self._due += self._interval
        elif self._delay > 0 and self._sent > 0:
            await self.flush()
            await asyncio.sleep(self._delay)

    def _add(self, data: bytes, *, final: bool = False) -> None:
        self._pending.append(data)
        self._sent += 1
        if not final and self._keepalive is not None and self._sent % self._keepalive == 0:
            self._pending.append(KEEPALIVE_COMMENT)
        self._unflushed += 1

    async def events(self, events: Sequence[bytes]) -> None:
        if (
            self._batch == 1
            and self._delay == 0
            and not self._interval
            and not self._stamp
            and self._keepalive is None
            and not self._pending
        ):
            write = self._response.write  # the benchmark path: one write per event
            for data in events:
                await write(data)
            self._sent += len(events)
            return
        for data in events:
            await self.event(data)

    async def flush(self) -> None:
        if self._pending:
            if self._stamp:
                now = time.time_ns()
                self._pending[:] = [stamped(data, now) for data in self._pending]
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._unflushed = 0
            await self._response.write(data)


async def _close_connection(exchange: Exchange, *, abort: bool) -> None:
    """End the TCP connection mid-body: FIN after the written bytes, or (abort) RST.

    Before a reset, wait until the written bytes have left this host, because a
    reset discards whatever the kernel still holds, and the client is meant to
    see the chunks sent before the fault.
    """
    exchange.ended_by_script()
    transport = exchange.request.transport
    if transport is None:
        return
    if not abort:
        transport.close()  # flushes what is buffered, then sends FIN
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DRAIN_LIMIT
    sock = transport.get_extra_info("socket")
    while loop.time() < deadline:
        if transport.get_write_buffer_size() == 0 and _unsent_bytes(sock) == 0:
            break
        await asyncio.sleep(0.001)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _unsent_bytes(sock: Any) -> int:
    """Bytes the kernel has not yet sent (Linux ``SIOCOUTQ``); 0 where unknown."""
    if sock is None or not sys.platform.startswith("linux"):
        return 0
    import fcntl
    import termios

    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])
