"""Tests for bridge.sse: the WHATWG event-stream rules one by one, a realistic
OpenRouter-style stream fed split in every possible way, and property tests
(structured event lists, and a differential test against a literal transcription
of the WHATWG algorithm) fed with random split points."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sse import DONE, ServerSentEvent, SSEDecoder

BOM = b"\xef\xbb\xbf"
SSE = ServerSentEvent


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    """Feed `chunks` to a fresh decoder; return every event."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def feed_all(decoder: SSEDecoder, chunks: Iterable[bytes]) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def split_at(stream: bytes, points: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


# --- ServerSentEvent and module constant ------------------------------------


def test_event_defaults() -> None:
    event = SSE()
    assert (event.event, event.data) == ("message", b"")


def test_event_equality_and_repr() -> None:
    assert SSE("a", b"x") == SSE(event="a", data=b"x")
    assert SSE("a", b"x") != SSE("a", b"y")
    assert SSE("a", b"x") != SSE("b", b"x")
    assert SSE(data=b"x") != SSE(data=b"y")
    assert SSE(event="a") != SSE()
    assert SSE() != "message"
    assert repr(SSE("a", b"x")) == "ServerSentEvent(event='a', data=b'x')"


def test_event_has_slots_and_is_unhashable() -> None:
    event = SSE()
    with pytest.raises(AttributeError):
        event.other = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(event)


def test_done_constant() -> None:
    assert DONE == b"[DONE]"
    assert decode(b"data: [DONE]\n\n")[0].data == DONE


# --- line ends ----------------------------------------------------------------

ANY_EOL = pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])


@ANY_EOL
def test_each_line_end(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert decode(stream) == [SSE(data=b"a\nb"), SSE(data=b"c")]


def test_mixed_line_ends() -> None:
    stream = b"event: x\r\ndata: a\rdata: b\n\r\ndata: c\r\r" + b"data: d\n\n"
    assert decode(stream) == [SSE("x", b"a\nb"), SSE(data=b"c"), SSE(data=b"d")]


def test_crlf_is_one_line_end_not_two() -> None:
    # If CR and LF were two line ends, the LF would be a blank line dispatching "a".
    assert decode(b"data: a\r\ndata: b\r\n\r\n") == [SSE(data=b"a\nb")]


def test_cr_then_lf_across_feeds_is_one_line_end() -> None:
    assert decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSE(data=b"a\nb")]


def test_cr_then_lf_across_feeds_with_empty_feed_between() -> None:
    assert decode(b"data: a\r", b"", b"\ndata: b\n\n") == [SSE(data=b"a\nb")]


def test_cr_at_end_of_feed_then_other_byte() -> None:
    assert decode(b"data: a\r", b"data: b\r", b"\r") == [SSE(data=b"a\nb")]


def test_cr_at_end_of_feed_then_cr_is_blank_line() -> None:
    assert decode(b"data: a\r", b"\r", b"data: b\r\r") == [SSE(data=b"a"), SSE(data=b"b")]


def test_lf_after_pending_cr_is_consumed_only_once() -> None:
    # CR | LF LF: the first LF completes the CRLF, the second is a blank line.
    assert decode(b"data: a\r", b"\n\n") == [SSE(data=b"a")]


def test_bytes_splitlines_splits_only_on_cr_lf_crlf() -> None:
    # The decoder relies on this; str.splitlines would split on all of these.
    others = b"a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\xc2\x85h\xe2\x80\xa8i\xe2\x80\xa9j"
    assert (others + b"\r\nk\rl\nm").splitlines() == [others, b"k", b"l", b"m"]
    assert len(others.decode("utf-8", "replace").splitlines()) > 1


@ANY_EOL
def test_unicode_line_separators_are_not_line_ends(eol: bytes) -> None:
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"
    assert decode(b"data: " + text.encode() + eol + eol) == [SSE(data=text.encode())]


@ANY_EOL
def test_raw_separator_bytes_are_not_line_ends(eol: bytes) -> None:
    payload = b"a\x0bb\x0cc\x1cd\x1de\x1ef\x85g"
    assert decode(b"data: " + payload + eol + eol) == [SSE(data=payload)]


@ANY_EOL
def test_unicode_separators_do_not_end_field_lines(eol: bytes) -> None:
    # "event: x<U+2028>data: y" is one event line, not an event line plus a data line.
    stream = "event: x\u2028data: y".encode() + eol + b"data: z" + eol + eol
    assert decode(stream) == [SSE("x\u2028data: y", b"z")]


# --- byte order mark --------------------------------------------------------------


def test_bom_at_start_is_stripped() -> None:
    # Unstripped, the first line's field would be "\ufeffdata" and be ignored.
    assert decode(BOM + b"data: x\n\n") == [SSE(data=b"x")]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_bom_split_across_feeds(cut: int) -> None:
    assert decode(BOM[:cut], BOM[cut:] + b"data: x\n\n") == [SSE(data=b"x")]


def test_bom_fed_byte_by_byte() -> None:
    assert decode(*bytewise(BOM + b"data: x\n\n")) == [SSE(data=b"x")]


def test_bom_alone_then_stream() -> None:
    assert decode(b"", b"\xef", b"", b"\xbb", b"\xbf", b"", b"data: x\n\n") == [SSE(data=b"x")]


def test_bom_only_stripped_once() -> None:
    # The second BOM is part of the first line, whose field is then unknown.
    assert decode(BOM + BOM + b"data: x\n\ndata: y\n\n") == [SSE(data=b"y")]


def test_bom_after_start_is_data() -> None:
    stream = b"data: a\n\n" + BOM + b"data: b\n\ndata: " + BOM + b"c\n\n"
    assert decode(stream) == [SSE(data=b"a"), SSE(data=BOM + b"c")]


def test_bom_in_second_feed_is_not_stripped() -> None:
    assert decode(b"data: a\n\n", BOM + b"data: b\n\n") == [SSE(data=b"a")]


def test_partial_bom_prefix_that_is_not_a_bom_is_kept() -> None:
    # "\xef\xbb:" is a line whose field is "\xef\xbb": ignored; nothing is lost or stuck.
    assert decode(b"\xef", b"\xbb", b": c\ndata: x\n\n") == [SSE(data=b"x")]
    assert decode(b"\xef\xbb", b"data: x\n\n") == []  # field "\xef\xbbdata"
    assert decode(b"\xef\xbb", b"\n", b"data: x\n\n") == [SSE(data=b"x")]


def test_line_starting_with_bom_prefix_byte_after_start() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [SSE(data=b"a")]
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb\xbfdata: b\n\ndata: c\n\n") == [SSE(data=b"c")]


# --- dispatch -------------------------------------------------------------------


def test_multi_line_data() -> None:
    assert decode(b"data: a\ndata: b\ndata: c\n\n") == [SSE(data=b"a\nb\nc")]


def test_multiple_events_in_one_feed() -> None:
    stream = b"data: 1\n\ndata: 2\n\nevent: e\ndata: 3\n\n"
    assert decode(stream) == [SSE(data=b"1"), SSE(data=b"2"), SSE("e", b"3")]


def test_feed_returns_only_events_it_completes() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: 2\n") == [SSE(data=b"1")]
    assert decoder.feed(b"data: 3") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [SSE(data=b"2\n3")]


def test_empty_data_field_dispatches_empty_data() -> None:
    # "data:" appends "\n": the buffer is not empty, so an event with data b"" goes out.
    assert decode(b"data:\n\n") == [SSE(data=b"")]
    assert decode(b"data: \n\n") == [SSE(data=b"")]


def test_two_empty_data_lines_give_one_newline() -> None:
    assert decode(b"data:\ndata:\n\n") == [SSE(data=b"\n")]


def test_trailing_empty_data_line_keeps_its_newline() -> None:
    assert decode(b"data: a\ndata:\n\n") == [SSE(data=b"a\n")]


def test_blank_lines_with_nothing_buffered_dispatch_nothing() -> None:
    assert decode(b"\n\n\r\n\r\r\n\n") == []
    assert decode(b"\n\ndata: x\n\n\n\n") == [SSE(data=b"x")]


def test_block_without_data_dispatches_nothing() -> None:
    assert decode(b"event: e\nid: 1\nretry: 5\n\n") == []


def test_event_type_defaults_to_message() -> None:
    assert decode(b"data: x\n\n")[0].event == "message"


def test_event_type_reset_after_dispatch() -> None:
    assert decode(b"event: a\ndata: x\n\ndata: y\n\n") == [SSE("a", b"x"), SSE(data=b"y")]


def test_event_type_reset_by_blank_line_without_data() -> None:
    assert decode(b"event: a\n\ndata: y\n\n") == [SSE(data=b"y")]


def test_last_event_field_wins() -> None:
    assert decode(b"event: a\nevent: b\ndata: x\n\n") == [SSE("b", b"x")]


def test_empty_event_field_means_message() -> None:
    assert decode(b"event: a\nevent:\ndata: x\n\n") == [SSE(data=b"x")]


def test_event_name_is_decoded_utf8() -> None:
    assert decode("event: ünï 🎉\ndata: x\n\n".encode()) == [SSE("ünï 🎉", b"x")]


def test_event_name_invalid_utf8_is_replaced() -> None:
    assert decode(b"event: a\xffb\ndata: x\n\n") == [SSE("a\ufffdb", b"x")]


def test_data_is_raw_bytes_even_invalid_utf8() -> None:
    assert decode(b"data: \xff\xfe\n\n") == [SSE(data=b"\xff\xfe")]


# --- fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [
        (b"data:x", b"x"),
        (b"data: x", b"x"),
        (b"data:  x", b" x"),
        (b"data:   x ", b"  x "),
        (b"data:x:y", b"x:y"),
        (b"data: x: y", b"x: y"),
        (b"data::", b":"),
        (b"data:\tx", b"\tx"),
    ],
)
def test_data_value_loses_one_leading_space_only(line: bytes, value: bytes) -> None:
    assert decode(line + b"\n\n") == [SSE(data=value)]


@pytest.mark.parametrize(
    ("line", "name"),
    [(b"event:x", "x"), (b"event: x", "x"), (b"event:  x", " x"), (b"event: a:b", "a:b")],
)
def test_event_value_loses_one_leading_space_only(line: bytes, name: str) -> None:
    assert decode(line + b"\ndata: d\n\n") == [SSE(name, b"d")]


def test_field_without_colon_data_appends_empty_line() -> None:
    assert decode(b"data\n\n") == [SSE(data=b"")]
    assert decode(b"data\ndata\n\n") == [SSE(data=b"\n")]
    assert decode(b"data: a\ndata\ndata: b\n\n") == [SSE(data=b"a\n\nb")]


def test_field_without_colon_event_sets_empty_type() -> None:
    assert decode(b"event: a\nevent\ndata: x\n\n") == [SSE(data=b"x")]


def test_field_without_colon_id_is_ignored() -> None:
    assert decode(b"id: 7\ndata: a\n\nid\ndata: b\n\n") == [SSE(data=b"a"), SSE(data=b"b")]


def test_field_without_colon_retry_is_ignored() -> None:
    assert decode(b"retry\ndata: a\n\n") == [SSE(data=b"a")]


def test_whole_line_is_field_name_when_no_colon() -> None:
    # "data x" is a field named "data x", not "data".
    assert decode(b"data x\n\n") == []


def test_comments_are_skipped() -> None:
    stream = b": OPENROUTER PROCESSING\n\n:\ndata: a\n: in the middle\ndata: b\n::x\n\n"
    assert decode(stream) == [SSE(data=b"a\nb")]


def test_comments_alone_dispatch_nothing() -> None:
    assert decode(b": keep-alive\n\n" * 3) == []
    assert decode(b": keep-alive\n" * 3 + b"data: a\n\n") == [SSE(data=b"a")]


def test_comment_split_across_feeds_stays_a_comment() -> None:
    # The line is ": data: x" whichever read completes it: a comment, never data.
    decoder = SSEDecoder()
    assert decoder.feed(b":") == []
    assert decoder.feed(b" data: x") == []
    assert decoder.feed(b"\r") == []
    assert decoder.feed(b"\ndata: y\n\n") == [SSE(data=b"y")]


def test_data_with_comment_syntax_is_data() -> None:
    assert decode(b"data: : not a comment\n\n") == [SSE(data=b": not a comment")]


@pytest.mark.parametrize(
    "line",
    [
        b"foo: bar",
        b"DATA: x",
        b"Data: x",
        b"data : x",
        b" data: x",
        b"database: x",
        b"datax: y",
        b"dat: x",
        b"events: x",
        b"\xe2\x80\xa8data: x",
        b"retr: 5",
        b"retrying: 5",
        b"RETRY: 5",
        b"ids: 5",
        b"i: 5",
        b"ID: 5",
        b"evnt: x",
        b"Event: x",
    ],
)
def test_unknown_fields_are_ignored(line: bytes) -> None:
    assert decode(line + b"\n\n") == []
    assert decode(b"data: a\n" + line + b"\n\n") == [SSE(data=b"a")]


def test_unknown_field_does_not_disturb_event() -> None:
    assert decode(b"event: e\nfoo: bar\nid: 3\nx\ndata: a\n\n") == [SSE("e", b"a")]


# `id` and `retry` serve only a reconnecting client; the bridge never resumes a
# stream, so the decoder skips them: whatever their value, the events are the same.
SKIPPED_FIELDS = {
    "id": (b"id: 42\ndata: a\n\n", [SSE(data=b"a")]),
    "id-then-events": (
        b"id: 1\ndata: a\n\ndata: b\n\nid: 2\nevent: e\ndata: c\n\ndata: d\n\n",
        [SSE(data=b"a"), SSE(data=b"b"), SSE("e", b"c"), SSE(data=b"d")],
    ),
    "id-is-not-data": (b"id: data: x\n\nid:\n\n", []),
    "id-block-without-data": (b"id: 5\n\ndata: a\n\n", [SSE(data=b"a")]),
    "empty-id": (b"id: 5\ndata: a\n\nid:\ndata: b\n\n", [SSE(data=b"a"), SSE(data=b"b")]),
    "id-with-nul": (
        b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\nid: \x00\ndata: c\n\n",
        [SSE(data=b"a"), SSE(data=b"b"), SSE(data=b"c")],
    ),
    "id-utf8-spaces": ("id:  é 1\ndata: a\n\n".encode(), [SSE(data=b"a")]),
    "several-retry": (b"retry: 5\nretry: x\ndata: a\n\n", [SSE(data=b"a")]),
    "retry-then-events": (
        b"retry: 10\ndata: a\n\ndata: b\n\nretry: 20\n\nevent: e\ndata: c\n\n",
        [SSE(data=b"a"), SSE(data=b"b"), SSE("e", b"c")],
    ),
}


@pytest.mark.parametrize(
    ("stream", "expected"), list(SKIPPED_FIELDS.values()), ids=list(SKIPPED_FIELDS)
)
def test_id_and_retry_fields_are_skipped(stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert decode(stream) == expected
    assert decode(*bytewise(stream)) == expected


def test_id_line_alone_is_no_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\n") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: a\n\n") == [SSE(data=b"a")]


@pytest.mark.parametrize(
    "value",
    [
        # valid reconnection times
        b"3000",
        b"0",
        b"007",
        # invalid ones
        b"",
        b" 1000",
        b"10 00",
        b"1000 ",
        b"-1",
        b"+1",
        b"1.5",
        b"1e3",
        b"abc",
        b"0x10",
        "１０".encode(),
        "٣".encode(),
    ],
)
def test_retry_of_any_value_is_skipped(value: bytes) -> None:
    assert decode(b"retry: " + value + b"\ndata: a\n\n") == [SSE(data=b"a")]


# --- splitting, sizes -------------------------------------------------------------


def test_multibyte_utf8_split_across_feeds_is_intact() -> None:
    text = "héllo wörld 你好 🎉"
    stream = b"event: " + text.encode() + b"\ndata: " + text.encode() + b"\n\n"
    expected = [SSE(text, text.encode())]
    for cut in range(len(stream) + 1):
        assert decode(stream[:cut], stream[cut:]) == expected, cut
    assert decode(*bytewise(stream)) == expected


def test_many_tiny_feeds() -> None:
    stream = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(200))
    expected = [SSE(data=b"%d" % i) for i in range(200)]
    assert decode(*bytewise(stream)) == expected


def test_huge_single_feed() -> None:
    stream = b"".join(b'data: {"n":%d}\n\n' % i for i in range(100_000))
    events = decode(stream)
    assert len(events) == 100_000
    assert events[0] == SSE(data=b'{"n":0}')
    assert events[-1] == SSE(data=b'{"n":99999}')


def test_long_line_over_many_feeds() -> None:
    payload = bytes(range(32, 127)) * 11_000  # ~1 MB, no line ends
    stream = b"data: " + payload + b"\n\n"
    chunks = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    assert decode(*chunks) == [SSE(data=payload)]


def test_empty_feeds_are_harmless() -> None:
    assert decode(b"", b"data: a", b"", b"\n", b"", b"\n", b"") == [SSE(data=b"a")]


# --- a realistic stream -------------------------------------------------------------

CHUNK_TEXTS = ["", "héllo", " wörld", " 你好", " 🎉"]


def _openrouter_stream() -> tuple[bytes, list[ServerSentEvent]]:
    lines: list[bytes] = [b": OPENROUTER PROCESSING", b"", b": OPENROUTER PROCESSING", b""]
    expected: list[ServerSentEvent] = []
    for i, text in enumerate(CHUNK_TEXTS):
        delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
        payload = orjson.dumps(
            {
                "id": "gen-1",
                "object": "chat.completion.chunk",
                "model": "openai/gpt-4o",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
        lines += [b"data: " + payload, b""]
        expected.append(SSE(data=payload))
        if i == 2:
            lines += [b": OPENROUTER PROCESSING", b""]
    final = orjson.dumps(
        {
            "id": "gen-1",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        }
    )
    lines += [b"data: " + final, b"", b"data: " + DONE, b""]
    expected += [SSE(data=final), SSE(data=DONE)]
    return b"\n".join(lines) + b"\n", expected


STREAM_LF, STREAM_EVENTS = _openrouter_stream()
STREAMS = {
    "LF": STREAM_LF,
    "CRLF": STREAM_LF.replace(b"\n", b"\r\n"),
    "CR": STREAM_LF.replace(b"\n", b"\r"),
    "BOM+CRLF": BOM + STREAM_LF.replace(b"\n", b"\r\n"),
}


def test_realistic_stream_whole() -> None:
    decoder = SSEDecoder()
    events = feed_all(decoder, [STREAM_LF])
    assert events == STREAM_EVENTS
    assert events[-1].data == DONE
    deltas = [orjson.loads(e.data)["choices"][0]["delta"] for e in events[:-1]]
    contents = [delta.get("content", "") for delta in deltas]
    assert "".join(contents) == "héllo wörld 你好 🎉"


@pytest.mark.parametrize("name", list(STREAMS))
def test_realistic_stream_split_at_every_offset(name: str) -> None:
    stream = STREAMS[name]
    assert decode(stream) == STREAM_EVENTS
    for cut in range(len(stream) + 1):
        decoder = SSEDecoder()
        assert feed_all(decoder, [stream[:cut], stream[cut:]]) == STREAM_EVENTS, cut


@pytest.mark.parametrize("name", list(STREAMS))
def test_realistic_stream_one_byte_at_a_time(name: str) -> None:
    decoder = SSEDecoder()
    assert feed_all(decoder, bytewise(STREAMS[name])) == STREAM_EVENTS


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("size", [2, 3, 7, 64, 4096])
def test_realistic_stream_fixed_size_reads(name: str, size: int) -> None:
    stream = STREAMS[name]
    assert decode(*(stream[i : i + size] for i in range(0, len(stream), size))) == STREAM_EVENTS


def test_realistic_stream_truncated_drops_only_the_last_event() -> None:
    stream = STREAM_LF[:-1]  # the final blank line is missing
    assert decode(stream) == STREAM_EVENTS[:-1]


# --- property tests -------------------------------------------------------------------

LINE_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=12,
)
EOLS = (b"\n", b"\r", b"\r\n")


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """A stream of blocks with random fields, comments and line ends, and its events."""
    lines: list[bytes] = []
    expected: list[ServerSentEvent] = []
    for _ in range(draw(st.integers(0, 6))):
        block: list[bytes] = []
        event = draw(st.none() | LINE_TEXT)
        if event is not None:
            block.append(b"event: " + event.encode())
        new_id = draw(st.none() | LINE_TEXT.filter(lambda s: "\x00" not in s))
        if new_id is not None:
            block.append(b"id: " + new_id.encode())
        retry = draw(st.none() | st.integers(0, 10**9))
        if retry is not None:
            block.append(b"retry: %d" % retry)
        data = [t.encode() for t in draw(st.lists(LINE_TEXT, max_size=4))]
        for value in data:
            style = draw(st.sampled_from([b"data: ", b"data:", b"data"]))
            if (style == b"data:" and value.startswith(b" ")) or (style == b"data" and value):
                style = b"data: "
            block.append(style + value)
        for text in draw(st.lists(LINE_TEXT, max_size=2)):
            block.insert(draw(st.integers(0, len(block))), b":" + text.encode())
        lines += block + [b""] * draw(st.integers(1, 2))
        if data:
            expected.append(SSE(event or "message", b"\n".join(data)))
    stream = bytearray(BOM if draw(st.booleans()) else b"")
    previous = b""
    for line in lines:
        eol = draw(st.sampled_from(EOLS))
        if previous == b"\r" and not line and eol == b"\n":
            eol = b"\r\n"  # CR then a bare LF would be one CRLF line end
        stream += line + eol
        previous = eol
    return bytes(stream), expected


@settings(max_examples=300, deadline=None)
@given(data=event_streams(), points=st.lists(st.integers(0, 10_000), max_size=8))
def test_property_generated_events_with_random_splits(
    data: tuple[bytes, list[ServerSentEvent]], points: list[int]
) -> None:
    stream, expected = data
    decoder = SSEDecoder()
    chunks = split_at(stream, [p % (len(stream) + 1) for p in points])
    assert feed_all(decoder, chunks) == expected


def reference_decode(stream: bytes) -> list[ServerSentEvent]:
    """A literal, slow transcription of the WHATWG algorithm, on bytes.

    Only its data and event type: the id and retry fields it would also keep
    change neither, and the decoder skips them.
    """
    if stream.startswith(BOM):
        stream = stream[3:]
    lines: list[bytes] = []
    line = b""
    i = 0
    while i < len(stream):
        byte = stream[i : i + 1]
        if byte in (b"\r", b"\n"):
            lines.append(line)
            line = b""
            if byte == b"\r" and stream[i + 1 : i + 2] == b"\n":
                i += 1
        else:
            line += byte
        i += 1
    events: list[ServerSentEvent] = []
    data, event_type = b"", b""
    for line in lines:  # the unterminated `line` is never processed
        if not line:
            if data:
                event = event_type.decode("utf-8", "replace") or "message"
                payload = data[:-1] if data.endswith(b"\n") else data
                events.append(SSE(event, payload))
            data, event_type = b"", b""
            continue
        if line.startswith(b":"):
            continue
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            event_type = value
        elif field == b"data":
            data += value + b"\n"
    return events


TOKENS = st.sampled_from(
    [
        b"data",
        b"event",
        b"id",
        b"retry",
        b":",
        b" ",
        b"  ",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"x",
        b"7",
        b"\x00",
        b"\xef",
        b"\xbb",
        b"\xbf",
        BOM,
        b"\xe2\x80\xa8",
        b"\x85",
        "é🎉".encode(),
        b"data: ",
        b"data:",
        b": ping\n",
        b"dat",
        b"a",
    ]
)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(TOKENS, max_size=40), points=st.lists(st.integers(0, 10_000), max_size=6))
def test_property_matches_reference_algorithm(parts: list[bytes], points: list[int]) -> None:
    stream = b"".join(parts)
    events = reference_decode(stream)
    decoder = SSEDecoder()
    chunks = split_at(stream, [p % (len(stream) + 1) for p in points])
    assert feed_all(decoder, chunks) == events


@settings(max_examples=300)
@given(parts=st.lists(TOKENS, max_size=40), points=st.lists(st.integers(0, 10_000), max_size=6))
def test_property_feed_data_is_feed_without_the_event_types(
    parts: list[bytes], points: list[int]
) -> None:
    stream = b"".join(parts)
    chunks = split_at(stream, [p % (len(stream) + 1) for p in points])
    full, data_only = SSEDecoder(), SSEDecoder()
    events = [event.data for chunk in chunks for event in full.feed(chunk)]
    payloads = [data for chunk in chunks for data in data_only.feed_data(chunk)]
    assert payloads == events == [event.data for event in reference_decode(stream)]
    assert all(type(data) is bytes for data in payloads)
