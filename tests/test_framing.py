"""Tests for the sans-IO frame decoder (``pubsub_rpc._framing``) and the encoders (``pubsub_rpc._frames``)."""

from __future__ import annotations

import contextlib
import re
import types
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pubsub_rpc import _framing
from pubsub_rpc._errors import RemoteProtocolError
from pubsub_rpc._frames import (
    DEFAULT_MAX_FRAME_SIZE,
    BadFrame,
    BadFrameReason,
    Framing,
    encode,
    frame_body,
    frame_header,
    frame_trailer,
)
from pubsub_rpc._framing import FrameDecoder

NL = Framing.NEWLINE
CL = Framing.CONTENT_LENGTH
PARSE = BadFrameReason.PARSE_ERROR
TOO_LARGE = BadFrameReason.TOO_LARGE

# -- helpers -------------------------------------------------------------------


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    """The three ways every scenario is fed: whole, byte by byte, and split in two everywhere."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]


def shape(items: list[object]) -> list[object]:
    """Replace each BadFrame by its reason: orjson's exact messages are not ours to pin."""
    return [item.reason if isinstance(item, BadFrame) else item for item in items]


def decode(chunks: list[bytes], *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> list[object]:
    decoder = FrameDecoder(max_frame_size=max_frame_size)
    items: list[object] = []
    for chunk in chunks:
        items += decoder.feed(chunk)
    items += decoder.feed_eof()
    return items


# A next frame that arrives in two parts; the first part ends inside a string
# right after a backslash, the nastiest place to be cut.
_NEXT_VALUE = {"next": [1, '}"[']}
_NEXT_NEWLINE = (b'{"next": [1, "}\\', b'"["]}\n')
_NEXT_CL_FRAME = encode(_NEXT_VALUE, CL)
_NEXT_CL = (_NEXT_CL_FRAME[:30], _NEXT_CL_FRAME[30:])


def check(data: bytes, expected: list[object], *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
    """Feed ``data`` every way, alone and followed by a next frame that completes later."""
    for chunks in chunkings(data):
        assert shape(decode(chunks, max_frame_size=max_frame_size)) == expected, chunks
    framing = CL if data.lstrip()[:1] in (b"C", b"c") else NL
    partial, rest = _NEXT_CL if framing is CL else _NEXT_NEWLINE
    for chunks in chunkings(data + partial):
        decoder = FrameDecoder(max_frame_size=max_frame_size)
        items: list[object] = []
        for chunk in chunks:
            items += decoder.feed(chunk)
        assert decoder.framing is framing
        # A trailing bare scalar is ended by the next frame's opening brace,
        # so nothing is missing here even without EOF.
        assert shape(items) == expected, chunks
        items += decoder.feed(rest)
        items += decoder.feed_eof()
        assert shape(items) == [*expected, _NEXT_VALUE], chunks


def check_fatal(data: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
    """Every way of feeding ``data`` then EOF raises RemoteProtocolError, and it sticks."""
    for chunks in chunkings(data):
        decoder = FrameDecoder(max_frame_size=max_frame_size)
        with pytest.raises(RemoteProtocolError):
            for chunk in chunks:
                decoder.feed(chunk)
            decoder.feed_eof()
        with pytest.raises(RemoteProtocolError):
            decoder.feed(b"{}\n")


# -- newline / JSON text stream --------------------------------------------------

STREAM_CASES: list[tuple[str, bytes, list[object]]] = [
    ("ndjson", b'{"a":1}\n{"b":[1,2]}\n[]\n', [{"a": 1}, {"b": [1, 2]}, []]),
    ("concatenated", b'{"a":1}{"b":2}[3][]{}', [{"a": 1}, {"b": 2}, [3], [], {}]),
    ("two per line", b'{"a":1}{"b":2}\n{"c":3}\n', [{"a": 1}, {"b": 2}, {"c": 3}]),
    (
        "pretty",
        b'{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}\n[\n]\n',
        [{"a": 1, "b": [1, 2]}, []],
    ),
    ("pretty then same line", b'{\n"a": 1} {"b":2}\n{"c":3}\n', [{"a": 1}, {"b": 2}, {"c": 3}]),
    (
        "brackets in strings",
        b'{"s":"}]{[\\"\\\\","t":"a\\nb"}\n["\\\\"]["]"]',
        [{"s": '}]{["\\', "t": "a\nb"}, ["\\"], ["]"]],
    ),
    (
        "unicode",
        '{"ü":"€😀"}\n"\\u00e9\\ud83d\\ude00"'.encode(),
        [{"ü": "€😀"}, "é😀"],
    ),
    ("scalars", b'42 "x" true null', [42, "x", True, None]),
    ("scalar only at eof", b"42", [42]),
    ("scalars then object", b'-1.5e3{"a":1}"s"7', [-1500.0, {"a": 1}, "s", 7]),
    ("crlf", b'{"a":1}\r\n{"b":2}\r\n\r\n', [{"a": 1}, {"b": 2}]),
    ("leading whitespace", b' \r\n\t {"a":1}', [{"a": 1}]),
    ("blank lines", b'\n\n{"a":1}\n\n \n\t\n{"b":2}\n', [{"a": 1}, {"b": 2}]),
    ("invalid then valid", b'{"a":}\n{"b":2}\n', [PARSE, {"b": 2}]),
    ("invalid concatenated", b'{"a" 1}{"b":2}', [PARSE, {"b": 2}]),
    ("garbage tokens", b'xyz {"a":1} } ]]\n', [PARSE, {"a": 1}, PARSE, PARSE]),
    ("mismatched brackets", b'{] {"a":1}', [PARSE, {"a": 1}]),
    ("invalid utf-8", b'{"a":"\xff"}\n{"b":2}\n', [PARSE, {"b": 2}]),
    ("nan", b"[NaN]\nNaN\n[1]", [PARSE, PARSE, [1]]),
    ("empty values", b'{}[]""', [{}, [], ""]),
    ("starts with C inside a stream", b'1 Content-Length: 2\n{"a":1}\n', [1, PARSE, 2, {"a": 1}]),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in STREAM_CASES], ids=[c[0] for c in STREAM_CASES]
)
def test_stream(data: bytes, expected: list[object]) -> None:
    check(data, expected)


def test_deep_nesting_is_a_bad_frame_not_a_crash() -> None:
    data = b"[" * 5000 + b"]" * 5000 + b'\n{"a":1}'
    assert shape(decode([data])) == [PARSE, {"a": 1}]
    assert shape(decode([data[i : i + 7] for i in range(0, len(data), 7)])) == [PARSE, {"a": 1}]


def test_bad_frame_detail_is_the_decoder_message() -> None:
    (bad,) = decode([b'{"a":}\n'])
    assert isinstance(bad, BadFrame)
    assert bad.reason is PARSE
    assert bad.detail


def test_framing_detection() -> None:
    decoder = FrameDecoder()
    assert decoder.framing is None
    assert decoder.feed(b" \r\n\t") == []
    assert decoder.framing is None
    assert decoder.buffered == 0
    assert decoder.feed(b'{"a"') == []
    assert decoder.framing is NL
    assert decoder.buffered == 4
    other = FrameDecoder()
    other.feed(b"\ncontent-length: 2\r\n")
    assert other.framing is CL
    assert FrameDecoder().feed_eof() == []


def test_eof_after_whitespace_is_fine() -> None:
    for data in (b"", b"  \r\n ", b'{"a":1}\n  \n', b"Content-Length: 2\r\n\r\n{}\r\n"):
        for chunks in chunkings(data):
            decode(chunks)


@pytest.mark.parametrize("data", [b'{"a":', b"[1, 2", b'"abc', b'"ab\\', b'{"a":1}\n{', b"[1]\n[[]"])
def test_eof_mid_json_is_fatal(data: bytes) -> None:
    check_fatal(data)


def test_bytearray_and_memoryview_input() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(bytearray(b'{"a":1}\n')) == [{"a": 1}]
    assert decoder.feed(memoryview(b"[2]\n")) == [[2]]


# -- Content-Length --------------------------------------------------------------

CL_CASES: list[tuple[str, bytes, list[object]]] = [
    ("plain", b'Content-Length: 7\r\n\r\n{"a":1}', [{"a": 1}]),
    (
        "content-type",
        b'Content-Length: 7\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{"a":1}',
        [{"a": 1}],
    ),
    ("content-type first", b"Content-Type: x\r\nContent-Length: 2\r\n\r\n[]", [[]]),
    ("lowercase", b"content-length: 2\r\n\r\n{}", [{}]),
    ("odd spacing", b"CONTENT-LENGTH:2\r\n\r\n{}content-length:   007  \r\n\r\n[1,2,3]", [{}, [1, 2, 3]]),
    (
        "several",
        b'Content-Length: 7\r\n\r\n{"a":1}Content-Length: 3\r\n\r\n[2]Content-Length: 2\r\n\r\n42',
        [{"a": 1}, [2], 42],
    ),
    ("multi-line body", b'Content-Length: 12\r\n\r\n{\n  "a": 1\n}', [{"a": 1}]),
    ("two documents in a body", b"Content-Length: 4\r\n\r\n{}{}Content-Length: 2\r\n\r\n[]", [PARSE, []]),
    ("invalid body", b'Content-Length: 6\r\n\r\n{"a":}Content-Length: 2\r\n\r\n[]', [PARSE, []]),
    ("invalid utf-8 body", b'Content-Length: 3\r\n\r\n"\xff"Content-Length: 2\r\n\r\n[]', [PARSE, []]),
    ("empty body", b"Content-Length: 0\r\n\r\nContent-Length: 2\r\n\r\n[]", [PARSE, []]),
    (
        "whitespace between",
        b"\r\n Content-Length: 2\r\n\r\n{}\r\n\r\nContent-Length: 2\r\n\r\n[]\n",
        [{}, []],
    ),
    ("unicode body", 'Content-Length: 13\r\n\r\n{"é":"😀"}'.encode(), [{"é": "😀"}]),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CL_CASES], ids=[c[0] for c in CL_CASES])
def test_content_length(data: bytes, expected: list[object]) -> None:
    check(data, expected)


HEADER_ERRORS = [
    pytest.param(b"Content-Type: x\r\n\r\n{}", id="missing"),
    pytest.param(b"Content-Length: -1\r\n\r\n{}", id="negative"),
    pytest.param(b"Content-Length: abc\r\n\r\n{}", id="non-numeric"),
    pytest.param(b"Content-Length: 1.5\r\n\r\n{}", id="fraction"),
    pytest.param(b"Content-Length: +2\r\n\r\n{}", id="plus"),
    pytest.param(b"Content-Length: \r\n\r\n{}", id="empty"),
    pytest.param(b"Content-Length: 1 2\r\n\r\n{}", id="two numbers"),
    pytest.param(b"Content-Length: \xd9\xa2\r\n\r\n{}", id="non-ascii digit"),
    pytest.param(b"Content-Length: " + b"1" * 19 + b"\r\n\r\n{}", id="too many digits"),
    pytest.param(b"Content-Length: " + b"0" * 18 + b"12\r\n\r\n{}", id="too many digits, small value"),
    pytest.param(b"Content-Length: 2\r\nbogus\r\n\r\n{}", id="no colon"),
    pytest.param(b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", id="duplicate"),
    pytest.param(b'Content-Length: 2\r\n\r\n{}{"a": 1}\r\n\r\n', id="garbage after body"),
]


@pytest.mark.parametrize("data", HEADER_ERRORS)
def test_content_length_header_errors(data: bytes) -> None:
    # Fatal as soon as the header block is complete, not only at EOF: either
    # the call raises, or (frames came before the damage) it returns them and
    # ``error`` says the stream is broken.
    decoder = FrameDecoder()
    with contextlib.suppress(RemoteProtocolError):
        decoder.feed(data)
    assert decoder.error is not None
    check_fatal(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"Content-Length: 2\r\n\r\n{}{}", id="garbage after body"),
        pytest.param(b"Content-Length: 5\r\n\r\n{}", id="in body"),
        pytest.param(b"Content-Length: 5\r\n", id="in header"),
    ],
)
def test_content_length_eof_mid_frame(data: bytes) -> None:
    check_fatal(data)


def test_header_block_limit() -> None:
    prefix = b"Content-Length: 2\r\nX-Pad: "
    fits = prefix + b"a" * (8 * 1024 - len(prefix) - 4) + b"\r\n\r\n{}"
    assert decode([fits]) == [{}]
    too_long = prefix + b"a" * (8 * 1024 - len(prefix) - 3) + b"\r\n\r\n{}"
    check_fatal(too_long)
    # Raised as soon as 8 KiB arrive without a blank line: no waiting for EOF.
    decoder = FrameDecoder()
    decoder.feed(prefix)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"a" * 8 * 1024)


def test_header_values_18_digits_are_fine() -> None:
    decoder = FrameDecoder(max_frame_size=10**18)
    assert decoder.feed(b"Content-Length: " + b"9" * 18 + b"\r\n\r\n{}") == []
    assert decoder.buffered == 2


# -- size limits ----------------------------------------------------------------


LIMIT = 32  # the next frame that check() appends (23 bytes) still fits
LARGE_CASES: list[tuple[str, bytes, list[object]]] = [
    ("ndjson", b'{"a":"' + b"x" * 60 + b'"}\n{"b":2}\n', [TOO_LARGE, {"b": 2}]),
    ("concatenated", b'{"a":"' + b"x" * 60 + b'"}{"b":2}', [TOO_LARGE, {"b": 2}]),
    ("pretty", b'[\n"' + b"}" * 60 + b'"\n]\n[2]', [TOO_LARGE, [2]]),
    ("string", b'"' + b"\\\\" * 30 + b'" "ok"', [TOO_LARGE, "ok"]),
    ("scalar", b"1" * 60 + b"\n2", [TOO_LARGE, 2]),
    ("scalar at the limit", b"0." + b"0" * 29 + b"1 " + b"2" * 33 + b" 3", [1e-30, TOO_LARGE, 3]),
    ("at the limit", b'{"k":"' + b"x" * 24 + b'"}{"k":"' + b"x" * 25 + b'"}', [{"k": "x" * 24}, TOO_LARGE]),
    ("limit with crlf", b'["' + b"x" * 28 + b'"]\r\n', [["x" * 28]]),
    ("content-length", frame_body(b"[" + b"1," * 30 + b"1]", CL) + frame_body(b"[]", CL), [TOO_LARGE, []]),
    (
        "content-length at limit",
        frame_body(b'"' + b"x" * 30 + b'"', CL) + frame_body(b'"' + b"x" * 31 + b'"', CL),
        ["x" * 30, TOO_LARGE],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in LARGE_CASES], ids=[c[0] for c in LARGE_CASES])
def test_too_large(data: bytes, expected: list[object]) -> None:
    check(data, expected, max_frame_size=LIMIT)


def test_eof_while_skipping() -> None:
    check_fatal(b"[" + b"1," * 40, max_frame_size=LIMIT)
    check_fatal(b"Content-Length: 100\r\n\r\n" + b" " * 60, max_frame_size=LIMIT)
    assert shape(decode([b"1" * 60], max_frame_size=LIMIT)) == [TOO_LARGE]


@pytest.mark.parametrize("framing", [NL, CL])
def test_memory_stays_bounded_by_the_limit(framing: Framing) -> None:
    body = b'["' + b"x" * 9_500_000 + b'",' + b"[1]," * 125_000 + b"2]"  # ~10 MB
    frame = frame_body(body, framing) + encode({"after": True}, framing)
    chunk = 64 * 1024
    decoder = FrameDecoder()
    items: list[object] = []
    for start in range(0, len(frame), chunk):
        items += decoder.feed(frame[start : start + chunk])
        assert decoder.buffered <= DEFAULT_MAX_FRAME_SIZE + chunk
    items += decoder.feed_eof()
    assert items == [
        BadFrame(reason=TOO_LARGE, detail=f"frame exceeds {DEFAULT_MAX_FRAME_SIZE} bytes"),
        {"after": True},
    ]


# -- linear work -------------------------------------------------------------------


class _CountingPattern:
    """Wraps a compiled pattern and adds up how many bytes each call got through."""

    def __init__(self, pattern: re.Pattern[bytes], counter: list[int]) -> None:
        self._pattern = pattern
        self._counter = counter

    def _count(self, found: re.Match[bytes] | None, string: Any, pos: int, endpos: int) -> Any:
        stop = min(endpos, len(string)) if found is None else found.end()
        self._counter[0] += stop - pos + 1
        return found

    def match(self, string: Any, pos: int = 0, endpos: int = 2**62) -> Any:
        return self._count(self._pattern.match(string, pos, endpos), string, pos, endpos)

    def fullmatch(self, string: Any, pos: int = 0, endpos: int = 2**62) -> Any:
        return self._count(self._pattern.fullmatch(string, pos, endpos), string, pos, endpos)

    def search(self, string: Any, pos: int = 0, endpos: int = 2**62) -> Any:
        return self._count(self._pattern.search(string, pos, endpos), string, pos, endpos)


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Count bytes the decoder's regexes could examine and bytes handed to orjson."""
    regex = [0]
    parsed = [0]
    for name, value in vars(_framing).items():
        if isinstance(value, re.Pattern):
            monkeypatch.setattr(_framing, name, _CountingPattern(value, regex))

    def loads(data: Any) -> Any:
        parsed[0] += len(data)
        return orjson.loads(data)

    fake = types.SimpleNamespace(**{name: getattr(orjson, name) for name in dir(orjson)})
    fake.loads = loads
    monkeypatch.setattr(_framing, "orjson", fake)
    return {"regex": regex, "parsed": parsed}


def test_one_byte_at_a_time_is_linear(work: dict[str, list[int]]) -> None:
    value = {"items": [{"id": i, "s": 'a"}]{[\\', "n": [None, True]} for i in range(4700)]}
    data = orjson.dumps(value)
    assert len(data) > 200_000
    decoder = FrameDecoder()
    items: list[object] = []
    for i in range(len(data)):
        items += decoder.feed(data[i : i + 1])
    assert items == [value]
    # A decoder that rescanned the pending frame would look at ~len**2/2 bytes.
    assert work["regex"][0] <= 8 * len(data)
    assert work["parsed"][0] == len(data)


def test_many_frames_in_one_chunk_is_linear(work: dict[str, list[int]]) -> None:
    concatenated = b'{"a":[1,"]"]}' * 20_000 + b"\n"  # one long line: the fast path fails once
    ndjson = b'{"a":[1,"]"]}\n' * 20_000
    for data, expected_parsed in ((concatenated, 2 * len(concatenated)), (ndjson, len(ndjson))):
        work["regex"][0] = work["parsed"][0] = 0
        assert len(FrameDecoder().feed(data)) == 20_000
        assert work["regex"][0] <= 4 * len(data)
        assert work["parsed"][0] <= expected_parsed


# -- encoders ----------------------------------------------------------------------


def test_encoders() -> None:
    assert encode({"b": 1, "a": [1, 2]}) == b'{"b":1,"a":[1,2]}\n'
    assert encode({"a": 1}, CL) == b'Content-Length: 7\r\n\r\n{"a":1}'
    assert encode("é", CL) == b'Content-Length: 4\r\n\r\n"\xc3\xa9"'
    assert frame_body(b"[]", NL) == b"[]\n"
    assert frame_body(b"[]", CL) == b"Content-Length: 2\r\n\r\n[]"
    assert frame_header(10, NL) == b""
    assert frame_header(10, CL) == b"Content-Length: 10\r\n\r\n"
    assert frame_trailer(NL) == b"\n"
    assert frame_trailer(CL) == b""
    for framing in (NL, CL):
        body = b'{"x":1}'
        assert frame_header(len(body), framing) + body + frame_trailer(framing) == frame_body(body, framing)


@pytest.mark.parametrize("framing", [NL, CL])
def test_encode_round_trip(framing: Framing) -> None:
    values: list[object] = [
        {"jsonrpc": "2.0", "method": "m", "params": {"s": "}\n{"}},
        [1, 2.5],
        "x",
        0,
        None,
    ]
    data = b"".join(encode(v, framing) for v in values)
    check(data, values)


# -- properties ----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)

_ATOMS = [
    b"{", b"}", b"[", b"]", b'"', b"\\", b'\\"', b"\n", b"\r\n", b" ", b"\t", b":", b",", b"1", b"-2.5e3",
    b"true", b"null", b"x", b"\xff", b"\xc3\xa9", b'"a"', b'{"a":1}', b"Content-Length: ", b"content-length:",
    b"\r\n\r\n", b"2", b"7", b"Content-Type: x\r\n", b"C",
]  # fmt: skip
hostile_bytes = st.one_of(
    st.binary(max_size=80), st.lists(st.sampled_from(_ATOMS), max_size=40).map(b"".join)
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def outcome(chunks: list[bytes], max_frame_size: int) -> tuple[list[object], bool]:
    try:
        return decode(chunks, max_frame_size=max_frame_size), False
    except RemoteProtocolError:
        return [], True


limits = st.sampled_from([4, 16, DEFAULT_MAX_FRAME_SIZE])
cut_lists = st.lists(st.integers(min_value=0, max_value=400), max_size=12)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(data=hostile_bytes, cuts=cut_lists, limit=limits)
def test_any_input_gives_frames_or_remote_protocol_error(data: bytes, cuts: list[int], limit: int) -> None:
    items, _ = outcome(split(data, cuts), limit)
    scalars = (dict, list, str, int, float, bool, type(None), BadFrame)
    assert all(isinstance(item, scalars) for item in items)


@PROPERTY
@given(values=st.lists(json_values, max_size=6), framing=st.sampled_from([NL, CL]), cuts=cut_lists)
def test_encoded_values_round_trip(values: list[object], framing: Framing, cuts: list[int]) -> None:
    data = b"".join(encode(value, framing) for value in values)
    assert decode(split(data, cuts)) == values


@PROPERTY
@given(data=hostile_bytes, cuts=cut_lists, limit=limits)
def test_chunking_never_changes_the_result(data: bytes, cuts: list[int], limit: int) -> None:
    whole = outcome([data], limit)
    assert outcome([data[i : i + 1] for i in range(len(data))], limit) == whole
    assert outcome(split(data, cuts), limit) == whole
