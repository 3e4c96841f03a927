"""The conformance vectors in spec/ run against the sans-IO core.

This checks that every vector file has the shape spec/vector.schema.json
pins, that the message schemas in spec/schemas are valid and agree with what
the server accepts and writes, and then runs every case: a fresh Broker with
the registered clients of clients.json, one ServerConnection per vector
connection, bytes in with ``receive_data`` (split as the step says), frames
out of ``data_to_send``.  The semantics of every step and matcher live in
``pubsub_rpc._conformance`` (shared with ``pubsub-rpc conformance``, which
runs the same cases against a live server); this file only performs its
actions on the core.  Expected frames must match exactly and completely:
same frames, same order, same object key order, written exactly in the
peer's framing, nothing left over.  The semantics are specified in
spec/README.md ("Conformance vectors").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from server_helpers import started_broker

from pubsub_rpc import RemoteProtocolError, ServerConnection
from pubsub_rpc._conformance import (
    SPEC_DIR_ENV,
    Action,
    Captures,
    Case,
    CaseFailure,
    CaseRun,
    Close,
    Expect,
    ExpectClosed,
    HalfClose,
    Open,
    Send,
    Settle,
    SpecNotFoundError,
    VectorError,
    Wire,
    find_spec_dir,
    load_json,
    load_suite,
    skip_reason,
)
from pubsub_rpc._vector_checks import canonical

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec"
VECTORS = SPEC / "vectors"
SCHEMAS = SPEC / "schemas"

MIN_CASES = 100
METHODS = frozenset(("publish", "subscribe", "unsubscribe", "ping", "stats"))
# Answers with these codes mean "the request was malformed": its schema must reject it.
MALFORMED = frozenset((-32600, -32602))
# Answers with these codes refuse a well-formed request: its schema must accept it.
REFUSED = frozenset((-32001, -32002, -32003, -32004, -32005, -32011))


VECTOR_SCHEMA = load_json(SPEC / "vector.schema.json")
VECTOR_FILES = sorted(VECTORS.glob("*.json"))
CASE_FILES = [path for path in VECTOR_FILES if path.name != "clients.json"]
CASES = [case for path in CASE_FILES for case in load_json(path)["cases"]]
# The same cases through the shared loader (the explicit directory: this checkout's spec/).
SUITE = load_suite(SPEC)

MESSAGE_SCHEMAS = {
    path.name.removesuffix(".json"): load_json(path) for path in sorted(SCHEMAS.glob("*.json"))
}
_REGISTRY: Registry = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in MESSAGE_SCHEMAS.values()
)
VALIDATORS = {
    name: Draft202012Validator(schema, registry=_REGISTRY) for name, schema in MESSAGE_SCHEMAS.items()
}


def _validate(name: str, message: Any) -> None:
    errors = sorted(VALIDATORS[name].iter_errors(message), key=str)
    assert not errors, f"{name} schema rejects {message!r}: {errors[0].message}"


def _is_valid(name: str, message: Any) -> bool:
    return VALIDATORS[name].is_valid(message)


# -- static checks ---------------------------------------------------------------


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[path.name for path in VECTOR_FILES])
def test_vector_file_matches_vector_schema(path: Path) -> None:
    validator = Draft202012Validator(VECTOR_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(load_json(path)), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_schemas_are_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(VECTOR_SCHEMA)
    for schema in MESSAGE_SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


_PING = {"jsonrpc": "2.0", "method": "ping", "id": 1}
_PUBLISH = {"event_name": "e", "value": None, "client_id": "c"}
# Schemas the vectors cannot reach through answers (nothing answers a plain notification).
SCHEMA_EXAMPLES = [
    ("publish.notification", {"jsonrpc": "2.0", "method": "publish", "params": _PUBLISH}, True),
    ("publish.notification", {"jsonrpc": "2.0", "method": "publish", "params": ["e", 1]}, True),
    ("publish.notification", {"jsonrpc": "2.0", "method": "publish", "params": _PUBLISH, "id": None}, False),
    (
        "publish.notification",
        {"jsonrpc": "2.0", "method": "publish", "params": {**_PUBLISH, "request_id": "r"}},
        False,
    ),
    ("publish.notification", {"jsonrpc": "2.0", "method": "publish", "params": {"event_name": "e"}}, False),
    (
        "subscribe.notification",
        {"jsonrpc": "2.0", "method": "subscribe", "params": {"event_name": "e"}},
        True,
    ),
    ("unsubscribe.notification", {"jsonrpc": "2.0", "method": "unsubscribe", "params": ["s", None]}, True),
    ("ping.notification", {"jsonrpc": "2.0", "method": "ping"}, True),
    ("ping.notification", {"jsonrpc": "2.0", "method": "ping", "params": [1]}, False),
    (
        "publish.request.pub_sub",
        {"jsonrpc": "2.0", "method": "publish", "params": ["e", 1, None, "r"]},
        False,
    ),
    (
        "publish.request.pub_sub",
        {"jsonrpc": "2.0", "method": "publish", "params": {**_PUBLISH, "request_id": "r"}, "id": 1},
        False,
    ),
    ("batch.request", [], False),
    ("batch.request", [_PING, {"jsonrpc": "2.0", "method": "ping", "params": {"request_id": "r"}}], True),
    ("batch.request", [_PING, 5], False),
    ("client-message", _PING, True),
    ("client-message", {"jsonrpc": "2.0", "method": "frobnicate", "id": 1}, False),
    ("client-message", {"jsonrpc": "2.0", "method": "ping", "id": True}, False),
    ("event", {"jsonrpc": "2.0", "method": "event", "params": {"event_name": "e", "value": 1}}, False),
    ("batch.answer", [], False),
    ("server-message", {"jsonrpc": "2.0", "result": None, "id": 1}, False),
]


@pytest.mark.parametrize(("schema", "message", "valid"), SCHEMA_EXAMPLES)
def test_schema_examples(schema: str, message: Any, valid: bool) -> None:
    assert _is_valid(schema, message) is valid


def test_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES


def test_the_shared_loader_sees_every_case() -> None:
    assert SUITE.root == SPEC
    assert [case.name for case in SUITE.cases] == [case["name"] for case in CASES]
    assert [(c.id, c.can_publish, c.can_subscribe, c.can_inspect) for c in SUITE.clients] == [
        (c["id"], c["can_publish"], c["can_subscribe"], c.get("can_inspect", False))
        for c in load_json(VECTORS / "clients.json")["clients"]
    ]


def test_case_names_unique() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names))


def test_event_names_belong_to_one_case() -> None:
    # A live runner runs every case against one server: cases must not share events.
    owner: dict[str, str] = {}
    for case in CASES:
        for step in case["steps"]:
            sent = step.get("send", {}).get("json")
            for message in sent if isinstance(sent, list) else [sent]:
                params = message.get("params") if isinstance(message, dict) else None
                name = params.get("event_name") if isinstance(params, dict) else None
                if isinstance(name, str) and name:
                    assert owner.setdefault(name, case["name"]) == case["name"], name
                    assert name.startswith(case["name"] + "::"), name


def test_readme_lists_every_file_with_its_count() -> None:
    readme = (SPEC / "README.md").read_text(encoding="utf-8")
    listed = {
        name: int(count)
        for name, count in re.findall(r"^\| `vectors/([a-z_]+\.json)` \| (\d+) \|", readme, re.M)
    }
    actual = {path.name: len(load_json(path)["cases"]) for path in CASE_FILES}
    assert listed == actual


def test_vectors_match_their_generator() -> None:
    tool = SPEC / "tools" / "build_vectors.py"
    result = subprocess.run(
        [sys.executable, str(tool), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"{result.stderr.strip()}: edit spec/tools/build_vectors.py and run it, not the JSON files"
    )


# -- running a case --------------------------------------------------------------


class CoreDriver:
    """Performs a case's actions on the core: a fresh Broker, one ServerConnection per connection."""

    def __init__(self) -> None:
        self.broker = started_broker(*SUITE.clients)
        self.conns: dict[str, ServerConnection] = {}
        self.wires: dict[str, Wire] = {}

    def run(self, run: CaseRun) -> None:
        actions = run.actions()
        with contextlib.suppress(StopIteration):
            action = next(actions)
            while True:
                try:
                    self.perform(action)
                except CaseFailure as exc:
                    action = actions.throw(exc)  # re-raised, naming the step
                else:
                    action = actions.send(
                        frozenset(name for name, conn in self.conns.items() if conn.closing)
                    )

    def perform(self, action: Action) -> None:
        match action:
            case Open(conn=name, trusted=trusted, options=options, wire=wire):
                self.conns[name] = ServerConnection(self.broker, trusted=trusted, **options)
                self.wires[name] = wire
            case Send(conn=name, pieces=pieces):
                for piece in pieces:
                    self.conns[name].receive_data(piece)
            case Expect(conn=name) | ExpectClosed(conn=name):
                self._collect(name)
            case Settle(conns=names):
                for name in names:
                    self._collect(name)
            case Close(conn=name):
                self.conns[name].close()
                self.conns[name].data_to_send()  # what was still queued is lost with the socket
            case HalfClose(conn=name):
                # EOF inside a frame raises: the fragment is dropped and the connection ends.
                with contextlib.suppress(RemoteProtocolError):
                    self.conns[name].receive_eof()

    def _collect(self, name: str) -> None:
        data = self.conns[name].data_to_send()
        if data:
            self.wires[name].received(data)


class SchemaChecks:
    """Every frame the server writes must fit a message schema, and each answered
    request must fit (or not fit) its request schema as the answer says."""

    def __init__(self) -> None:
        # (connection, answer key) -> (method, dialect, request)
        self.requests: dict[tuple[str, tuple[str, Any]], tuple[str, str, Any]] = {}

    def sent(self, name: str, sent: Any) -> None:
        for message in sent if isinstance(sent, list) else [sent]:
            if not isinstance(message, dict) or message.get("method") not in METHODS:
                continue
            params = message.get("params")
            if "id" in message:
                key, dialect = ("id", canonical(message["id"])), "jsonrpc"
            elif isinstance(params, dict) and isinstance(params.get("request_id"), str):
                key, dialect = ("rid", params["request_id"]), "pub_sub"
            else:
                continue
            self.requests[(name, key)] = (message["method"], dialect, message)

    def frames(self, name: str, frames: list[Any]) -> None:
        for frame in frames:
            _validate("server-message", frame)
            for message in frame if isinstance(frame, list) else [frame]:
                self._check_answer(name, message)

    def _check_answer(self, name: str, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method in ("event", "closing"):
            _validate(method, message)
            return
        if "method" in message:
            dialect, key = "pub_sub", ("rid", method)
            success = message["params"]["status"]
            code = None if success else message["params"]["error_code"]
        else:
            dialect, key = "jsonrpc", ("id", canonical(message["id"]))
            success = "result" in message
            code = None if success else message["error"]["code"]
        if not success:
            _validate(f"error.{dialect}", message)
        request = self.requests.pop((name, key), None)
        if request is None:
            return
        request_method, request_dialect, sent = request
        assert request_dialect == dialect, f"{sent!r} answered in the {dialect} dialect"
        schema = f"{request_method}.request.{dialect}"
        if success:
            _validate(f"{request_method}.answer.{dialect}", message)
            _validate(schema, sent)
        elif code in MALFORMED:
            assert not _is_valid(schema, sent), (
                f"{schema} accepts {sent!r}, which the server refused as malformed"
            )
        elif code in REFUSED:
            _validate(schema, sent)


def _params() -> list[Any]:
    params = []
    for case in SUITE.cases:
        marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_vector(case: Case) -> None:
    schemas = SchemaChecks()
    CoreDriver().run(CaseRun(case, on_sent=schemas.sent, on_frames=schemas.frames))


# -- the shared vector semantics reject what they should ---------------------------


def _run_edited(name: str, edit: Any) -> None:
    """Run a copy of case ``name`` whose raw steps ``edit`` changed in place."""
    case = next(case for case in SUITE.cases if case.name == name)
    steps = json.loads(json.dumps(case.steps))
    edit(steps)
    CoreDriver().run(CaseRun(dataclasses.replace(case, steps=tuple(steps))))


PING_CASE = "dialects.jsonrpc.ping"


def _last_expect(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return next(step["expect"] for step in reversed(steps) if "expect" in step)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: _last_expect(s)["frames"].append({"jsonrpc": "2.0"}), "expected 2 frame(s) on 'a', got 1"),
        (lambda s: _last_expect(s)["frames"].clear(), "expected 0 frame(s) on 'a', got 1"),
        (lambda s: s.pop(), "at the end: expected 0 frame(s) on 'a', got 1"),
        (lambda s: _last_expect(s)["frames"][0].update(id=1.0), "a[0].id: expected 1.0, got 1"),
        (lambda s: _last_expect(s)["frames"][0].update(id=True), "a[0].id: expected true, got 1"),
        (
            lambda s: _last_expect(s)["frames"].__setitem__(0, {"id": 1, "jsonrpc": "2.0", "result": {}}),
            "a[0]: expected members ['id', 'jsonrpc', 'result'], got ['jsonrpc', 'result', 'id']",
        ),
        (
            lambda s: _last_expect(s)["frames"][0].update(result={"$type": "uuid"}),
            "a[0].result: expected a uuid, got {}",
        ),
        (
            lambda s: _last_expect(s)["frames"][0].update(jsonrpc={"$regex": "^1"}),
            "a[0].jsonrpc: expected a string matching '^1', got \"2.0\"",
        ),
        (lambda s: _last_expect(s).update(framing="content-length"), "expected content-length framing"),
        (lambda s: s.append({"expect_closed": "a"}), "the server did not close 'a'"),
    ],
)
def test_mismatches_are_reported(edit: Any, message: str) -> None:
    with pytest.raises(CaseFailure) as caught:
        _run_edited(PING_CASE, edit)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: _last_expect(s)["frames"][0].update(id={"$ref": "nope"}),
            "$nope used before it was captured",
        ),
        (lambda s: _last_expect(s)["frames"][0].update(id={"$bogus": 1}), "unknown matcher keys ['$bogus']"),
        (lambda s: s.insert(0, {"close": "zz"}), "undeclared connection 'zz'"),
        (lambda s: s[0]["send"].update(split=[999]), "do not fit"),
    ],
)
def test_broken_vectors_are_reported(edit: Any, message: str) -> None:
    with pytest.raises(VectorError, match=re.escape(message)):
        _run_edited(PING_CASE, edit)


def test_members_matcher() -> None:
    captures = Captures()
    want = {"$members": {"requests": {"$type": "integer"}, "kind": "tcp"}}
    captures.match(want, {"kind": "tcp", "requests": 3, "other": [1]}, "f")  # extra members are fine
    with pytest.raises(CaseFailure, match=r"f: member 'requests' is missing"):
        captures.match(want, {"kind": "tcp"}, "f")
    with pytest.raises(CaseFailure, match=r"f.requests: expected a integer, got 1.5"):
        captures.match(want, {"kind": "tcp", "requests": 1.5}, "f")
    with pytest.raises(CaseFailure, match=r"f.kind: expected \"tcp\", got \"unix\""):
        captures.match(want, {"kind": "unix", "requests": 1}, "f")
    with pytest.raises(CaseFailure, match="f: expected an object, got \\[\\]"):
        captures.match(want, [], "f")
    with pytest.raises(VectorError, match="non-empty object"):
        captures.match({"$members": {}}, {}, "f")


def test_captures() -> None:
    captures = Captures()
    captures.match({"$capture": "s", "$type": "string"}, "x", "f")
    captures.match({"$ref": "s"}, "x", "f")
    captures.match({"$template": "<${s}>"}, "<x>", "f")
    captures.match({"$literal": {"$ref": "s"}}, {"$ref": "s"}, "f")
    captures.match({"$not_ref": ["s"], "$type": "string"}, "y", "f")
    assert captures.resolve({"a": [{"$ref": "s"}, {"$template": "${s}!"}]}) == {"a": ["x", "x!"]}
    with pytest.raises(CaseFailure, match=r"must differ from \$s"):
        captures.match({"$not_ref": "s"}, "x", "f")
    with pytest.raises(VectorError, match="captured twice"):
        captures.match({"$capture": "s"}, "x", "f")


@pytest.mark.parametrize(
    ("peer", "output", "message"),
    [
        (b"{}\n", b' {"a":1}\n', "not one frame per line"),
        (b"{}\n", b'{"a":1}{"b":2}\n', "2 JSON texts in 1 frame(s)"),
        (
            b"{}\n",
            b"Content-Length: 2\r\n\r\n{}",
            "writes content-length framing to a peer that speaks newline",
        ),
        (b"Content-Length: 2\r\n\r\n{}", b"Content-length: 2\r\n\r\n{}", "not a Content-Length frame"),
        (
            b"Content-Length: 2\r\n\r\n{}",
            b"Content-Length: 2\r\nX: y\r\n\r\n{}",
            "not a Content-Length frame",
        ),
        (b"{}\n", b"{nope}\n", "not JSON"),
    ],
)
def test_wire_holds_output_to_the_framing(peer: bytes, output: bytes, message: str) -> None:
    wire = Wire()
    wire.sent(peer)
    with pytest.raises(CaseFailure, match=re.escape(message)):
        for byte in range(len(output)):
            wire.received(output[byte : byte + 1])


def test_wire_reassembles_pieces() -> None:
    wire = Wire()
    wire.sent(b"  content-length: 2\r\n\r\n{}")
    data = b'Content-Length: 7\r\n\r\n{"a":1}Content-Length: 2\r\n\r\n[]'
    for position in range(len(data)):
        wire.received(data[position : position + 1])
        assert wire.ready(2) is (position == len(data) - 1)
    assert wire.take() == [{"a": 1}, []]


def test_spec_dir_lookup(tmp_path: Path) -> None:
    assert find_spec_dir(environ={}) == SPEC  # the checkout
    assert find_spec_dir(environ={SPEC_DIR_ENV: str(SPEC)}) == SPEC
    with pytest.raises(SpecNotFoundError, match="not a pubsub-rpc spec directory"):
        find_spec_dir(tmp_path, environ={SPEC_DIR_ENV: str(SPEC)})
    with pytest.raises(SpecNotFoundError):
        find_spec_dir(environ={SPEC_DIR_ENV: str(tmp_path)})


def test_skip_reasons() -> None:
    by_name = {case.name: case for case in SUITE.cases}
    trusted = next(case for case in SUITE.cases if case.needs_trusted and not case.options)
    assert skip_reason(trusted, trusted=False) == "needs a trusted connection"
    assert skip_reason(trusted, trusted=True, limits={}) is None
    limited = by_name["batches.at_configured_limit"]
    assert skip_reason(limited, trusted=True) is None
    assert skip_reason(limited, trusted=True, limits={}) == "needs server limits max_batch=3"
    assert skip_reason(limited, trusted=True, limits={"max_batch": 3}) is None
    assert skip_reason(by_name[PING_CASE], trusted=True, limits={"max_batch": 3}) == (
        "needs server limits max_batch=100"
    )
    assert skip_reason(by_name["framing.eof.clean"], trusted=True, half_close=False) is not None
