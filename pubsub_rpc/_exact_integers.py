"""Which JSON integers survive decoding exactly, found cheaply.

orjson decodes integers exactly only between -2**63 and 2**64-1 and returns a
float beyond, silently losing digits.  The framing decoder uses these helpers
to refuse such frames instead (``FrameDecoder(exact_integers=True)``).
"""

from __future__ import annotations

import re
from typing import Final

# Integers orjson decodes exactly: -2**63 .. 2**64-1.  Beyond that it returns
# a float, silently losing digits, so a decoder with ``exact_integers`` refuses
# such a frame.  Only a number of at least 20 characters ("-" and 19 digits,
# or 20 digits) can be out of range, so a chunk is first mapped to digit
# classes ("-" counts as a digit) and searched for a run of 20: one
# translate and one rfind per read, a few percent of the parse.  Frames that
# may hold such a run are then tokenised exactly (rare).
MIN_INT: Final = -(2**63)
MAX_INT: Final = 2**64 - 1
LONG_RUN: Final = 20
_LONG_RUN_MARK: Final = b"0" * LONG_RUN
_DIGIT_CLASSES: Final = bytes(48 if 48 <= i <= 57 or i == 45 else 32 for i in range(256))
# Valid JSON (this runs after orjson accepted the frame) tokenised into
# strings and numbers; everything else (punctuation, literals) is skipped.
_STRING_OR_NUMBER: Final = re.compile(
    rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|-?[0-9]++(?:\.[0-9]++)?(?:[eE][-+]?[0-9]++)?', re.DOTALL
)
INEXACT_DETAIL: Final = "integer out of range: integers must lie between -2**63 and 2**64-1"


def integers_exact(frame: bytes | bytearray) -> bool:
    """Whether every integer in a valid JSON text decodes exactly (see ``LONG_RUN``)."""
    for match in _STRING_OR_NUMBER.finditer(frame):
        start, end = match.span()
        if end - start < LONG_RUN or frame[start] == 0x22:
            continue
        token = frame[start:end]
        if b"." in token or b"e" in token or b"E" in token:
            continue  # a float: inexact by nature, and the sender knows it
        digits = end - start - (frame[start] == 0x2D)
        if digits > LONG_RUN or not MIN_INT <= int(token) <= MAX_INT:
            return False
    return True


def long_run_end(buf: bytes | bytearray, start: int) -> int:
    """End of the last run of ``LONG_RUN`` digit-like bytes in ``buf[start:]``, or -1."""
    hit = buf[start:].translate(_DIGIT_CLASSES).rfind(_LONG_RUN_MARK)
    return -1 if hit < 0 else start + hit + LONG_RUN
