"""The conformance vectors of ``spec/``, without I/O: find, load, match and interpret them.

One implementation of the vector semantics (spec/README.md, section 14) for
every runner: tests/test_spec_vectors.py drives a ``ServerConnection`` with
it, ``pubsub-rpc conformance`` drives sockets.  ``CaseRun.actions()`` turns a
case into primitive actions (open, send these chunks, expect n frames, ...);
a driver performs each one, feeding what the server writes into the action's
``Wire``, and sends back the set of connections the server has closed.  The
generator then checks what arrived and raises ``CaseFailure`` on a mismatch.
Standard library and orjson only: no trio here.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sysconfig
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

from ._errors import RemoteProtocolError
from ._framing import DEFAULT_MAX_FRAME_SIZE, BadFrame, FrameDecoder, Framing
from ._messages import ClientInfo
from ._server import DEFAULT_MAX_BATCH, DEFAULT_MAX_OUTBOUND

#: Where to look for ``spec/`` before the checkout and the installed copy.
SPEC_DIR_ENV: Final = "PUBSUB_RPC_SPEC_DIR"
#: The server limits a case without ``options`` assumes (spec/README.md, 2.4, 7.2, 8).
DEFAULT_LIMITS: Final[Mapping[str, int]] = {
    "max_frame_size": DEFAULT_MAX_FRAME_SIZE,
    "max_batch": DEFAULT_MAX_BATCH,
    "max_outbound": DEFAULT_MAX_OUTBOUND,
}
STEP_KINDS: Final = frozenset(("send", "expect", "expect_nothing", "close", "eof", "expect_closed"))
_MATCHER_KEYS: Final = frozenset(("$capture", "$type", "$regex", "$ref", "$not_ref", "$template", "$literal"))
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_TEMPLATE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER = re.compile(rb"Content-Length: (\d+)\r\n\r\n")
_HEADER_START: Final = b"Content-Length: "


class SpecNotFoundError(Exception):
    """No usable ``spec/`` directory was found (or the one given is not one)."""


class VectorError(Exception):
    """A vector (or the suite) is malformed: the fault is not the server's."""


class CaseFailure(Exception):
    """The server did not behave as the case says; the text says how."""


# -- finding and loading ------------------------------------------------------------


def find_spec_dir(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The spec directory: ``explicit``, else $PUBSUB_RPC_SPEC_DIR, else the checkout, else the installed copy."""
    env = os.environ if environ is None else environ
    given = explicit if explicit is not None else env.get(SPEC_DIR_ENV) or None
    if given is not None:
        path = Path(given)
        if not _is_spec_dir(path):
            raise SpecNotFoundError(f"{path}: not a pubsub-rpc spec directory (no vectors/clients.json)")
        return path
    roots = [sysconfig.get_path("data"), sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))]
    candidates = [Path(__file__).resolve().parents[1] / "spec"]
    candidates += [Path(root) / "share" / "pubsub-rpc" / "spec" for root in roots]
    for path in candidates:
        if _is_spec_dir(path):
            return path
    raise SpecNotFoundError(f"cannot find the conformance vectors: give their directory or set {SPEC_DIR_ENV}")


def _is_spec_dir(path: Path) -> bool:
    return (path / "vectors" / "clients.json").is_file()


@dataclass(frozen=True, slots=True)
class Case:
    """One conformance case, as its vector file gives it."""

    name: str
    file: str
    description: str
    connections: Mapping[str, bool]  # name -> trusted, in the order they are opened
    options: Mapping[str, int]
    steps: tuple[Mapping[str, Any], ...]
    xfail: str | None = None

    @property
    def needs_trusted(self) -> bool:
        return any(self.connections.values())

    @property
    def half_closes(self) -> bool:
        return any("eof" in step for step in self.steps)


@dataclass(frozen=True, slots=True)
class Suite:
    """Every case of a spec directory, and the clients the server under test must register."""

    root: Path
    clients: tuple[ClientInfo, ...]
    cases: tuple[Case, ...]


def load_json(path: Path) -> Any:
    """A vector or schema file (stdlib json: it keeps 1 and 1.0 apart and big integers whole)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VectorError(f"{path}: cannot read it ({exc})") from None


def load_suite(spec_dir: str | os.PathLike[str] | None = None) -> Suite:
    """Load clients.json and every case file of ``find_spec_dir(spec_dir)``."""
    root = find_spec_dir(spec_dir)
    vectors = root / "vectors"
    try:
        clients = tuple(
            ClientInfo(item["id"], can_publish=item["can_publish"], can_subscribe=item["can_subscribe"])
            for item in load_json(vectors / "clients.json")["clients"]
        )
    except (KeyError, TypeError) as exc:
        raise VectorError(f"{vectors / 'clients.json'}: malformed ({exc!r})") from None
    cases = [
        _case(raw, path.name)
        for path in sorted(vectors.glob("*.json"))
        if path.name != "clients.json"
        for raw in _cases_of(path)
    ]
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise VectorError(f"{vectors}: case names repeat")
    return Suite(root, clients, tuple(cases))


def _cases_of(path: Path) -> list[Any]:
    cases = load_json(path).get("cases") if isinstance(load_json(path), dict) else None
    if not isinstance(cases, list):
        raise VectorError(f"{path}: no 'cases' list")
    return cases


def _case(raw: Any, file: str) -> Case:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"{file}: case {name!r}"
    connections, options, steps = (raw.get(key) if isinstance(raw, dict) else None for key in
                                   ("connections", "options", "steps"))
    if not isinstance(name, str) or not isinstance(connections, dict) or not isinstance(steps, list):
        raise VectorError(f"{where}: needs a name, connections and steps")
    if not all(isinstance(spec, dict) for spec in connections.values()):
        raise VectorError(f"{where}: a connection must be an object")
    options = options or {}
    if not isinstance(options, dict) or not set(options) <= set(DEFAULT_LIMITS):
        raise VectorError(f"{where}: unknown options {options!r}")
    for step in steps:
        if not isinstance(step, dict) or len(step) != 1 or not set(step) <= STEP_KINDS:
            raise VectorError(f"{where}: not a step: {step!r}")
    return Case(
        name=name,
        file=file,
        description=str(raw.get("description", "")),
        connections={conn: bool(spec.get("trusted", False)) for conn, spec in connections.items()},
        options=dict(options),
        steps=tuple(steps),
        xfail=raw.get("xfail"),
    )


def skip_reason(
    case: Case, *, trusted: bool, limits: Mapping[str, int] | None = None, half_close: bool = True
) -> str | None:
    """Why a runner must skip ``case`` (spec 14.2), or None.

    ``trusted``: the runner can open trusted connections.  ``limits``: the
    limits of the server under test (missing ones are the defaults), or None
    if the runner sets each case's own.  ``half_close``: the transport can
    shut down its sending side (TLS cannot).
    """
    if case.needs_trusted and not trusted:
        return "needs a trusted connection"
    if limits is not None:
        server, wanted = {**DEFAULT_LIMITS, **limits}, {**DEFAULT_LIMITS, **case.options}
        if server != wanted:
            differ = ", ".join(f"{key}={value}" for key, value in wanted.items() if server[key] != value)
            return f"needs server limits {differ}"
    if case.half_closes and not half_close:
        return "half-closes a connection, which this transport cannot do"
    return None


# -- matching -----------------------------------------------------------------------


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
            raise CaseFailure(f"{path}: expected {_short(self.template(want['$template']))}, got {_short(got)}")
        if "$type" in want and not has_type(got, want["$type"]):
            raise CaseFailure(f"{path}: expected a {want['$type']}, got {_short(got)}")
        if "$regex" in want and not (isinstance(got, str) and re.search(want["$regex"], got)):
            raise CaseFailure(f"{path}: expected a string matching {want['$regex']!r}, got {_short(got)}")
        not_refs = want.get("$not_ref", [])
        for name in [not_refs] if isinstance(not_refs, str) else not_refs:
            if canonical(got) == canonical(self.get(name)):
                raise CaseFailure(f"{path}: must differ from ${name}, but is {_short(got)}")
        if "$capture" in want:
            if want["$capture"] in self.values:
                raise VectorError(f"${want['$capture']} captured twice")
            self.values[want["$capture"]] = got


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
