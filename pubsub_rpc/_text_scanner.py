"""Where a JSON text ends in a byte stream: found without parsing it, and resumable across reads.

The framing decoder's slow path uses this for texts that are not one per
line (pretty-printed, several on a line, or not complete yet).  Outside
strings only brackets change the nesting depth, and strings are skipped
whole, so one regular expression match covers most of a text.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["IDLE", "SCALAR", "STRUCTURED", "TextScanner"]

# What the scanner is in the middle of.
IDLE: Final = 0
STRUCTURED: Final = 1  # an object, array or string: ends by its structure
SCALAR: Final = 2  # a number, literal or garbage: ends at a delimiter or EOF

_QUOTE: Final = 0x22
_BACKSLASH: Final = 0x5C
_OPENERS: Final = (0x7B, 0x5B)  # { [

# Outside strings, skip all that cannot change the nesting depth: plain bytes
# and *complete* strings.  Stops at a bracket, at the quote opening a string
# that is not complete yet, or at the end.  Possessive quantifiers in
# unrolled-loop form keep it linear on hostile input.
_SKIP_PLAIN: Final = re.compile(rb'[^"{}\[\]]*+(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"[^"{}\[\]]*+)*+', re.DOTALL)
# Inside a string: up to the closing quote, a trailing lone backslash (whose
# escaped byte has not arrived yet), or the end.
_STRING_BODY: Final = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
# A bare top-level token ends at whitespace or where a structured value starts.
_SCALAR_END: Final = re.compile(rb'[ \t\r\n{\["]')


class TextScanner:
    """The scan of one JSON text in progress: its kind, how far it got, depth and string state."""

    __slots__ = ("depth", "escape", "in_string", "kind", "position")

    def __init__(self) -> None:
        self.kind = IDLE
        #: How far the text in progress has been scanned (an index into the caller's buffer).
        self.position = 0
        self.depth = 0
        self.in_string = False
        self.escape = False

    def start(self, first: int, position: int) -> None:
        """A text starts with the byte ``first``; the byte after it is at ``position``."""
        self.kind = SCALAR
        self.position = position
        self.escape = False
        if first in _OPENERS:
            self.kind = STRUCTURED
            self.depth = 1
            self.in_string = False
        elif first == _QUOTE:
            self.kind = STRUCTURED
            self.depth = 0
            self.in_string = True

    def advance(self, buf: bytes | bytearray, end: int) -> int:
        """Scan on up to ``end``: the position just past the text's end, or -1 if it goes on."""
        if self.kind == SCALAR:
            match = _SCALAR_END.search(buf, self.position)
            if match is not None:
                return match.start()
            self.position = end
            return -1
        return self._advance_structured(buf, end)

    def _advance_structured(self, buf: bytes | bytearray, end: int) -> int:
        pos = self.position
        depth = self.depth
        in_string = self.in_string
        frame_end = -1
        while True:
            if in_string:
                if self.escape:
                    if pos >= end:
                        break
                    pos += 1  # the escaped byte, whatever it is
                    self.escape = False
                match = _STRING_BODY.match(buf, pos)
                pos = end if match is None else match.end()
                if pos >= end:
                    break
                if buf[pos] == _BACKSLASH:  # the very last byte: its partner comes later
                    self.escape = True
                    pos = end
                    break
                pos += 1
                in_string = False
                if depth == 0:  # a top-level string
                    frame_end = pos
                    break
                continue
            match = _SKIP_PLAIN.match(buf, pos)
            pos = end if match is None else match.end()
            if pos >= end:
                break
            byte = buf[pos]
            pos += 1
            if byte == _QUOTE:
                in_string = True
            elif byte in _OPENERS:
                depth += 1
            else:
                depth -= 1  # mismatched closers count too: orjson reports them
                if depth == 0:
                    frame_end = pos
                    break
        self.position = pos
        self.depth = depth
        self.in_string = in_string
        return frame_end
