"""Checking a server against the conformance vectors: matchers, and what it wrote on the wire.

Part of ``_conformance`` (split off to keep each file short): ``Captures``
implements the matchers and substitution of spec/README.md, section 14.4;
``Wire`` turns the bytes a server wrote on one connection into frames while
holding it to the exact output framing of sections 2.2 and 2.3; ``encode``
and ``split`` make the bytes of a ``send`` step.  No I/O.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any, Final

from ._errors import RemoteProtocolError
from ._frames import BadFrame, Framing
from ._framing import FrameDecoder

_MATCHER_KEYS: Final = frozenset(
    ("$capture", "$type", "$regex", "$ref", "$not_ref", "$template", "$literal", "$members")
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_TEMPLATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER = re.compile(rb"Content-Length: (\d+)\r\n\r\n")
_HEADER_START: Final = b"Content-Length: "
_WHITESPACE: Final = b" \t\r\n"
#: The id of the ping that ``Wire.barrier`` sends.
BARRIER_ID: Final = "pubsub-rpc-conformance::barrier"


class VectorError(Exception):
    """A vector (or the suite) is malformed: the fault is not the server's."""


class CaseFailure(Exception):
    """The server did not behave as the case says; the text says how."""


def canonical(value: Any) -> str:
    """Compact JSON that tells 1, 1.0 and true apart and keeps member order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any, limit: int = 300) -> str:
    text = canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def has_type(value: Any, kind: str) -> bool:
    """``value`` is of the vector type ``kind`` (``$type``)."""
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: type(v) is int,
        "number": lambda v: type(v) in (int, float),
        "boolean": lambda v: type(v) is bool,
        "null": lambda v: v is None,
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "any": lambda v: True,
        "uuid": lambda v: isinstance(v, str) and _UUID.match(v) is not None,
    }
    if kind not in checks:
        raise VectorError(f"unknown $type {kind!r}")
    return checks[kind](value)


def _is_matcher(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(key.startswith("$") for key in value)


class Captures:
    """The values a case captured (``$capture``), and matching and substitution with them."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self.values:
            raise VectorError(f"${name} used before it was captured")
        return self.values[name]

    def template(self, text: str) -> str:
        return _TEMPLATE.sub(lambda m: str(self.get(m.group(1))), text)

    def resolve(self, value: Any) -> Any:
        """A ``send``'s json with its ``$ref``, ``$template`` and ``$literal`` objects replaced."""
        if _is_matcher(value):
            if "$ref" in value:
                return self.get(value["$ref"])
            if "$template" in value:
                return self.template(value["$template"])
            if "$literal" in value:
                return value["$literal"]
            raise VectorError(f"cannot send the matcher {value!r}")
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def match(self, want: Any, got: Any, path: str) -> None:
        """Raise ``CaseFailure`` naming the first difference at or under ``path``."""
        if _is_matcher(want):
            self._matcher(want, got, path)
        elif isinstance(want, dict):
            if not isinstance(got, dict):
                raise CaseFailure(f"{path}: expected an object, got {_short(got)}")
            if list(got) != list(want):
                raise CaseFailure(f"{path}: expected members {list(want)}, got {list(got)}")
            for key, item in want.items():
                self.match(item, got[key], f"{path}.{key}")
        elif isinstance(want, list):
            if not isinstance(got, list) or len(got) != len(want):
                raise CaseFailure(f"{path}: expected {_short(want)}, got {_short(got)}")
            for position, (item, other) in enumerate(zip(want, got, strict=True)):
                self.match(item, other, f"{path}[{position}]")
        elif type(got) is not type(want) or got != want:
            raise CaseFailure(f"{path}: expected {_short(want)}, got {_short(got)}")

    def _matcher(self, want: dict[str, Any], got: Any, path: str) -> None:
        unknown = set(want) - _MATCHER_KEYS
        if unknown:
            raise VectorError(f"unknown matcher keys {sorted(unknown)}")
        if "$literal" in want and canonical(got) != canonical(want["$literal"]):
            raise CaseFailure(f"{path}: expected {_short(want['$literal'])}, got {_short(got)}")
        if "$ref" in want and canonical(got) != canonical(self.get(want["$ref"])):
            raise CaseFailure(
                f"{path}: expected ${want['$ref']} = {_short(self.get(want['$ref']))}, got {_short(got)}"
            )
        if "$template" in want and got != self.template(want["$template"]):
            raise CaseFailure(
                f"{path}: expected {_short(self.template(want['$template']))}, got {_short(got)}"
            )
        if "$type" in want and not has_type(got, want["$type"]):
            raise CaseFailure(f"{path}: expected a {want['$type']}, got {_short(got)}")
        if "$regex" in want and not (isinstance(got, str) and re.search(want["$regex"], got)):
            raise CaseFailure(f"{path}: expected a string matching {want['$regex']!r}, got {_short(got)}")
        if "$members" in want:
            self._members(want["$members"], got, path)
        not_refs = want.get("$not_ref", [])
        for name in [not_refs] if isinstance(not_refs, str) else not_refs:
            if canonical(got) == canonical(self.get(name)):
                raise CaseFailure(f"{path}: must differ from ${name}, but is {_short(got)}")
        if "$capture" in want:
            if want["$capture"] in self.values:
                raise VectorError(f"${want['$capture']} captured twice")
            self.values[want["$capture"]] = got

    def _members(self, members: Any, got: Any, path: str) -> None:
        # At least these members, each matching; for values a live server
        # cannot make exact (counters), with the others left unchecked.
        if not isinstance(members, dict) or not members:
            raise VectorError(f"$members must be a non-empty object, not {_short(members)}")
        if not isinstance(got, dict):
            raise CaseFailure(f"{path}: expected an object, got {_short(got)}")
        for key, item in members.items():
            if key not in got:
                raise CaseFailure(f"{path}: member {key!r} is missing from {_short(got)}")
            self.match(item, got[key], f"{path}.{key}")


def compare_frames(expected: list[Any], actual: list[Any], captures: Captures, *, conn: str) -> str | None:
    """Why the frames that arrived on ``conn`` do not match the expected ones, or None."""
    if len(actual) != len(expected):
        got = f": {_short(actual, 600)}" if actual else ""
        return f"expected {len(expected)} frame(s) on {conn!r}, got {len(actual)}{got}"
    for position, (want, got) in enumerate(zip(expected, actual, strict=True)):
        try:
            captures.match(want, got, f"{conn}[{position}]")
        except CaseFailure as exc:
            return f"{exc} (in {_short(got)})"
    return None


# -- the bytes of a send ------------------------------------------------------------


def encode(step: dict[str, Any], message: Any) -> bytes:
    """The bytes of a ``send`` step; ``message`` is its json after ``Captures.resolve``."""
    if "text" in step:
        return str(step["text"]).encode("utf-8")
    if "hex" in step:
        return bytes.fromhex(step["hex"])
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    framing = step.get("framing", "newline")
    if framing == "newline":
        return body + b"\n"
    if framing == "content-length":
        return b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    if framing == "none":
        return body
    raise VectorError(f"unknown framing {framing!r}")


def split(data: bytes, how: str | list[int]) -> list[bytes]:
    """The pieces a ``send`` step writes separately: ``whole``, ``bytes`` or cut before offsets."""
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    if isinstance(how, str):
        raise VectorError(f"unknown split {how!r}")
    cuts = list(how)
    if not cuts or cuts != sorted(set(cuts)) or cuts[0] < 1 or cuts[-1] >= len(data):
        raise VectorError(f"split offsets {cuts} do not fit {len(data)} bytes")
    return [data[start:end] for start, end in itertools.pairwise([0, *cuts, len(data)])]


# -- what came back -------------------------------------------------------------------


class Wire:
    """One connection as the peer sees it: the framing it speaks and the frames the server wrote.

    ``sent`` records what the peer wrote (its first non-whitespace byte fixes
    the framing the server must answer in); ``received`` takes what the server
    wrote, in any pieces, and raises ``CaseFailure`` as soon as it breaks the
    output rules: each frame compact JSON then LF, or exactly
    ``Content-Length: n\\r\\n\\r\\n`` and the body, in the peer's framing.
    """

    def __init__(self) -> None:
        self._decoder = FrameDecoder(max_frame_size=1 << 30)  # no size limit of our own
        self._first: int | None = None
        self._outgoing: FrameDecoder | None = FrameDecoder(max_frame_size=1 << 30)  # None: broken
        self._raw = bytearray()  # received bytes that do not yet make a whole frame
        self._whole = 0  # frames completed by the strict reading
        self._decoded = 0  # frames completed by the decoder
        self.frames: list[Any] = []  # decoded, not yet taken

    @property
    def peer_framing(self) -> Framing:
        return Framing.CONTENT_LENGTH if self._first in (ord("C"), ord("c")) else Framing.NEWLINE

    @property
    def framing(self) -> Framing | None:
        """The framing the server writes in; None until it wrote something."""
        return self._decoder.framing

    @property
    def pending(self) -> int:
        """Bytes of a frame the server has started but not finished."""
        return len(self._raw)

    def ready(self, count: int) -> bool:
        """At least ``count`` frames have arrived and nothing is half-way."""
        return len(self.frames) >= count and not self._raw and self._decoded == self._whole

    def take(self) -> list[Any]:
        frames, self.frames = self.frames, []
        return frames

    def sent(self, data: bytes) -> None:
        if self._first is None:
            self._first = next((byte for byte in data if byte not in _WHITESPACE), None)
        if self._outgoing is not None:
            try:
                self._outgoing.feed(data)
            except RemoteProtocolError:
                self._outgoing = None

    def barrier(self) -> bytes | None:
        """A ping to send after all the peer sent, or None if the peer stopped mid-frame.

        The server handles a connection's frames in order and writes every
        frame in the order it was queued, events included (spec/README.md,
        9), so the ping's answer comes after everything the server will ever
        write because of what was sent before; ``take_barrier`` finds it.  Not
        possible (None) while the peer's last frame is unfinished or its
        framing broken: the ping would change what the case sent.
        """
        if self._outgoing is None or self._outgoing.buffered:
            return None
        body = canonical({"jsonrpc": "2.0", "method": "ping", "id": BARRIER_ID}).encode()
        if self.peer_framing is Framing.CONTENT_LENGTH:
            return b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        return body + b"\n"

    def take_barrier(self) -> bool:
        """Drop the answer to ``barrier()`` if it has arrived (the frames around it stay)."""
        for position, frame in enumerate(self.frames):
            if isinstance(frame, dict) and frame.get("id") == BARRIER_ID:
                del self.frames[position]
                return True
        return False

    def received(self, data: bytes | bytearray) -> None:
        try:
            frames = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            raise CaseFailure(f"the server's output cannot be read: {exc}") from None
        framing = self._decoder.framing
        if framing is not None and framing is not self.peer_framing:
            raise CaseFailure(
                f"the server writes {framing.value} framing to a peer that speaks {self.peer_framing.value}"
            )
        for frame in frames:
            if isinstance(frame, BadFrame):
                raise CaseFailure(f"the server wrote a frame that is not JSON: {frame.detail}")
        self.frames += frames
        self._decoded += len(frames)
        self._raw += data
        self._cut()
        if not self._raw and self._decoded != self._whole:
            raise CaseFailure(f"the server wrote {self._decoded} JSON texts in {self._whole} frame(s)")

    def _cut(self) -> None:
        raw = self._raw
        if self.peer_framing is Framing.NEWLINE:
            while (end := raw.find(b"\n")) >= 0:
                line = bytes(raw[:end])
                if not line or line[:1] in _WHITESPACE or line[-1:] in _WHITESPACE:
                    raise CaseFailure(f"not one frame per line: {line[:80]!r}")
                self._whole += 1
                del raw[: end + 1]
            return
        while raw:
            header = _HEADER.match(raw)
            if header is None:
                if not _could_be_header(bytes(raw[:64])):
                    raise CaseFailure(f"not a Content-Length frame: {bytes(raw[:60])!r}")
                return
            end = header.end() + int(header.group(1))
            if len(raw) < end:
                return
            self._whole += 1
            del raw[:end]


def _could_be_header(text: bytes) -> bool:
    """``text`` may grow into exactly ``Content-Length: <n>\\r\\n\\r\\n``."""
    if len(text) <= len(_HEADER_START):
        return _HEADER_START.startswith(text)
    if not text.startswith(_HEADER_START):
        return False
    rest = text[len(_HEADER_START) :]
    digits = len(rest) - len(rest.lstrip(b"0123456789"))
    return digits > 0 and b"\r\n\r\n".startswith(rest[digits:]) if rest[digits:] else digits <= 20
