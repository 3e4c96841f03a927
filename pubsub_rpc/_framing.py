"""Sans-IO framing: split one connection's byte stream into JSON values (writing frames: ``_frames``).

The framing is chosen per connection by the first non-whitespace byte the peer
sends: ``C``/``c`` starts an LSP-style ``Content-Length`` header, anything else
a stream of JSON texts.  We write one compact text plus ``\\n`` per frame, but
read leniently: concatenated and pretty-printed documents work too.

Newline-delimited input takes a fast path (each line one ``orjson.loads``);
anything else is delimited by ``_text_scanner``, which follows the JSON
structure without parsing it.

A frame that is well delimited but not valid JSON, or larger than the limit,
becomes a ``BadFrame`` and the connection carries on.  Only damage that makes
the next frame impossible to find raises ``RemoteProtocolError``.
"""

from __future__ import annotations

import re
from typing import Final, NoReturn

import orjson

from ._content_length import HEADER_END, MAX_HEADER_BLOCK, PLAIN_HEADER, HeaderError, parse_header_block
from ._errors import RemoteProtocolError
from ._exact_integers import INEXACT_DETAIL, LONG_RUN, integers_exact, long_run_end
from ._frames import DEFAULT_MAX_FRAME_SIZE, BadFrame, BadFrameReason, Framing
from ._text_scanner import IDLE, SCALAR, TextScanner

__all__ = ["FrameDecoder"]


_WHITESPACE: Final = b" \t\r\n"
_WHITESPACE_SET: Final = frozenset(_WHITESPACE)
_NON_WHITESPACE: Final = re.compile(rb"[^ \t\r\n]")


def _decode(frame: bytes | bytearray) -> object:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return BadFrame(reason=BadFrameReason.PARSE_ERROR, detail=str(exc))


def _exact(value: object, frame: bytes | bytearray) -> object:
    """``value`` decoded from ``frame``, or a ``BadFrame`` if an integer in it was out of range."""
    if isinstance(value, BadFrame) or integers_exact(frame):
        return value
    return BadFrame(reason=BadFrameReason.PARSE_ERROR, detail=INEXACT_DETAIL)


class FrameDecoder:
    """Split one connection's incoming bytes into decoded JSON values."""

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, exact_integers: bool = False) -> None:
        """``exact_integers``: refuse (as a ``BadFrame``) a frame with an integer
        outside -2**63 .. 2**64-1, which would otherwise decode as a float."""
        if max_frame_size < 1:
            raise ValueError("max_frame_size must be positive")
        self._max = max_frame_size
        self._exact_integers = exact_integers
        # Frames that start before this position may hold an out-of-range
        # integer and get the exact check (only with ``exact_integers``).
        self._check_before = 0
        self._framing: Framing | None = None
        self._error: str | None = None
        # Unconsumed input is ``_buf[_off:]``.  Frames are consumed by moving
        # ``_off``; the prefix is dropped once per feed(), so many frames in
        # one chunk cost O(n), not O(n^2).  A frame in progress (unless being
        # skipped) starts at ``_off``.  All positions below index ``_buf``.
        self._buf = bytearray()
        self._off = 0
        # JSON text stream: the frame in progress, when one is being scanned.
        self._text = TextScanner()
        self._skipping = False  # too large: follow its structure, drop its bytes
        # The fast path does not apply before this position (no newline yet,
        # or orjson rejected that line): never try the same bytes twice.
        self._slow_until = 0
        # Content-Length.
        self._header_scan = 0  # where the search for the blank line resumes
        self._body_length = -1  # -1 while reading headers
        self._body_remaining = 0  # bytes of an oversized body still to drop

    @property
    def framing(self) -> Framing | None:
        """The framing detected on this connection; None until a non-whitespace byte arrived."""
        return self._framing

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf) - self._off

    def feed(self, data: bytes | bytearray | memoryview) -> list[object]:
        """Add bytes; return every complete frame now available, in order.

        Each item is the decoded JSON value (dict, list, str, int, float, bool,
        None) or a ``BadFrame``.  Raises ``RemoteProtocolError`` if the stream
        cannot be resynchronised and no frame came before the damage in this
        call; if some did, they are returned and ``error`` says what broke
        (the caller answers them first, then ends the connection).  Either way
        the decoder stays broken: every later call raises.
        """
        if self._error is not None:
            raise RemoteProtocolError(self._error)
        out: list[object] = []
        if not data:
            return out
        self._buf += data
        if self._framing is None:
            match = _NON_WHITESPACE.search(self._buf)
            if match is None:
                self._buf.clear()  # leading whitespace says nothing: don't keep it
                return out
            self._off = match.start()
            first = self._buf[self._off]
            self._framing = Framing.CONTENT_LENGTH if first in b"Cc" else Framing.NEWLINE
        if self._exact_integers:
            self._find_long_numbers(len(data))
        try:
            if self._framing is Framing.NEWLINE:
                self._run_stream(out)
            else:
                self._run_content_length(out)
        except RemoteProtocolError:
            if not out:
                raise
            return out  # self._error is set: see ``error``
        off = self._off
        if off:
            # Cheap in CPython: deleting a bytearray's prefix moves its start.
            del self._buf[:off]
            self._off = 0
            self._text.position -= off
            self._slow_until = max(self._slow_until - off, 0)
            self._header_scan = max(self._header_scan - off, 0)
            self._check_before = max(self._check_before - off, 0)
        return out

    def _find_long_numbers(self, added: int) -> None:
        """Note where the last digit run long enough to overflow ends (the new bytes, and the
        few before them that a run could straddle)."""
        buf = self._buf
        start = max(len(buf) - added - (LONG_RUN - 1), self._off)
        end = long_run_end(buf, start)
        if end >= 0:
            self._check_before = end

    @property
    def error(self) -> str | None:
        """Why the stream broke beyond repair, once it has; ``None`` while it is sound."""
        return self._error

    def feed_eof(self) -> list[object]:
        """The peer closed its side; return frames completed by EOF (a trailing top-level scalar).

        Raises ``RemoteProtocolError`` if part of a frame is pending; pending
        whitespace alone is fine.
        """
        if self._error is not None:
            raise RemoteProtocolError(self._error)
        out: list[object] = []
        if self._framing is Framing.NEWLINE:
            if self._text.kind == SCALAR:
                # Only EOF can end a bare number or literal that nothing follows.
                self._finish_frame(len(self._buf), out)
                self._buf.clear()
                self._off = self._slow_until = self._check_before = 0
            elif self._text.kind != IDLE:
                self._fail("connection closed in the middle of a JSON text")
        elif self._framing is Framing.CONTENT_LENGTH:
            if self._body_length >= 0:
                self._fail("connection closed in the middle of a Content-Length body")
            if self._off < len(self._buf):
                self._fail("connection closed in the middle of a Content-Length header")
        return out

    def _fail(self, message: str) -> NoReturn:
        self._error = message
        raise RemoteProtocolError(message)

    def _too_large(self) -> BadFrame:
        return BadFrame(reason=BadFrameReason.TOO_LARGE, detail=f"frame exceeds {self._max} bytes")

    # -- JSON text stream ------------------------------------------------------

    def _run_stream(self, out: list[object]) -> None:
        buf = self._buf
        end = len(buf)
        limit = self._max
        append = out.append
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        check_before = self._check_before
        # Fast path: a raw newline can never be inside a JSON value, so a line
        # that parses is exactly one frame.  The input is split into lines at
        # most once per feed (one C call and bytes slices measured faster than
        # find() and bytearray slices per frame); when the scanner takes over,
        # the line list resumes where it stops and is never split again.
        lines: list[bytes] | None = None
        count = index = line_start = 0
        while True:
            if self._text.kind != IDLE and not self._continue_frame(out):
                return
            off = self._off  # between frames: everything before it is consumed
            if off >= end:
                return
            if buf[off] in _WHITESPACE_SET:
                match = _NON_WHITESPACE.search(buf, off)
                if match is None:
                    self._off = end
                    return
                off = self._off = match.start()
            if off < self._slow_until:
                self._start_frame(buf[off])
                continue
            if lines is None:
                lines = bytes(buf[off:]).split(b"\n")
                partial = len(lines.pop())  # what follows the last newline is not a line yet
                count = len(lines)
                line_start = off
                if off >= check_before and end - off <= limit:
                    # Hot path: no line is too large or holds a long number,
                    # so map() decodes them all without a Python step per
                    # frame (~15% of the decode).  It stops at the first line
                    # that is not one frame; the scanner takes that one.
                    before = len(out)
                    try:
                        out += map(loads, lines)
                    except decode_error:
                        index = len(out) - before
                        off = line_start = off + sum(map(len, lines[:index])) + index
                        self._off = off
                        self._slow_until = off + len(lines[index])
                        continue
                    index = count
                    off = line_start = end - partial
            while index < count and off > line_start + len(lines[index]):
                line_start += len(lines[index]) + 1  # the scanner consumed it
                index += 1
            while index < count:
                line = lines[index]
                if off != line_start:
                    line = line[off - line_start :]  # the scanner took its start
                size = len(line)
                if size > limit:
                    self._slow_until = off + size
                    break
                try:
                    value = loads(line)
                except decode_error:
                    # Several documents on one line, a multi-line document or
                    # a bad one: the scanner finds where each frame ends.
                    self._slow_until = off + size
                    break
                if off < check_before:
                    value = _exact(value, line)
                append(value)
                off = line_start = off + size + 1
                index += 1
            else:
                self._slow_until = end
            self._off = off  # maybe at whitespace: the top of the loop skips it

    def _start_frame(self, first: int) -> None:
        self._text.start(first, self._off + 1)
        self._skipping = False

    def _continue_frame(self, out: list[object]) -> bool:
        """Scan the frame in progress onwards; True (and the frame emitted) if it ended."""
        end = len(self._buf)
        frame_end = self._text.advance(self._buf, end)
        if frame_end >= 0:
            self._finish_frame(frame_end, out)
            return True
        if self._skipping or end - self._off > self._max:
            # Too large: the scanner's state is all we need to find its end,
            # so drop the bytes and keep memory bounded.
            self._skipping = True
            self._off = end
        return False

    def _finish_frame(self, frame_end: int, out: list[object]) -> None:
        if self._skipping or frame_end - self._off > self._max:
            out.append(self._too_large())
        else:
            frame = self._buf[self._off : frame_end]
            value = _decode(frame)
            out.append(_exact(value, frame) if self._off < self._check_before else value)
        self._text.kind = IDLE
        self._skipping = False
        self._off = frame_end

    # -- Content-Length --------------------------------------------------------

    def _run_content_length(self, out: list[object]) -> None:
        buf = self._buf
        end = len(buf)
        limit = self._max
        off = self._off
        length = self._body_length
        while True:
            if length < 0:
                if off >= end:
                    break
                if buf[off] in _WHITESPACE_SET:
                    # Tolerate blank lines between frames (some peers end each
                    # body with CRLF); a header never starts with whitespace.
                    match = _NON_WHITESPACE.search(buf, off)
                    if match is None:
                        off = end
                        break
                    off = match.start()
                match = PLAIN_HEADER.match(buf, off)
                if match is not None:
                    length = int(match.group(1))
                    off = match.end()
                else:
                    # Resume a little early: the blank line may straddle the
                    # previous end of the buffer.
                    start = max(off, self._header_scan - len(HEADER_END) + 1)
                    blank = buf.find(HEADER_END, start, min(end, off + MAX_HEADER_BLOCK))
                    if blank < 0:
                        if end - off >= MAX_HEADER_BLOCK:
                            self._fail(f"header block exceeds {MAX_HEADER_BLOCK} bytes")
                        self._header_scan = end
                        break
                    try:
                        length = parse_header_block(bytes(buf[off:blank]))
                    except HeaderError as exc:
                        self._fail(str(exc))
                    off = blank + len(HEADER_END)
                self._header_scan = 0
                self._body_remaining = length
            if length > limit:
                # Count the body down without keeping it.
                if end - off < self._body_remaining:
                    self._body_remaining -= end - off
                    off = end
                    break
                off += self._body_remaining
                out.append(self._too_large())
            else:
                body_end = off + length
                if body_end > end:
                    break
                body = buf[off:body_end]
                value = _decode(body)
                out.append(_exact(value, body) if off < self._check_before else value)
                off = body_end
            length = -1
        self._off = off
        self._body_length = length
