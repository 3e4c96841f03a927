"""The conformance vectors in spec/ run against the sans-IO core.

This is the only reader of spec/.  It checks that every vector file has the
shape spec/vector.schema.json pins, that the message schemas in spec/schemas
are valid and agree with what the server accepts and writes, and then runs
every case: a fresh Broker with the registered clients of clients.json, one
ServerConnection per vector connection, bytes in with ``receive_data`` (split
as the step says), frames out of ``data_to_send`` decoded with a FrameDecoder.
Expected frames must match exactly and completely: same frames, same order,
same object key order, nothing left over.  The semantics of every step and
matcher are in spec/README.md ("Conformance vectors").
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pubsub_rpc import (
    BadFrame,
    Broker,
    ClientInfo,
    FrameDecoder,
    Framing,
    RemoteProtocolError,
    ServerConnection,
)

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec"
VECTORS = SPEC / "vectors"
SCHEMAS = SPEC / "schemas"

MIN_CASES = 100
METHODS = frozenset(("publish", "subscribe", "unsubscribe", "ping"))
# Answers with these codes mean "the request was malformed": its schema must reject it.
MALFORMED = frozenset((-32600, -32602))
# Answers with these codes refuse a well-formed request: its schema must accept it.
REFUSED = frozenset((-32001, -32002, -32003, -32004, -32005))
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CONTENT_LENGTH_FRAME = re.compile(rb"Content-Length: (\d+)\r\n\r\n")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


VECTOR_SCHEMA = _load(SPEC / "vector.schema.json")
CLIENTS = _load(VECTORS / "clients.json")["clients"]
VECTOR_FILES = sorted(VECTORS.glob("*.json"))
CASE_FILES = [path for path in VECTOR_FILES if path.name != "clients.json"]
CASES = [case for path in CASE_FILES for case in _load(path)["cases"]]

MESSAGE_SCHEMAS = {path.name.removesuffix(".json"): _load(path) for path in sorted(SCHEMAS.glob("*.json"))}
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


def _canonical(value: Any) -> bytes:
    # Distinguishes 1 from 1.0 from true, as JSON does.
    return orjson.dumps(value)


# -- static checks ---------------------------------------------------------------


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[path.name for path in VECTOR_FILES])
def test_vector_file_matches_vector_schema(path: Path) -> None:
    validator = Draft202012Validator(VECTOR_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(_load(path)), key=lambda e: list(e.absolute_path))
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
    actual = {path.name: len(_load(path)["cases"]) for path in CASE_FILES}
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


class VectorError(AssertionError):
    """The vector itself is wrong (not the implementation)."""


class CaseRunner:
    """Runs one case against the core; one attribute per concern, no I/O."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.case = case
        self.broker = Broker()
        for client in CLIENTS:
            self.broker.register_client(
                ClientInfo(
                    client["id"], can_publish=client["can_publish"], can_subscribe=client["can_subscribe"]
                )
            )
        self.broker.start()
        options = case.get("options", {})
        self.conns = {
            name: ServerConnection(self.broker, trusted=spec.get("trusted", False), **options)
            for name, spec in case["connections"].items()
        }
        # One decoder per connection for what the server writes (no size limit of our own).
        self.decoders = {name: FrameDecoder(max_frame_size=1 << 30) for name in self.conns}
        self.unread: dict[str, list[Any]] = {name: [] for name in self.conns}
        self.first_byte: dict[str, int | None] = dict.fromkeys(self.conns)
        self.dirty: set[str] = set()  # sent since last checked
        self.gone: set[str] = set()  # closed by the peer (close step)
        self.seen_closed: set[str] = set()  # expect_closed passed
        self.captures: dict[str, Any] = {}
        # (connection, answer key) -> (method, dialect, request) for the schema cross-check.
        self.requests: dict[tuple[str, tuple[str, Any]], tuple[str, str, Any]] = {}

    # steps

    def run(self) -> None:
        for index, step in enumerate(self.case["steps"]):
            ((kind, arg),) = step.items()
            try:
                getattr(self, f"step_{kind}")(arg)
            except AssertionError as exc:
                raise AssertionError(f"step {index} ({kind}): {exc}") from None
        for name in self.conns:
            if name in self.gone:
                continue
            self._collect(name)
            assert not self.unread[name], (
                f"connection {name!r}: unexpected frames at the end: {self.unread[name]!r}"
            )
            if name not in self.seen_closed:
                assert not self.conns[name].closing, (
                    f"connection {name!r} is closing but the case does not expect it"
                )

    def step_send(self, step: dict[str, Any]) -> None:
        name = step["conn"]
        self._usable(name)
        others = sorted(self.dirty - {name})
        if others:
            raise VectorError(f"send on {name!r} before checking {others}: a live runner would race")
        sent = self._resolve(step["json"]) if "json" in step else None
        data = self._encode(step, sent)
        for byte in data:
            if byte not in b" \t\r\n":
                if self.first_byte[name] is None:
                    self.first_byte[name] = byte
                break
        for chunk in _split(data, step.get("split", "whole")):
            self.conns[name].receive_data(chunk)
        self.dirty.add(name)
        if sent is not None:
            self._record_requests(name, sent)

    def step_expect(self, step: dict[str, Any]) -> None:
        name = step["conn"]
        self._usable(name)
        self._collect(name)
        actual, self.unread[name] = self.unread[name], []
        expected = step["frames"]
        assert len(actual) == len(expected), (
            f"connection {name!r}: expected {len(expected)} frame(s), got {len(actual)}: {actual!r}"
        )
        for position, (want, got) in enumerate(zip(expected, actual, strict=True)):
            self._match(want, got, f"{name}[{position}]")
        for frame in actual:
            self._check_schemas(name, frame)
        if "framing" in step:
            framing = Framing.CONTENT_LENGTH if step["framing"] == "content-length" else Framing.NEWLINE
            assert self.decoders[name].framing is framing, (
                f"{name!r} written in {self.decoders[name].framing}"
            )
        self.dirty.discard(name)

    def step_expect_nothing(self, name: str) -> None:
        self.step_expect({"conn": name, "frames": []})

    def step_close(self, name: str) -> None:
        self._usable(name)
        self.conns[name].close()
        # Whatever was still queued for the peer is lost with the socket.
        self.conns[name].data_to_send()
        self.gone.add(name)
        self.dirty.discard(name)

    def step_eof(self, name: str) -> None:
        self._usable(name)
        # EOF inside a frame raises: the fragment is dropped and the connection ends.
        with contextlib.suppress(RemoteProtocolError):
            self.conns[name].receive_eof()
        self.dirty.add(name)

    def step_expect_closed(self, name: str) -> None:
        self.step_expect({"conn": name, "frames": []})
        assert self.conns[name].closing, f"connection {name!r} is not being closed by the server"
        self.seen_closed.add(name)

    # helpers

    def _usable(self, name: str) -> None:
        if name not in self.conns:
            raise VectorError(f"undeclared connection {name!r}")
        if name in self.gone:
            raise VectorError(f"connection {name!r} was closed by an earlier step")

    @staticmethod
    def _encode(step: dict[str, Any], sent: Any) -> bytes:
        if "text" in step:
            return step["text"].encode("utf-8")
        if "hex" in step:
            return bytes.fromhex(step["hex"])
        body = json.dumps(sent, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        framing = step.get("framing", "newline")
        if framing == "newline":
            return body + b"\n"
        if framing == "content-length":
            return b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        return body

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if value and all(key.startswith("$") for key in value):
                if "$ref" in value:
                    return self._captured(value["$ref"])
                if "$template" in value:
                    return self._template(value["$template"])
                return value["$literal"]
            return {key: self._resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._resolve(item) for item in value]
        return value

    def _captured(self, name: str) -> Any:
        if name not in self.captures:
            raise VectorError(f"${name} used before it was captured")
        return self.captures[name]

    def _template(self, text: str) -> str:
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: str(self._captured(m.group(1))), text)

    def _collect(self, name: str) -> None:
        data = self.conns[name].data_to_send()
        if not data:
            return
        wanted = Framing.CONTENT_LENGTH if self.first_byte[name] in (ord("C"), ord("c")) else Framing.NEWLINE
        bodies = _strict_split(data, wanted)
        frames = self.decoders[name].feed(data)
        assert self.decoders[name].framing is wanted, f"{name!r}: output framing differs from the peer's"
        assert len(frames) == len(bodies), f"{name!r}: frame boundaries disagree: {data!r}"
        for frame in frames:
            assert not isinstance(frame, BadFrame), f"{name!r}: server wrote a bad frame: {frame}"
        self.unread[name].extend(frames)

    def _match(self, want: Any, got: Any, path: str) -> None:
        if isinstance(want, dict) and want and all(key.startswith("$") for key in want):
            self._match_matcher(want, got, path)
        elif isinstance(want, dict):
            assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
            assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
            for key, item in want.items():
                self._match(item, got[key], f"{path}.{key}")
        elif isinstance(want, list):
            assert isinstance(got, list) and len(got) == len(want), f"{path}: expected {want!r}, got {got!r}"
            for position, (item, other) in enumerate(zip(want, got, strict=True)):
                self._match(item, other, f"{path}[{position}]")
        else:
            assert type(got) is type(want) and got == want, f"{path}: expected {want!r}, got {got!r}"

    def _match_matcher(self, want: dict[str, Any], got: Any, path: str) -> None:
        if "$literal" in want:
            assert _canonical(got) == _canonical(want["$literal"]), (
                f"{path}: expected {want['$literal']!r}, got {got!r}"
            )
        if "$ref" in want:
            value = self._captured(want["$ref"])
            assert _canonical(got) == _canonical(value), (
                f"{path}: expected ${want['$ref']} = {value!r}, got {got!r}"
            )
        if "$template" in want:
            text = self._template(want["$template"])
            assert got == text, f"{path}: expected {text!r}, got {got!r}"
        if "$type" in want:
            assert _has_type(got, want["$type"]), f"{path}: expected a {want['$type']}, got {got!r}"
        if "$regex" in want:
            assert isinstance(got, str) and re.search(want["$regex"], got), (
                f"{path}: {got!r} !~ {want['$regex']}"
            )
        not_refs = want.get("$not_ref", [])
        for name in [not_refs] if isinstance(not_refs, str) else not_refs:
            assert _canonical(got) != _canonical(self._captured(name)), f"{path}: must differ from ${name}"
        if "$capture" in want:
            if want["$capture"] in self.captures:
                raise VectorError(f"${want['$capture']} captured twice")
            self.captures[want["$capture"]] = got

    # schema cross-checks: every frame the server writes must fit a message schema,
    # and each answered request must fit (or not fit) its request schema as the answer says.

    def _record_requests(self, name: str, sent: Any) -> None:
        for message in sent if isinstance(sent, list) else [sent]:
            if not isinstance(message, dict) or message.get("method") not in METHODS:
                continue
            params = message.get("params")
            if "id" in message:
                key, dialect = ("id", _canonical(message["id"])), "jsonrpc"
            elif isinstance(params, dict) and isinstance(params.get("request_id"), str):
                key, dialect = ("rid", params["request_id"]), "pub_sub"
            else:
                continue
            self.requests[(name, key)] = (message["method"], dialect, message)

    def _check_schemas(self, name: str, frame: Any) -> None:
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
            dialect, key = "jsonrpc", ("id", _canonical(message["id"]))
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


def _has_type(value: Any, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: type(v) is int,
        "number": lambda v: type(v) in (int, float),
        "boolean": lambda v: type(v) is bool,
        "null": lambda v: v is None,
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "any": lambda v: True,
        "uuid": lambda v: isinstance(v, str) and UUID.match(v) is not None,
    }
    return checks[kind](value)


def _split(data: bytes, split: str | list[int]) -> list[bytes]:
    if split == "whole":
        return [data]
    if split == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    cuts = list(split)
    if cuts != sorted(cuts) or cuts[-1] >= len(data):
        raise VectorError(f"split offsets {cuts} do not fit {len(data)} bytes")
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def _strict_split(data: bytes, framing: Framing) -> list[bytes]:
    """Frame bodies, checking the server writes exactly the framing spec/README.md specifies."""
    if framing is Framing.NEWLINE:
        assert data.endswith(b"\n"), f"newline output must end with a newline: {data!r}"
        lines = data[:-1].split(b"\n")
        for line in lines:
            assert line and line[:1] not in b" \t\r" and line[-1:] not in b" \t\r", (
                f"not one frame per line: {data!r}"
            )
        return lines
    bodies = []
    position = 0
    while position < len(data):
        header = CONTENT_LENGTH_FRAME.match(data, position)
        assert header, f"bad Content-Length header at {position}: {data[position : position + 40]!r}"
        start = header.end()
        end = start + int(header.group(1))
        assert end <= len(data), f"body shorter than its Content-Length: {data!r}"
        bodies.append(data[start:end])
        position = end
    return bodies


def _params() -> list[Any]:
    params = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case["xfail"], strict=True)] if "xfail" in case else []
        params.append(pytest.param(case, id=case["name"], marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_vector(case: dict[str, Any]) -> None:
    CaseRunner(case).run()
