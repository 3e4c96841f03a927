"""The header block of Content-Length framing (the LSP base protocol), parsed strictly.

``FrameDecoder`` finds where a header block ends; this module says what it
means.  Only ``Content-Length`` matters (``Content-Type`` and the like are
skipped); anything that would let two parsers disagree about where the body
ends is refused.
"""

from __future__ import annotations

import re
from typing import Final

#: The blank line that ends a header block.
HEADER_END: Final = b"\r\n\r\n"
#: A header block is a few short lines; a longer one is an attack or another
#: protocol, and either way the body cannot be found.
MAX_HEADER_BLOCK: Final = 8 * 1024
#: The header block nearly everyone sends, in one match; the rest take
#: ``parse_header_block``, which gives the same answer for this form.
PLAIN_HEADER: Final = re.compile(rb"Content-Length: ?([0-9]{1,18})\r\n\r\n")
_MAX_LENGTH_DIGITS: Final = 18  # always fits an int64; more can only be hostile
_WHITESPACE: Final = b" \t\r\n"


class HeaderError(ValueError):
    """A header block that gives no single, well-formed body length."""


def parse_header_block(block: bytes) -> int:
    """The body length a header block (without its blank line) announces."""
    length = -1
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise HeaderError(f"header line without a colon: {line[:60]!r}")
        if name.strip().lower() != b"content-length":
            continue  # Content-Type and friends carry nothing we use
        if length >= 0:
            # Two lengths would let two parsers disagree about the body.
            raise HeaderError("duplicate Content-Length header")
        value = value.strip(_WHITESPACE)
        if not value.isdigit():  # ASCII digits only: no sign, no spaces
            raise HeaderError(f"invalid Content-Length: {value[:60]!r}")
        if len(value) > _MAX_LENGTH_DIGITS:
            raise HeaderError(f"Content-Length has more than {_MAX_LENGTH_DIGITS} digits")
        length = int(value)
    if length < 0:
        raise HeaderError("missing Content-Length header")
    return length
