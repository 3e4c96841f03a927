"""The conformance vectors of ``spec/``, without I/O: find, load and interpret them.

One implementation of the vector semantics (spec/README.md, section 14) for
every runner: tests/test_spec_vectors.py drives a ``ServerConnection`` with
it, ``pubsub-rpc conformance`` drives sockets.  ``CaseRun.actions()`` turns a
case into primitive actions (open, send these pieces, expect n frames, ...);
a driver performs each one, feeding whatever the server writes on a
connection into that connection's ``Wire``, and sends back the set of
connections the server has closed (or is closing).  The generator then
checks what arrived and raises ``CaseFailure`` on a mismatch, or
``VectorError`` if the vector itself is wrong.  The matchers and the output
checks are in ``_vector_checks``.  Standard library and orjson only.
"""

from __future__ import annotations

import json
import os
import sysconfig
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

from ._frames import DEFAULT_MAX_FRAME_SIZE, Framing
from ._messages import ClientInfo
from ._server import DEFAULT_MAX_BATCH, DEFAULT_MAX_OUTBOUND
from ._vector_checks import Captures, CaseFailure, VectorError, Wire, compare_frames, encode, split

__all__ = [
    "DEFAULT_LIMITS",
    "SPEC_DIR_ENV",
    "Action",
    "Captures",
    "Case",
    "CaseFailure",
    "CaseRun",
    "Close",
    "Expect",
    "ExpectClosed",
    "HalfClose",
    "Open",
    "Send",
    "Settle",
    "SpecNotFoundError",
    "Suite",
    "VectorError",
    "Wire",
    "compare_frames",
    "find_spec_dir",
    "load_json",
    "load_suite",
    "skip_reason",
]

#: Where to look for ``spec/`` first (after an explicit directory).
SPEC_DIR_ENV: Final = "PUBSUB_RPC_SPEC_DIR"
#: The server limits a case without ``options`` assumes (spec/README.md, 2.4, 7.2, 8).
DEFAULT_LIMITS: Final[Mapping[str, int]] = {
    "max_frame_size": DEFAULT_MAX_FRAME_SIZE,
    "max_batch": DEFAULT_MAX_BATCH,
    "max_outbound": DEFAULT_MAX_OUTBOUND,
}
_STEP_KINDS: Final = frozenset(("send", "expect", "expect_nothing", "close", "eof", "expect_closed"))


class SpecNotFoundError(Exception):
    """No usable ``spec/`` directory was found (or the one given is not one)."""


# -- finding and loading -------------------------------------------------------------


def find_spec_dir(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """``explicit``, else $PUBSUB_RPC_SPEC_DIR, else the source checkout, else the installed copy."""
    env = os.environ if environ is None else environ
    given = explicit if explicit is not None else env.get(SPEC_DIR_ENV) or None
    if given is not None:
        path = Path(given)
        if not _is_spec_dir(path):
            raise SpecNotFoundError(f"{path}: not a pubsub-rpc spec directory (no vectors/clients.json)")
        return path
    data_dirs = {
        sysconfig.get_path("data"),
        sysconfig.get_path("data", sysconfig.get_preferred_scheme("user")),
    }
    candidates = [Path(__file__).resolve().parents[1] / "spec"]  # a checkout (editable install)
    candidates += [Path(root) / "share" / "pubsub-rpc" / "spec" for root in sorted(data_dirs)]
    for path in candidates:
        if _is_spec_dir(path):
            return path
    raise SpecNotFoundError(
        f"cannot find the conformance vectors: give their directory or set {SPEC_DIR_ENV}"
    )


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
    steps: tuple[dict[str, Any], ...]
    xfail: str | None = None

    @property
    def needs_trusted(self) -> bool:
        return any(self.connections.values())

    @property
    def half_closes(self) -> bool:
        return any("eof" in step for step in self.steps)


@dataclass(frozen=True, slots=True)
class Suite:
    """A spec directory: the clients a server under test registers, and every case."""

    root: Path
    clients: tuple[ClientInfo, ...]
    cases: tuple[Case, ...]


def load_json(path: Path) -> Any:
    """A vector or schema file (stdlib json: it keeps 1 and 1.0 apart and big integers whole)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VectorError(f"{path}: cannot read it ({exc})") from None


_RULE_KEYS: Final = ("publish_allow", "publish_deny", "subscribe_allow", "subscribe_deny")


def _rules(item: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(item[key]) for key in _RULE_KEYS if key in item}


def load_suite(spec_dir: str | os.PathLike[str] | None = None) -> Suite:
    """Load clients.json and every case file of ``find_spec_dir(spec_dir)``."""
    root = find_spec_dir(spec_dir)
    vectors = root / "vectors"
    try:
        clients = tuple(
            ClientInfo(
                item["id"],
                can_publish=item["can_publish"],
                can_subscribe=item["can_subscribe"],
                can_inspect=item.get("can_inspect", False),
                # Optional per-name rules (arrays of patterns), as in a clients file.
                **_rules(item),
            )
            for item in load_json(vectors / "clients.json")["clients"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VectorError(f"{vectors / 'clients.json'}: malformed ({exc!r})") from None
    cases: list[Case] = []
    for path in sorted(vectors.glob("*.json")):
        if path.name != "clients.json":
            document = load_json(path)
            raw_cases = document.get("cases") if isinstance(document, dict) else None
            if not isinstance(raw_cases, list):
                raise VectorError(f"{path}: no list of cases")
            cases += [_case(raw, path.name) for raw in raw_cases]
    if len({case.name for case in cases}) != len(cases):
        raise VectorError(f"{vectors}: two cases have the same name")
    return Suite(root, clients, tuple(cases))


def _case(raw: Any, file: str) -> Case:
    if not isinstance(raw, dict):
        raise VectorError(f"{file}: a case must be an object")
    name, connections, steps = raw.get("name"), raw.get("connections"), raw.get("steps")
    options = raw.get("options", {})
    where = f"{file}: case {name!r}"
    if not (isinstance(name, str) and isinstance(connections, dict) and isinstance(steps, list) and steps):
        raise VectorError(f"{where}: needs a name, connections and steps")
    if not all(isinstance(spec, dict) for spec in connections.values()):
        raise VectorError(f"{where}: a connection must be an object")
    if not isinstance(options, dict) or not set(options) <= set(DEFAULT_LIMITS):
        raise VectorError(f"{where}: unknown options {options!r}")
    for step in steps:
        if not (isinstance(step, dict) and len(step) == 1 and set(step) <= _STEP_KINDS):
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
    """Why a runner must skip ``case`` (spec/README.md, 14.2), or None to run it.

    ``trusted``: the runner can open trusted connections.  ``limits``: the
    limits of the one server under test (missing ones are the defaults); None
    if the runner gives each case the limits it asks for.  ``half_close``:
    the transport can shut down its sending side (TLS cannot).
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


# -- interpreting a case -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """Open connection ``conn`` (trusted or not) on a server with ``options`` as its limits."""

    conn: str
    trusted: bool
    options: Mapping[str, int]
    wire: Wire = field(repr=False)


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``pieces`` on ``conn``, each as a write of its own."""

    conn: str
    pieces: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Expect:
    """Read ``conn`` until ``count`` frames are there (timing out if not); for 0, a quiet period."""

    conn: str
    count: int


@dataclass(frozen=True, slots=True)
class ExpectClosed:
    """Read ``conn`` until the server closes it (or a timeout)."""

    conn: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn`` abruptly, losing what is unread; give the server time to notice."""

    conn: str


@dataclass(frozen=True, slots=True)
class HalfClose:
    """Shut down the sending side of ``conn`` (EOF); keep reading."""

    conn: str


@dataclass(frozen=True, slots=True)
class Settle:
    """The end of the case: read ``conns`` for a quiet period, for any frame nobody expected."""

    conns: tuple[str, ...]


Action: TypeAlias = Open | Send | Expect | ExpectClosed | Close | HalfClose | Settle
#: What a driver sends back after each action: the connections the server has closed (or is closing).
ClosedByServer: TypeAlias = frozenset[str]
_Steps: TypeAlias = Generator[Action, ClosedByServer, None]


class CaseRun:
    """One run of one case.  Drive ``actions()``; hooks see what was sent and matched.

    A driver that hits a ``CaseFailure`` while performing an action (a
    ``Wire`` refusing the server's output, say) throws it into the generator,
    which re-raises it naming the step.

    ``on_sent(conn, message)`` gets each JSON value sent; ``on_frames(conn,
    frames)`` the frames of each ``expect`` once they matched (the core test
    validates them against the message schemas there).
    """

    def __init__(
        self,
        case: Case,
        *,
        on_sent: Callable[[str, Any], None] | None = None,
        on_frames: Callable[[str, list[Any]], None] | None = None,
    ) -> None:
        self.case = case
        self.captures = Captures()
        self.wires = {name: Wire() for name in case.connections}
        self._on_sent = on_sent
        self._on_frames = on_frames
        self._dirty: set[str] = set()  # sent since last checked
        self._gone: set[str] = set()  # closed by the peer (close step)
        self._seen_closed: set[str] = set()  # expect_closed passed

    def actions(self) -> _Steps:
        for name, trusted in self.case.connections.items():
            yield Open(name, trusted, self.case.options, self.wires[name])
        for number, step in enumerate(self.case.steps, start=1):
            ((kind, arg),) = step.items()
            try:
                yield from getattr(self, f"_{kind}")(arg)
            except CaseFailure as exc:
                raise CaseFailure(f"step {number} ({kind}): {exc}") from None
            except VectorError as exc:
                raise VectorError(f"{self.case.name}: step {number} ({kind}): {exc}") from None
        open_conns = tuple(name for name in self.wires if name not in self._gone)
        try:
            closed = yield Settle(open_conns)
        except CaseFailure as exc:
            raise CaseFailure(f"at the end: {exc}") from None
        for name in open_conns:
            unread = self.wires[name].take()
            if unread:
                raise CaseFailure(f"at the end: {compare_frames([], unread, self.captures, conn=name)}")
            if name in closed and name not in self._seen_closed:
                raise CaseFailure(f"at the end: the server closed {name!r}, which the case does not expect")

    def _usable(self, name: str) -> Wire:
        if name not in self.wires:
            raise VectorError(f"undeclared connection {name!r}")
        if name in self._gone:
            raise VectorError(f"connection {name!r} was closed by an earlier step")
        return self.wires[name]

    def _send(self, step: dict[str, Any]) -> _Steps:
        name = step["conn"]
        wire = self._usable(name)
        others = sorted(self._dirty - {name})
        if others:
            raise VectorError(f"send on {name!r} before checking {others}: a live runner would race")
        message = self.captures.resolve(step["json"]) if "json" in step else None
        data = encode(step, message)
        wire.sent(data)
        yield Send(name, tuple(split(data, step.get("split", "whole"))))
        self._dirty.add(name)
        if message is not None and self._on_sent is not None:
            self._on_sent(name, message)

    def _expect(self, step: dict[str, Any]) -> _Steps:
        name, expected = step["conn"], step["frames"]
        wire = self._usable(name)
        closed = yield Expect(name, len(expected))
        actual = wire.take()
        problem = compare_frames(expected, actual, self.captures, conn=name)
        if problem is not None:
            if len(actual) != len(expected):
                problem += f" ({wire.pending} bytes of a frame more)" if wire.pending else ""
                problem += " and the server closed the connection" if name in closed else ""
            raise CaseFailure(problem)
        if "framing" in step and wire.framing is not Framing(step["framing"]):
            raise CaseFailure(f"{name!r}: expected {step['framing']} framing, got {wire.framing}")
        if self._on_frames is not None:
            self._on_frames(name, actual)
        self._dirty.discard(name)

    def _expect_nothing(self, name: str) -> _Steps:
        yield from self._expect({"conn": name, "frames": []})

    def _close(self, name: str) -> _Steps:
        self._usable(name)
        yield Close(name)
        self._gone.add(name)
        self._dirty.discard(name)

    def _eof(self, name: str) -> _Steps:
        self._usable(name)
        yield HalfClose(name)
        self._dirty.add(name)

    def _expect_closed(self, name: str) -> _Steps:
        wire = self._usable(name)
        closed = yield ExpectClosed(name)
        unread = wire.take()
        if unread:
            raise CaseFailure(compare_frames([], unread, self.captures, conn=name) or "")
        if name not in closed:
            raise CaseFailure(f"the server did not close {name!r}")
        self._seen_closed.add(name)
        self._dirty.discard(name)
