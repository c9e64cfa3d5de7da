"""Server-sent-events decoding, byte-exact to the WHATWG "event stream interpretation".

Why bytes, not str: upstream ``data`` payloads are JSON that callers hand straight
to ``orjson.loads``, which accepts bytes. Decoding every chunk to str only to
encode it back would cost a copy per event, and decoding a read that ends inside
a multi-byte character needs an incremental decoder. On bytes neither problem
exists: the only line ends SSE knows (CR, LF, CRLF) are ASCII, and ASCII bytes
never occur inside a UTF-8 sequence, so cutting at them can never split a
character. ``bytes.splitlines`` splits on exactly CR, LF and CRLF (unlike
``str.splitlines``, which also splits on U+2028, U+0085, form feed and so on,
none of which end an SSE line).

Why this shape: the decoder sits on the hot path of a streaming relay, so the
per-byte work is done by C-level bytes methods (``rfind``, ``split``,
``splitlines``, ``startswith``) and Python only loops once per *line*, with the
overwhelmingly common ``data:`` line and blank line handled first, inline. A read
without any CR takes a plain ``split(b"\\n")``. The unterminated tail of a read is
kept as a list of pieces and joined only once its line ends, so one very long
line delivered in many small reads costs linear, not quadratic, time.

What the relay reads: each event's ``data``, exactly as WHATWG defines it
(`SSEDecoder.feed_data`). `SSEDecoder.feed` is the whole interpretation, event
types included (`ServerSentEvent`): the relay never reads it, the conformance
tests do, and they hold ``feed_data`` to it (both share the line and field
handling). The ``id`` and ``retry`` fields and comment lines (keep-alives such
as ``: OPENROUTER PROCESSING``) are recognised and skipped: they only serve a
client that reconnects and resumes a stream, and the bridge never resumes one
(a cut stream fails the call).

The decoder does no I/O and holds no locks: feed it reads, get events back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["DONE", "SSEDecoder", "ServerSentEvent"]

DONE = b"[DONE]"
"""The payload OpenAI-compatible APIs send as the last event of a stream."""

_BOM = b"\xef\xbb\xbf"

T = TypeVar("T")


class ServerSentEvent:
    """One dispatched event.

    ``data`` stays raw UTF-8 bytes (see the module docstring); ``event`` is short,
    so it is decoded (invalid UTF-8 becomes U+FFFD, as a browser's decoder would
    do). A plain slotted class rather than a dataclass: it is created tens of
    thousands of times a second and this keeps construction to one small call.
    """

    __slots__ = ("data", "event")

    event: str
    data: bytes

    def __init__(self, event: str = "message", data: bytes = b"") -> None:
        self.event = event
        self.data = data

    # Defining __eq__ leaves the class unhashable, which is right for a mutable object.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return self.event == other.event and self.data == other.data

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data!r})"


class SSEDecoder:
    """Incremental decoder: ``feed`` each network read, collect the events it completes.

    Reads may be split at any byte. Three pieces of state bridge the gaps between
    reads: the unterminated tail line (``_tail``), a flag saying the last read
    ended with CR (so an LF opening the next read belongs to the same CRLF), and
    the first bytes of the stream while they could still be the start of a BOM.
    """

    __slots__ = ("_bom_head", "_data", "_event", "_pending_cr", "_tail")

    def __init__(self) -> None:
        self._tail: list[bytes] = []
        self._pending_cr = False
        self._bom_head: bytes | None = b""  # None once the BOM question is settled
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Feed the next network read (any size, split anywhere); return the events it ends."""
        return self._process(self._lines(chunk), self._dispatch)

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """`feed`, returning only each event's ``data``: what the relay reads. No object
        per event: a slow caller can leave hundreds of events of one read waiting, and
        the garbage collector tracks every `ServerSentEvent`, never a bytes object
        (BENCHMARKS.md)."""
        return self._process(self._lines(chunk), self._dispatch_data)

    def _lines(self, chunk: bytes) -> list[bytes]:
        """The lines this read completes, with the tail of earlier reads before them."""
        if self._bom_head is not None:
            chunk = self._strip_bom(self._bom_head, chunk)
        if self._pending_cr and chunk:
            self._pending_cr = False
            if chunk[0] == 0x0A:  # the LF of a CRLF split across reads
                chunk = chunk[1:]
        lf = chunk.rfind(b"\n")
        cr = chunk.rfind(b"\r")
        if lf < 0 and cr < 0:
            if chunk:
                self._tail.append(chunk)
            return []
        if cr < 0:  # fast path: LF-only read, the LF itself is dropped
            return self._take(chunk[:lf], chunk[lf + 1 :]).split(b"\n")
        end = (lf if lf > cr else cr) + 1
        self._pending_cr = end == len(chunk) and cr > lf
        return self._take(chunk[:end], chunk[end:]).splitlines()

    def _strip_bom(self, head: bytes, chunk: bytes) -> bytes:
        """Remove a BOM from the very start of the stream, even one split across reads."""
        chunk = head + chunk
        if len(chunk) < 3 and _BOM.startswith(chunk):
            self._bom_head = chunk  # still undecided: wait for more bytes
            return b""
        self._bom_head = None
        return chunk[3:] if chunk.startswith(_BOM) else chunk

    def _take(self, head: bytes, rest: bytes) -> bytes:
        """Return the buffered tail joined with ``head``; keep ``rest`` as the new tail."""
        tail = self._tail
        if tail:
            tail.append(head)
            head = b"".join(tail)
            tail.clear()
        if rest:
            tail.append(rest)
        return head

    def _process(self, lines: list[bytes], dispatch: Callable[[], T]) -> list[T]:
        """Interpret complete lines; the two common kinds (data, blank) are handled inline."""
        out: list[T] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b" ", 5) else line[5:])
            elif not line:
                if data:
                    out.append(dispatch())
                else:
                    self._event = b""
            else:
                self._field(line)
        return out

    def _dispatch(self) -> ServerSentEvent:
        data = self._data
        payload = b"\n".join(data)  # WHATWG: the buffer without its final LF
        data.clear()
        event = self._event.decode("utf-8", "replace") if self._event else "message"
        self._event = b""
        return ServerSentEvent(event, payload)

    def _dispatch_data(self) -> bytes:
        data = self._data
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        data.clear()
        self._event = b""
        return payload

    def _field(self, line: bytes) -> None:
        """Handle any non-blank line other than a ``data:`` one (the slow path).

        Comments, ``id``, ``retry`` and unknown fields change nothing we keep.
        """
        colon = line.find(b":")
        if colon == 0:
            return
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 2 :] if line.startswith(b" ", colon + 1) else line[colon + 1 :]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
