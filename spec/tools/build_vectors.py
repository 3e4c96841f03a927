#!/usr/bin/env python3
"""Write spec/vectors/*.json, the conformance vectors of the pubsub-rpc protocol.

The vectors are data; this script only saves typing.  Every expected frame
below is written from spec/README.md, never computed by running a server.

    python spec/tools/build_vectors.py           # rewrite the files
    python spec/tools/build_vectors.py --check   # exit 1 if a file is out of date

Standard library only, so any checkout can run it.  Event names are prefixed
with the case name so that a live runner can run every case against one
server without cases seeing each other's events.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

# -- error codes and texts (spec/README.md, "Errors") --------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
UNKNOWN_CLIENT = -32001
PUBLISH_FORBIDDEN = -32002
SUBSCRIBE_FORBIDDEN = -32003
NO_SUCH_SUBSCRIPTION = -32004
NOT_YOUR_SUBSCRIPTION = -32005
FRAME_TOO_LARGE = -32006
SLOW_CONSUMER = -32007
LIMIT_EXCEEDED = -32008
INSPECT_FORBIDDEN = -32011

NOT_ALLOWED_PUBLISH = "You are not allowed to publish events."
NOT_ALLOWED_SUBSCRIBE = "You are not allowed to subscribe to events."
NO_SUCH = "The specified subscription does not exist."
NOT_YOURS = "That is not your subscription to cancel."
NOT_ALLOWED_INSPECT = "You are not allowed to read server statistics."
NOT_A_REQUEST = "Request must be an Array or an Object."
EMPTY_BATCH = "A batch must contain at least one request."
BROKEN_FRAMING = "The connection's framing is broken beyond recovery."
ADHOC_RE = "^pub_sub::adhoc_client"


def show(value: Any) -> str:
    """A value as it appears inside an error text: compact JSON, cut at 80 characters."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def unrecognized(client_id: str) -> str:
    return f'Unrecognized client ID "{client_id}".'


MISSING_CLIENT = unrecognized("<missing>")


def missing_param(method: str, name: str) -> str:
    return f'Request for method "{method}" is missing required parameter "{name}".'


def not_a_string(method: str, name: str, value: Any) -> str:
    return f'Parameter "{name}" for method "{method}" must be a string, but was {show(value)}.'


def unknown_method(method: str) -> str:
    return f'Unknown method "{method}".'


def bad_member(value: Any) -> str:
    return f"A batch member must be an Object, but was {show(value)}."


def too_large(limit: int) -> str:
    return f"Frame too large: frame exceeds {limit} bytes."


def wrong_arity(method: str) -> str:
    return f'Invalid parameters for method "{method}".'


def missing_key(key: str) -> str:
    return f'Request must contain a "{key}" key.'


def wrong_version(value: Any) -> str:
    return f'Invalid JSON-RPC version {show(value)}, expected "2.0".'


#: What each envelope member must be, as the INVALID_REQUEST text says it.
ENVELOPE_TYPES = {"method": "a string", "params": "an Array or an Object", "id": "a string, number, or null"}


def wrong_type(member: str, value: Any) -> str:
    return f"Request {member} must be {ENVELOPE_TYPES[member]}, but was {show(value)}."


# -- registered clients (spec/vectors/clients.json) ----------------------------

ALICE, BOB, CAROL = "spec::alice", "spec::bob", "spec::carol"
NO_PUBLISH, NO_SUBSCRIBE, NOTHING = "spec::no_publish", "spec::no_subscribe", "spec::nothing"
OPERATOR = "spec::operator"  # may read the server's counters (stats)
STRANGER = "spec::stranger"  # never registered
RULED = "spec::ruled"  # per-name rules, scoped to the patterns file's names

CLIENTS: list[dict[str, Any]] = [
    {"id": ALICE, "can_publish": True, "can_subscribe": True},
    {"id": BOB, "can_publish": True, "can_subscribe": True},
    {"id": CAROL, "can_publish": True, "can_subscribe": True},
    {"id": NO_PUBLISH, "can_publish": False, "can_subscribe": True},
    {"id": NO_SUBSCRIBE, "can_publish": True, "can_subscribe": False},
    {"id": NOTHING, "can_publish": False, "can_subscribe": False},
    {"id": OPERATOR, "can_publish": False, "can_subscribe": False, "can_inspect": True},
    {
        "id": RULED,
        "can_publish": True,
        "can_subscribe": True,
        # Case names are "patterns.<case>.<dialect>", so "patterns.*.*" is any case of that file.
        "publish_allow": ["patterns.*.*.public.>"],
        "publish_deny": ["patterns.*.*.public.secret"],
        "subscribe_allow": ["patterns.*.*.public.>"],
        "subscribe_deny": ["patterns.*.*.public.secret", "patterns.*.*.public.secret.>"],
    },
]
for _prefix in ("isolate_test::", "json_rpc_2_test::"):
    # The fixture of the original test suite, with its exact ids.
    CLIENTS += [
        {"id": _prefix + "secret", "can_publish": True, "can_subscribe": True},
        {"id": _prefix + "secret2", "can_publish": True, "can_subscribe": True},
        {"id": _prefix + "secret3", "can_publish": True, "can_subscribe": True},
        {"id": _prefix + "no_publish", "can_publish": False, "can_subscribe": True},
        {"id": _prefix + "no_subscribe", "can_publish": True, "can_subscribe": False},
    ]

# -- matchers -------------------------------------------------------------------


def cap(name: str, kind: str = "uuid") -> dict[str, Any]:
    return {"$capture": name, "$type": kind}


def cap_adhoc(name: str) -> dict[str, Any]:
    return {"$capture": name, "$regex": ADHOC_RE}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": name}


def rx(pattern: str) -> dict[str, Any]:
    return {"$regex": pattern}


def tmpl(text: str) -> dict[str, Any]:
    return {"$template": text}


ANY_STRING = {"$type": "string"}


def flat(matcher: Any) -> Any:
    """The second occurrence of a value: a capture becomes a reference."""
    if isinstance(matcher, dict) and "$capture" in matcher:
        return ref(matcher["$capture"])
    return matcher


# -- messages ---------------------------------------------------------------------

OMIT: Any = object()


def prune(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not OMIT}


def msg(method: Any = OMIT, params: Any = OMIT, id: Any = OMIT, jsonrpc: Any = "2.0") -> dict[str, Any]:
    return prune(jsonrpc=jsonrpc, method=method, params=params, id=id)


def ok(id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": result, "id": id}


def err(id: Any, code: int, message: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}


def event(name: str, value: Any, subscription: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"event_name": name, "value": value, "subscription_id": subscription},
    }


def closing(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "closing", "params": {"code": code, "message": message}}


def ping(id: Any = OMIT) -> dict[str, Any]:
    return msg("ping", id=id)


PONG_1 = ok(1, {})
#: The answers to a text that is not JSON, and to a JSON text that is not a request (id null).
BAD_JSON = err(None, PARSE_ERROR, rx("^Invalid JSON: "))
NOT_REQUEST = err(None, INVALID_REQUEST, NOT_A_REQUEST)


#: The members every stats result has (spec/README.md, "stats"); their values are live.
#: Read from the stats schema, which is where the spec lists them.
STATS_MEMBERS = tuple(
    json.loads((VECTORS.parent / "schemas" / "stats.result.json").read_text(encoding="utf-8"))["required"]
)


class Dialect:
    """Request and answer shapes of one dialect, so a scenario is written once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pub_sub = kind == "pub_sub"

    def rid(self, n: int) -> Any:
        """Request id number n in this dialect's usual style."""
        return f"r{n}" if self.pub_sub else n

    def _request(self, method: str, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        if self.pub_sub:
            return msg(method, {"request_id": rid, **params})
        return msg(method, params, rid)

    def publish(
        self, rid: Any, event_name: Any, value: Any = None, client: Any = OMIT, **extra: Any
    ) -> dict[str, Any]:
        if self.pub_sub:
            # The original client's key order: request_id, client_id, event_name, value.
            return msg(
                "publish",
                prune(request_id=rid, client_id=client, event_name=event_name, value=value, **extra),
            )
        return msg("publish", prune(event_name=event_name, value=value, client_id=client, **extra), rid)

    def subscribe(self, rid: Any, event_name: Any, client: Any = OMIT, **extra: Any) -> dict[str, Any]:
        if self.pub_sub:
            return msg("subscribe", prune(request_id=rid, client_id=client, event_name=event_name, **extra))
        return msg("subscribe", prune(event_name=event_name, client_id=client, **extra), rid)

    def unsubscribe(self, rid: Any, subscription: Any, client: Any = OMIT, **extra: Any) -> dict[str, Any]:
        if self.pub_sub:
            return msg(
                "unsubscribe", prune(request_id=rid, client_id=client, subscription_id=subscription, **extra)
            )
        return msg("unsubscribe", prune(subscription_id=subscription, client_id=client, **extra), rid)

    def ping(self, rid: Any) -> dict[str, Any]:
        return msg("ping", {"request_id": rid}) if self.pub_sub else msg("ping", id=rid)

    def stats(self, rid: Any, client: Any = OMIT) -> dict[str, Any]:
        return self._request("stats", rid, prune(client_id=client))

    def raw(self, method: Any, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        """A request with exactly these params (plus request_id first in pub_sub)."""
        return self._request(method, rid, params)

    # answers

    def _answer(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "method": rid, "params": params}

    def ok_publish(self, rid: Any, listeners: int, client: Any) -> dict[str, Any]:
        result = {"listeners": listeners, "client_id": client}
        if self.pub_sub:
            return self._answer(rid, {"status": True, "request_id": rid, "result": result})
        return ok(rid, result)

    def ok_subscribe(self, rid: Any, subscription: Any, client: Any) -> dict[str, Any]:
        result = {"subscription_id": subscription, "client_id": client}
        if self.pub_sub:
            return self._answer(
                rid,
                {
                    "status": True,
                    "request_id": rid,
                    "result": result,
                    # The flat copies the original Dart client reads.
                    "subscription_id": flat(subscription),
                    "client_id": flat(client),
                },
            )
        return ok(rid, result)

    def ok_report(
        self, rid: Any, listeners: int, client: Any, delivered: int, dropped: int
    ) -> dict[str, Any]:
        result = {"listeners": listeners, "client_id": client, "delivered": delivered, "dropped": dropped}
        if self.pub_sub:
            return self._answer(rid, {"status": True, "request_id": rid, "result": result})
        return ok(rid, result)

    def ok_empty(self, rid: Any) -> dict[str, Any]:
        if self.pub_sub:
            return self._answer(rid, {"status": True, "request_id": rid, "result": {}})
        return ok(rid, {})

    def ok_stats(self, rid: Any) -> dict[str, Any]:
        """A stats answer: live counters cannot be exact, so the members are matched by type."""
        result = {"$members": {name: {"$type": "integer"} for name in STATS_MEMBERS}}
        if self.pub_sub:
            return self._answer(rid, {"status": True, "request_id": rid, "result": result})
        return ok(rid, result)

    def fail(self, rid: Any, code: int, message: Any) -> dict[str, Any]:
        if self.pub_sub:
            return self._answer(
                rid, {"status": False, "request_id": rid, "error_message": message, "error_code": code}
            )
        return err(rid, code, message)


JSONRPC = Dialect("jsonrpc")
PUB_SUB = Dialect("pub_sub")
DIALECTS = (JSONRPC, PUB_SUB)


# -- cases ------------------------------------------------------------------------

FILES: dict[str, dict[str, Any]] = {}


class Case:
    def __init__(
        self,
        file: str,
        name: str,
        description: str,
        conns: tuple[str, ...] = ("a",),
        trusted: tuple[str, ...] = (),
        options: dict[str, int] | None = None,
        original_test: str | None = None,
        xfail: str | None = None,
    ) -> None:
        self.name = f"{file}.{name}"
        self.data: dict[str, Any] = {"name": self.name, "description": description}
        if original_test:
            self.data["original_test"] = original_test
        if options:
            self.data["options"] = options
        if xfail:
            self.data["xfail"] = xfail
        self.data["connections"] = {c: {"trusted": c in trusted} for c in conns}
        self.steps: list[dict[str, Any]] = []
        self.data["steps"] = self.steps
        self.send_framing: str | None = None
        FILES[file]["cases"].append(self.data)

    def ev(self, short: str = "foo") -> str:
        """An event name unique to this case."""
        return f"{self.name}::{short}"

    def send(
        self,
        conn: str,
        message: Any = OMIT,
        *,
        text: str | None = None,
        hex: str | None = None,
        framing: str | None = None,
        split: Any = None,
    ) -> None:
        step: dict[str, Any] = {"conn": conn}
        if text is not None:
            step["text"] = text
        elif hex is not None:
            step["hex"] = hex
        else:
            step["json"] = message
            framing = framing or self.send_framing
            if framing:
                step["framing"] = framing
        if split is not None:
            step["split"] = split
        self.steps.append({"send": step})

    def expect(self, conn: str, *frames: Any, framing: str | None = None) -> None:
        step: dict[str, Any] = {"conn": conn, "frames": list(frames)}
        if framing:
            step["framing"] = framing
        self.steps.append({"expect": step})

    def call(
        self, conn: str, message: Any, *frames: Any, framing: str | None = None, split: Any = None
    ) -> None:
        """Send one JSON message and expect exactly these frames back on the same connection."""
        self.send(conn, message, framing=framing, split=split)
        self.expect(conn, *frames, framing="content-length" if framing == "content-length" else None)

    def nothing(self, conn: str) -> None:
        self.steps.append({"expect_nothing": conn})

    def close(self, conn: str) -> None:
        self.steps.append({"close": conn})

    def eof(self, conn: str) -> None:
        self.steps.append({"eof": conn})

    def closed(self, conn: str) -> None:
        self.steps.append({"expect_closed": conn})

    def subscribe(
        self,
        conn: str,
        client: Any,
        short: str,
        capture: str,
        d: Dialect = JSONRPC,
        rid: Any = None,
        answer: Any = OMIT,
    ) -> None:
        """Subscribe and capture the subscription id; the answer names `answer` (default: `client`)."""
        rid = rid if rid is not None else d.rid(90 + len(self.steps))
        answer = client if answer is OMIT else answer
        self.call(conn, d.subscribe(rid, self.ev(short), client), d.ok_subscribe(rid, cap(capture), answer))

    def subscribe_pattern(
        self, conn: str, client: Any, pattern: Any, capture: str, d: Dialect = JSONRPC, rid: Any = None
    ) -> None:
        """Subscribe to a pattern instead of an event name and capture the subscription id."""
        rid = rid if rid is not None else d.rid(90 + len(self.steps))
        self.call(
            conn, d.subscribe(rid, OMIT, client, pattern=pattern), d.ok_subscribe(rid, cap(capture), client)
        )

    def published(
        self,
        conn: str,
        rid: Any,
        value: Any,
        client: Any = OMIT,
        *,
        listeners: int,
        answer: Any = OMIT,
        short: str = "foo",
        d: Dialect = JSONRPC,
    ) -> None:
        """Publish to this case's event `short` and expect the ok answer with this listeners count.

        The answer names `answer`, by default the `client` sent.
        """
        answer = client if answer is OMIT else answer
        self.call(conn, d.publish(rid, self.ev(short), value, client), d.ok_publish(rid, listeners, answer))

    def unsubscribe(
        self, conn: str, rid: Any, subscription: Any, client: Any = OMIT, d: Dialect = JSONRPC
    ) -> None:
        """Unsubscribe and expect the empty ok answer."""
        self.call(conn, d.unsubscribe(rid, subscription, client), d.ok_empty(rid))

    def refused(self, conn: str, request: dict[str, Any], code: int, text: Any) -> None:
        """Send a request and expect this error, in the request's dialect and under its own id."""
        if "id" in request:
            self.call(conn, request, JSONRPC.fail(request["id"], code, text))
        else:
            self.call(conn, request, PUB_SUB.fail(request["params"]["request_id"], code, text))


def new_file(file: str, description: str) -> None:
    FILES[file] = {"description": description, "cases": []}


# == original_suite.json ===========================================================


def original_suite() -> None:
    new_file(
        "original_suite",
        "The 16 tests of the original Dart pub_sub suite (test/isolate_test.dart and "
        "test/json_rpc_2_test.dart), with the listeners counts and error texts the original "
        "suite did not assert. Three flavours of the same 8 scenarios: 'json_rpc_2' is the "
        "original wire exactly (pub_sub dialect, bare concatenated documents, as the Dart "
        "client wrote them); 'isolate' restates the in-process isolate tests (#1-#8) in the "
        "pub_sub dialect over a byte stream, newline-delimited; 'standard' runs the JSON-RPC "
        "scenarios (#9-#16) in the standard JSON-RPC dialect. As in the original fixture a third "
        "client subscribes to 'foo' before each test. The original's adapter trusted every "
        "connection; here a connection is trusted where the scenario depends on it (the id-less "
        "client 't', and the unknown id of test 6/14, which is refused even when trusted), so a "
        "runner without a trusted endpoint can still run the other scenarios.",
    )
    flavours = [
        ("json_rpc_2", PUB_SUB, "json_rpc_2_test::", "none", 9, "test/json_rpc_2_test.dart"),
        ("isolate", PUB_SUB, "isolate_test::", None, 1, "test/isolate_test.dart"),
        ("standard", JSONRPC, "json_rpc_2_test::", None, 9, "test/json_rpc_2_test.dart"),
    ]
    scenarios = [
        ("trusted_can_publish", "trusted / can publish"),
        ("trusted_can_sub_unsub", "trusted / can sub/unsub"),
        ("subscribers_receive_published_events", "subscribers receive published events"),
        ("subscribers_not_sent_own_events", "subscribers are not sent their own events"),
        ("can_unsubscribe", "can unsubscribe"),
        ("reject_unknown_client_id", "reject unknown client id"),
        ("reject_unprivileged_publish", "reject unprivileged publish"),
        ("reject_unprivileged_subscribe", "reject unprivileged subscribe"),
    ]
    for flavour, d, p, framing, first, source in flavours:
        for index, (slug, title) in enumerate(scenarios):
            number = first + index
            group = ("isolate_server" if flavour == "isolate" else "json_rpc_2_server") if index >= 5 else ""
            shown = f"{group} / {title}" if group else title
            mapped = f"{source} #{number}: {shown}"
            if flavour == "isolate":
                mapped += " (isolate flavour, restated over a byte stream in the pub_sub dialect)"
            elif flavour == "standard":
                mapped += " (restated in the standard JSON-RPC dialect)"
            conns = ("c1", "c2", "c3") + (("t",) if index < 2 else ()) + (("n",) if index >= 5 else ())
            c = Case(
                "original_suite",
                f"{flavour}.{slug}",
                f"Original test '{shown}'.",
                conns=conns,
                trusted=("t", "n") if index in (0, 1, 5) else (),
                original_test=mapped,
            )
            c.send_framing = framing
            counter = iter(range(1, 100))

            def rid(d: Dialect = d, counter: Any = counter) -> Any:
                n = next(counter)
                return f"00000000-0000-4000-8000-{n:012d}" if d.pub_sub else n

            foo = c.ev("foo")
            # Fixture: client3 subscribes to foo before every test.
            c.subscribe("c3", p + "secret3", "foo", "c3_sub", d, rid=rid())
            sentinel = "this should not be received"
            if index == 0:
                c.published("t", rid(), "bye", None, listeners=0, answer=cap_adhoc("adhoc"), short="hey", d=d)
            elif index == 1:
                c.published(
                    "t", rid(), "byeaa", None, listeners=0, answer=cap_adhoc("adhoc"), short="heyaaa", d=d
                )
                # The Dart client adopts the returned id and sends it from then on.
                c.subscribe("t", ref("adhoc"), "yeppp", "sub", d, rid=rid())
                c.unsubscribe("t", rid(), ref("sub"), ref("adhoc"), d=d)
            elif index in (2, 4):
                c.subscribe("c2", p + "secret2", "foo", "s2", d, rid=rid())
                c.published("c1", rid(), "bar", p + "secret", listeners=2, d=d)
                c.expect("c2", event(foo, "bar", ref("s2")))
                c.expect("c3", event(foo, "bar", ref("c3_sub")))
                if index == 4:
                    # After unsubscribing, c2 is left out of the next publish.
                    c.unsubscribe("c2", rid(), ref("s2"), p + "secret2", d=d)
                    c.published("c1", rid(), sentinel, p + "secret", listeners=1, d=d)
                    c.expect("c3", event(foo, sentinel, ref("c3_sub")))
                    c.nothing("c2")
            elif index == 3:
                c.subscribe("c1", p + "secret", "foo", "s1", d, rid=rid())
                # Only the answer: the publisher's own subscription is skipped.
                c.published("c1", rid(), sentinel, p + "secret", listeners=1, d=d)
                c.expect("c3", event(foo, sentinel, ref("c3_sub")))
                c.unsubscribe("c1", rid(), ref("s1"), p + "secret", d=d)
            else:
                # The three refusals, on the connection "n".
                r = rid()
                request, code, text = {
                    5: (d.publish(r, foo, "bar", p + "invalid"), UNKNOWN_CLIENT, unrecognized(p + "invalid")),
                    6: (d.publish(r, foo, "bar", p + "no_publish"), PUBLISH_FORBIDDEN, NOT_ALLOWED_PUBLISH),
                    7: (d.subscribe(r, foo, p + "no_subscribe"), SUBSCRIBE_FORBIDDEN, NOT_ALLOWED_SUBSCRIBE),
                }[index]
                c.refused("n", request, code, text)
                if index != 7:
                    c.nothing("c3")


# == identity.json ====================================================================


def identity() -> None:
    f = "identity"
    new_file(
        f,
        "Who a request acts as: registered clients and their rights, '<missing>' on untrusted "
        "connections, empty string = missing, the one ad-hoc identity of a trusted connection "
        "(usable on that connection only, gone when it closes), and unsubscribe ownership.",
    )
    for d in DIALECTS:
        k = d.kind
        c = Case(f, f"{k}.unknown_client.publish", "A non-empty id that is not registered is refused.")
        c.refused("a", d.publish(d.rid(1), c.ev(), 1, STRANGER), UNKNOWN_CLIENT, unrecognized(STRANGER))

        c = Case(f, f"{k}.unknown_client.subscribe", "Subscribe with an unregistered id is refused.")
        c.refused("a", d.subscribe(d.rid(1), c.ev(), STRANGER), UNKNOWN_CLIENT, unrecognized(STRANGER))

        c = Case(
            f,
            f"{k}.unknown_client.on_trusted_connection",
            "Trust only covers a missing id: a non-empty unknown id is refused on a trusted connection too.",
            conns=("t",),
            trusted=("t",),
        )
        c.refused("t", d.publish(d.rid(1), c.ev(), 1, STRANGER), UNKNOWN_CLIENT, unrecognized(STRANGER))

        for how, client in (("absent", OMIT), ("null", None), ("empty_string", "")):
            c = Case(
                f,
                f"{k}.missing.{how}.untrusted",
                f"client_id {how.replace('_', ' ')} on an untrusted connection: publish and subscribe "
                "are refused with '<missing>'.",
            )
            c.refused("a", d.publish(d.rid(1), c.ev(), 1, client), UNKNOWN_CLIENT, MISSING_CLIENT)
            c.refused("a", d.subscribe(d.rid(2), c.ev(), client), UNKNOWN_CLIENT, MISSING_CLIENT)

        c = Case(f, f"{k}.no_publish", "can_publish=false: publish refused, subscribe allowed.")
        c.refused("a", d.publish(d.rid(1), c.ev(), 1, NO_PUBLISH), PUBLISH_FORBIDDEN, NOT_ALLOWED_PUBLISH)
        c.subscribe("a", NO_PUBLISH, "foo", "s", d, rid=d.rid(2))

        c = Case(f, f"{k}.no_subscribe", "can_subscribe=false: subscribe refused, publish allowed.")
        c.refused(
            "a", d.subscribe(d.rid(1), c.ev(), NO_SUBSCRIBE), SUBSCRIBE_FORBIDDEN, NOT_ALLOWED_SUBSCRIBE
        )
        c.published("a", d.rid(2), 1, NO_SUBSCRIBE, listeners=0, d=d)

        c = Case(f, f"{k}.unsubscribe.no_such_subscription", "Unsubscribing an id that does not exist.")
        c.refused(
            "a",
            d.unsubscribe(d.rid(1), "00000000-0000-4000-8000-000000000000", ALICE),
            NO_SUCH_SUBSCRIPTION,
            NO_SUCH,
        )

        c = Case(
            f,
            f"{k}.unsubscribe.not_yours",
            "Another client's subscription cannot be cancelled; the owner still can.",
            conns=("a", "b"),
        )
        c.subscribe("a", ALICE, "foo", "s", d, d.rid(1))
        c.refused("b", d.unsubscribe(d.rid(2), ref("s"), BOB), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)
        c.unsubscribe("a", d.rid(3), ref("s"), ALICE, d=d)

    c = Case(f, "nothing_client", "A client with neither right can do neither (unsubscribe needs no right).")
    c.refused("a", JSONRPC.publish(1, c.ev(), 1, NOTHING), PUBLISH_FORBIDDEN, NOT_ALLOWED_PUBLISH)
    c.refused("a", JSONRPC.subscribe(2, c.ev(), NOTHING), SUBSCRIBE_FORBIDDEN, NOT_ALLOWED_SUBSCRIBE)
    c.refused("a", JSONRPC.unsubscribe(3, "x", NOTHING), NO_SUCH_SUBSCRIPTION, NO_SUCH)

    c = Case(
        f,
        "rights_apply_on_trusted_connection",
        "A registered id sent on a trusted connection acts as that client, restrictions included.",
        conns=("t",),
        trusted=("t",),
    )
    c.refused("t", JSONRPC.publish(1, c.ev(), 1, NO_PUBLISH), PUBLISH_FORBIDDEN, NOT_ALLOWED_PUBLISH)
    c.refused("t", JSONRPC.subscribe(2, c.ev(), NO_SUBSCRIBE), SUBSCRIBE_FORBIDDEN, NOT_ALLOWED_SUBSCRIBE)

    c = Case(
        f,
        "adhoc.one_identity_per_connection",
        "Every request without an id on one trusted connection acts as the same ad-hoc identity "
        "(absent, null and empty string alike), in both dialects.",
        conns=("t",),
        trusted=("t",),
    )
    c.published("t", 1, 1, listeners=0, answer=cap_adhoc("me"))
    c.published("t", 2, 2, None, listeners=0, answer=ref("me"))
    c.published("t", "r3", 3, "", listeners=0, answer=ref("me"), d=PUB_SUB)
    c.subscribe("t", OMIT, "bar", "s", rid=4, answer=ref("me"))

    c = Case(
        f,
        "adhoc.distinct_per_connection",
        "Two trusted connections get two different ad-hoc identities and receive each other's events.",
        conns=("t", "u"),
        trusted=("t", "u"),
    )
    c.subscribe("t", OMIT, "foo", "st", rid=1, answer=cap_adhoc("t_id"))
    c.subscribe(
        "u", OMIT, "foo", "su", rid=1, answer={"$capture": "u_id", "$regex": ADHOC_RE, "$not_ref": "t_id"}
    )
    c.published("t", 2, "from t", listeners=1, answer=ref("t_id"))
    c.expect("u", event(c.ev(), "from t", ref("su")))

    c = Case(
        f,
        "adhoc.explicit_on_own_connection",
        "The ad-hoc id may also be sent explicitly on its own connection; it is the same identity "
        "(so its own subscription is excluded).",
        conns=("t",),
        trusted=("t",),
    )
    c.subscribe("t", OMIT, "foo", "s", rid=1, answer=cap_adhoc("me"))
    c.published("t", 2, 1, ref("me"), listeners=0)
    c.unsubscribe("t", 3, ref("s"), ref("me"))

    c = Case(
        f,
        "adhoc.rejected_on_other_trusted_connection",
        "An ad-hoc id belongs to its connection: another trusted connection that sends it is refused "
        "(the runner passes the captured id across connections to simulate a leak).",
        conns=("t", "u"),
        trusted=("t", "u"),
    )
    c.published("t", 1, 1, listeners=0, answer=cap_adhoc("t_id"))
    c.refused("u", JSONRPC.publish(1, c.ev(), 1, ref("t_id")), UNKNOWN_CLIENT, tmpl(unrecognized("${t_id}")))
    c.refused("u", JSONRPC.subscribe(2, c.ev(), ref("t_id")), UNKNOWN_CLIENT, tmpl(unrecognized("${t_id}")))

    c = Case(
        f,
        "adhoc.rejected_on_untrusted_connection",
        "An ad-hoc id is not a registered client: an untrusted connection cannot use it.",
        conns=("t", "a"),
        trusted=("t",),
    )
    c.published("t", 1, 1, listeners=0, answer=cap_adhoc("t_id"))
    c.refused(
        "a", PUB_SUB.publish("r1", c.ev(), 1, ref("t_id")), UNKNOWN_CLIENT, tmpl(unrecognized("${t_id}"))
    )

    c = Case(
        f,
        "adhoc.unsubscribe_from_other_connection",
        "The ad-hoc identity is usable only on its own connection, for unsubscribe too: another "
        "connection that learnt both the ad-hoc id and a subscription id cannot cancel it.",
        conns=("t", "u", "a"),
        trusted=("t", "u"),
    )
    c.subscribe("t", OMIT, "foo", "s", rid=1, answer=cap_adhoc("t_id"))
    c.refused("u", JSONRPC.unsubscribe(1, ref("s"), ref("t_id")), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)
    c.refused("a", JSONRPC.unsubscribe(1, ref("s"), ref("t_id")), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)
    c.published("a", 2, 1, ALICE, listeners=1)
    c.expect("t", event(c.ev(), 1, ref("s")))

    c = Case(
        f,
        "adhoc.unsubscribe_without_id",
        "On a trusted connection an unsubscribe without an id acts as the connection's ad-hoc identity.",
        conns=("t",),
        trusted=("t",),
    )
    c.subscribe("t", None, "foo", "s", PUB_SUB, rid="r1", answer=cap_adhoc("me"))
    c.unsubscribe("t", "r2", ref("s"), None, d=PUB_SUB)

    c = Case(
        f,
        "adhoc.unsubscribe_before_any_identity",
        "A trusted connection that has no ad-hoc identity yet owns nothing: an id-less unsubscribe "
        "of someone else's subscription is refused.",
        conns=("a", "t"),
        trusted=("t",),
    )
    c.subscribe("a", ALICE, "foo", "s")
    c.refused("t", JSONRPC.unsubscribe(1, ref("s")), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)

    c = Case(
        f,
        "untrusted.unsubscribe_without_id",
        "On an untrusted connection an id-less unsubscribe owns nothing, even the connection's own "
        "subscriptions; with the id it succeeds.",
    )
    c.subscribe("a", ALICE, "foo", "s")
    c.refused("a", JSONRPC.unsubscribe(1, ref("s")), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)
    c.refused("a", JSONRPC.unsubscribe(2, ref("s"), ""), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)
    c.unsubscribe("a", 3, ref("s"), ALICE)

    c = Case(
        f,
        "registered_id_is_a_shared_credential",
        "A registered id is the credential, not the connection: the same id on another connection "
        "may cancel the subscription (as in the original).",
        conns=("a1", "a2"),
    )
    c.subscribe("a1", ALICE, "foo", "s")
    c.unsubscribe("a2", 1, ref("s"), ALICE)
    c.refused("a1", JSONRPC.unsubscribe(2, ref("s"), ALICE), NO_SUCH_SUBSCRIPTION, NO_SUCH)

    c = Case(
        f,
        "unsubscribe_twice",
        "The second unsubscribe of the same subscription finds nothing.",
    )
    c.subscribe("a", ALICE, "foo", "s")
    c.unsubscribe("a", 1, ref("s"), ALICE)
    c.refused("a", JSONRPC.unsubscribe(2, ref("s"), ALICE), NO_SUCH_SUBSCRIPTION, NO_SUCH)

    c = Case(
        f,
        "unsubscribe_needs_no_registration",
        "Unsubscribe checks ownership only: an unknown id gets 'not your subscription', not "
        "'Unrecognized client ID'.",
        conns=("a", "b"),
    )
    c.subscribe("a", ALICE, "foo", "s")
    c.refused("b", JSONRPC.unsubscribe(1, ref("s"), STRANGER), NOT_YOUR_SUBSCRIPTION, NOT_YOURS)

    c = Case(
        f,
        "adhoc.not_revealed_to_subscribers",
        "Events carry no publisher identity: a subscriber on another connection never sees the "
        "ad-hoc id of a trusted publisher.",
        conns=("t", "b"),
        trusted=("t",),
    )
    c.subscribe("b", BOB, "foo", "s")
    c.published("t", 1, "hi", listeners=1, answer=cap_adhoc("me"))
    c.expect("b", event(c.ev(), "hi", ref("s")))

    c = Case(
        f,
        "exclusion_is_by_identity_not_connection",
        "One trusted connection acting as two identities: a subscription made as alice receives "
        "the same connection's ad-hoc publish, and vice versa the ad-hoc subscription receives alice's.",
        conns=("t",),
        trusted=("t",),
    )
    c.subscribe("t", ALICE, "foo", "s_alice", rid=1)
    c.subscribe("t", OMIT, "foo", "s_me", rid=2, answer=cap_adhoc("me"))
    c.call(
        "t",
        JSONRPC.publish(3, c.ev(), "as me"),
        event(c.ev(), "as me", ref("s_alice")),
        ok(3, {"listeners": 1, "client_id": ref("me")}),
    )
    c.call(
        "t",
        JSONRPC.publish(4, c.ev(), "as alice", ALICE),
        event(c.ev(), "as alice", ref("s_me")),
        ok(4, {"listeners": 1, "client_id": ALICE}),
    )

    c = Case(
        f,
        "adhoc.subscriptions_removed_at_close",
        "When a trusted connection closes, its ad-hoc identity and its subscriptions go with it.",
        conns=("t", "a"),
        trusted=("t",),
    )
    c.subscribe("t", OMIT, "foo", "s", rid=1, answer=cap_adhoc("me"))
    c.published("a", 1, 1, ALICE, listeners=1)
    c.expect("t", event(c.ev(), 1, ref("s")))
    c.close("t")
    c.published("a", 2, 2, ALICE, listeners=0)
    c.refused("a", JSONRPC.unsubscribe(3, ref("s"), ref("me")), NO_SUCH_SUBSCRIPTION, NO_SUCH)


# == errors_params.json ==============================================================


def errors_params() -> None:
    f = "errors_params"
    new_file(
        f,
        "Invalid params: every field of every method, missing and of the wrong type, in both "
        "dialects, and the order in which params are validated. The original answered none of "
        "these over JSON-RPC (the client hung); we always answer with INVALID_PARAMS (-32602).",
    )
    for d in DIALECTS:
        k = d.kind
        # (method, field, how it is wrong, params); the expected text follows from the first three.
        cases: list[tuple[str, str, str, dict[str, Any]]] = [
            ("publish", "event_name", "missing", {"value": 1, "client_id": ALICE}),
            ("publish", "event_name", "number", {"event_name": 5, "value": 1, "client_id": ALICE}),
            ("publish", "event_name", "null", {"event_name": None, "value": 1, "client_id": ALICE}),
            ("publish", "value", "missing", {"event_name": "EV", "client_id": ALICE}),
            ("publish", "client_id", "number", {"event_name": "EV", "value": 1, "client_id": 5}),
            ("publish", "client_id", "boolean", {"event_name": "EV", "value": 1, "client_id": True}),
            ("subscribe", "event_name", "missing", {"client_id": ALICE}),
            ("subscribe", "event_name", "array", {"event_name": ["x"], "client_id": ALICE}),
            ("subscribe", "client_id", "object", {"event_name": "EV", "client_id": {}}),
            ("unsubscribe", "subscription_id", "missing", {"client_id": ALICE}),
            ("unsubscribe", "subscription_id", "number", {"subscription_id": 42, "client_id": ALICE}),
            ("unsubscribe", "client_id", "boolean", {"subscription_id": "x", "client_id": False}),
        ]
        for method, field, how, params in cases:
            c = Case(f, f"{k}.{method}.{field}.{how}", f"{method}: {field} {how}.", conns=("a", "s"))
            if method == "publish":
                # Prove nothing was delivered despite a subscriber.
                c.subscribe("s", BOB, "EV", "s")
            params = {key: (c.ev("EV") if v == "EV" else v) for key, v in params.items()}
            if how == "missing":
                text = missing_param(method, field)
            else:
                text = not_a_string(method, field, params[field])
            c.refused("a", d.raw(method, d.rid(1), params), INVALID_PARAMS, text)
            if method == "publish":
                c.nothing("s")

        c = Case(
            f,
            f"{k}.publish.value_null_is_legal",
            "A null value is a value (only a missing one is an error).",
            conns=("a", "s"),
        )
        c.subscribe("s", BOB, "foo", "s")
        c.published("a", d.rid(1), None, ALICE, listeners=1, d=d)
        c.expect("s", event(c.ev(), None, ref("s")))

        c = Case(f, f"{k}.extra_params_ignored", "Unknown params members are ignored.")
        c.call(
            "a",
            d.publish(d.rid(1), c.ev(), 1, ALICE, colour="blue"),
            d.ok_publish(d.rid(1), 0, ALICE),
        )

        if not d.pub_sub:
            c = Case(
                f,
                "jsonrpc.extra_params_ignored_whatever_their_name",
                "Unknown params members are ignored whatever their name and whatever else the message "
                "looks like (a fractional id, an extra envelope member).",
            )
            params = {"event_name": c.ev(), "value": 1, "client_id": ALICE, "ctx": 1}
            c.call("a", msg("publish", params, 1), ok(1, {"listeners": 0, "client_id": ALICE}))
            c.call("a", msg("publish", params, 2.5), ok(2.5, {"listeners": 0, "client_id": ALICE}))
            c.call("a", {**msg("publish", params, 3), "x": 0}, ok(3, {"listeners": 0, "client_id": ALICE}))
            c.call("a", {**msg("ping", {"ctx": 1}, 4), "x": 0}, ok(4, {}))

        c = Case(
            f,
            f"{k}.order.event_name_first",
            "publish validates event_name, then value, then client_id: with all three wrong, "
            "event_name is reported.",
        )
        c.refused(
            "a",
            d.raw("publish", d.rid(1), {"event_name": 1, "client_id": 2}),
            INVALID_PARAMS,
            not_a_string("publish", "event_name", 1),
        )
        c.refused(
            "a",
            d.raw("publish", d.rid(2), {"event_name": c.ev(), "client_id": 2}),
            INVALID_PARAMS,
            missing_param("publish", "value"),
        )

        c = Case(
            f, f"{k}.order.subscription_id_first", "unsubscribe validates subscription_id before client_id."
        )
        c.refused(
            "a",
            d.raw("unsubscribe", d.rid(1), {"client_id": 2}),
            INVALID_PARAMS,
            missing_param("unsubscribe", "subscription_id"),
        )

        c = Case(
            f, f"{k}.order.params_before_identity", "Params are validated before the client id is looked up."
        )
        c.refused(
            "a",
            d.raw("subscribe", d.rid(1), {"client_id": STRANGER}),
            INVALID_PARAMS,
            missing_param("subscribe", "event_name"),
        )
        c.refused(
            "a",
            d.raw("publish", d.rid(2), {"event_name": c.ev(), "client_id": NO_PUBLISH}),
            INVALID_PARAMS,
            missing_param("publish", "value"),
        )

        c = Case(
            f, f"{k}.error_text_truncated", "A shown value longer than 80 characters is cut to 77 plus '...'."
        )
        long_value = ["x" * 30, "y" * 30, "z" * 30]
        c.refused(
            "a",
            d.raw("subscribe", d.rid(1), {"event_name": long_value, "client_id": ALICE}),
            INVALID_PARAMS,
            not_a_string("subscribe", "event_name", long_value),
        )

        c = Case(f, f"{k}.ping.params_ignored", "ping takes no params; named members are ignored.")
        if d.pub_sub:
            c.call("a", msg("ping", {"request_id": "r1", "anything": [1, 2]}), PUB_SUB.ok_empty("r1"))
        else:
            c.call("a", msg("ping", {"anything": [1, 2]}, 1), PONG_1)

    # pub_sub only: request_id itself.
    for method, value in (("publish", 5), ("subscribe", None), ("unsubscribe", {}), ("ping", True)):
        c = Case(
            f,
            f"pub_sub.request_id.{method}.{type(value).__name__ if value is not None else 'null'}",
            "A pub_sub request_id must be a string; otherwise the answer is a JSON-RPC error "
            "response with id null (there is no usable request_id to name an answer after).",
        )
        c.call(
            "a",
            msg(method, {"request_id": value, "client_id": ALICE}),
            err(None, INVALID_PARAMS, not_a_string(method, "request_id", value)),
        )

    c = Case(f, "pub_sub.order.request_id_first", "request_id is checked before the method's own params.")
    c.call(
        "a",
        msg("publish", {"request_id": 7}),
        err(None, INVALID_PARAMS, not_a_string("publish", "request_id", 7)),
    )

    c = Case(
        f,
        "pub_sub.request_id.unknown_method",
        "A non-string request_id is reported for an unknown method as for a known one, before the "
        "method is looked up.",
    )
    c.call(
        "a",
        msg("frobnicate", {"request_id": 7}),
        err(None, INVALID_PARAMS, not_a_string("frobnicate", "request_id", 7)),
    )
    c.call("a", ping(1), PONG_1)

    c = Case(
        f,
        "jsonrpc.request_id_ignored",
        "With an id the request is standard JSON-RPC: a request_id member is just an ignored param, "
        "whatever its type.",
    )
    c.call(
        "a",
        JSONRPC.publish(1, c.ev(), 1, client=ALICE, request_id=5),
        ok(1, {"listeners": 0, "client_id": ALICE}),
    )
    c.call("a", msg("ping", {"request_id": "r9"}, 2), ok(2, {}))

    # Positional params (standard dialect only: pub_sub needs an object to carry request_id).
    c = Case(
        f,
        "jsonrpc.positional.publish",
        "publish by position: [event_name, value, client_id].",
        conns=("a", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.call("a", msg("publish", [c.ev(), {"k": 1}, ALICE], 1), ok(1, {"listeners": 1, "client_id": ALICE}))
    c.expect("s", event(c.ev(), {"k": 1}, ref("s")))

    c = Case(
        f,
        "jsonrpc.positional.subscribe_unsubscribe",
        "subscribe by position [event_name, client_id]; unsubscribe [subscription_id, client_id].",
    )
    c.call(
        "a", msg("subscribe", [c.ev(), ALICE], 1), ok(1, {"subscription_id": cap("s"), "client_id": ALICE})
    )
    c.call("a", msg("unsubscribe", [ref("s"), ALICE], 2), ok(2, {}))

    c = Case(f, "jsonrpc.positional.missing_and_wrong", "Positional params are checked like named ones.")
    c.refused("a", msg("publish", [c.ev()], 1), INVALID_PARAMS, missing_param("publish", "value"))
    c.refused("a", msg("publish", [5, 1, ALICE], 2), INVALID_PARAMS, not_a_string("publish", "event_name", 5))
    c.refused("a", msg("subscribe", [], 3), INVALID_PARAMS, missing_param("subscribe", "event_name"))

    c = Case(f, "jsonrpc.positional.too_many", "More positional params than the method has.")
    c.refused(
        "a", msg("publish", [c.ev(), 1, ALICE, None, "extra"], 1), INVALID_PARAMS, wrong_arity("publish")
    )
    c.refused("a", msg("ping", [1], 2), INVALID_PARAMS, wrong_arity("ping"))
    c.call("a", msg("ping", [], 3), ok(3, {}))


# == envelope.json ====================================================================


def envelope() -> None:
    f = "envelope"
    new_file(
        f,
        "The JSON-RPC 2.0 envelope: jsonrpc, method, params and id members; JSON texts that are "
        "not requests; unknown methods; plain notifications. Envelope errors are INVALID_REQUEST "
        "(-32600) and are answered even for notifications (with id null).",
    )
    # (name, message, the id the INVALID_REQUEST answer carries, its text)
    bad = [
        ("jsonrpc.missing", prune(method="ping", id=1), 1, missing_key("jsonrpc")),
        ("jsonrpc.wrong_string", msg("ping", id=1, jsonrpc="1.0"), 1, wrong_version("1.0")),
        ("jsonrpc.number", msg("ping", id=1, jsonrpc=2.0), 1, wrong_version(2.0)),
        ("jsonrpc.missing_on_notification", prune(method="ping"), None, missing_key("jsonrpc")),
        ("method.missing", msg(id=1), 1, missing_key("method")),
        ("method.number", msg(5, id=1), 1, wrong_type("method", 5)),
        ("method.null", msg(None, id=1), 1, wrong_type("method", None)),
        ("method.not_string_pub_sub", msg(5, {"request_id": "r1"}), None, wrong_type("method", 5)),
        ("params.number", msg("ping", 5, 1), 1, wrong_type("params", 5)),
        ("params.string", msg("publish", "x", 1), 1, wrong_type("params", "x")),
        ("params.boolean", msg("ping", True, 1), 1, wrong_type("params", True)),
        ("params.null", msg("ping", None, 1), 1, wrong_type("params", None)),
        ("params.scalar_on_notification", msg("ping", 5), None, wrong_type("params", 5)),
        ("id.boolean", msg("ping", id=True), None, wrong_type("id", True)),
        ("id.object", msg("ping", id={"n": 1}), None, wrong_type("id", {"n": 1})),
        ("id.array", msg("ping", id=[1]), None, wrong_type("id", [1])),
        ("id.checked_first", prune(id=False), None, wrong_type("id", False)),
        ("response_object.result", prune(jsonrpc="2.0", result=1, id=7), 7, missing_key("method")),
        (
            "response_object.error",
            prune(jsonrpc="2.0", error={"code": 1, "message": "x"}, id=8),
            8,
            missing_key("method"),
        ),
    ]
    for name, message, answer_id, text in bad:
        c = Case(
            f,
            name,
            f"Envelope error ({name.replace('.', ': ').replace('_', ' ')}); the connection carries on.",
        )
        c.call("a", message, err(answer_id, INVALID_REQUEST, text))
        c.call("a", ping(1), PONG_1)

    for text in ("42", '"x"', "null", "true", "1.5"):
        c = Case(
            f,
            f"not_a_request.{json.loads(text).__class__.__name__ if text != 'null' else 'null'}",
            f"The JSON text {text} is not a request.",
        )
        c.send("a", text=text + "\n")
        c.expect("a", NOT_REQUEST)
        c.call("a", ping(1), PONG_1)

    c = Case(f, "unknown_method.jsonrpc", "An unknown method with an id: METHOD_NOT_FOUND.")
    c.refused("a", msg("frobnicate", {"x": 1}, 1), METHOD_NOT_FOUND, unknown_method("frobnicate"))

    c = Case(f, "unknown_method.pub_sub", "An unknown method with a request_id: a pub_sub failure answer.")
    c.refused("a", msg("frobnicate", {"request_id": "r1"}), METHOD_NOT_FOUND, unknown_method("frobnicate"))

    c = Case(
        f,
        "unknown_method.plain_notification",
        "An unknown plain notification is ignored, as JSON-RPC requires.",
    )
    c.send("a", msg("frobnicate", {"x": 1}))
    c.nothing("a")
    c.call("a", ping(1), PONG_1)

    c = Case(f, "unknown_method.case_sensitive", "Method names are case-sensitive.")
    c.refused(
        "a",
        msg("Publish", {"event_name": c.ev(), "value": 1, "client_id": ALICE}, 1),
        METHOD_NOT_FOUND,
        unknown_method("Publish"),
    )

    c = Case(
        f,
        "unknown_method.server_notifications",
        "'event' and 'closing' are server-to-client methods; a server does not accept them.",
    )
    c.refused(
        "a", msg("event", {"event_name": c.ev("x"), "value": 1}, 1), METHOD_NOT_FOUND, unknown_method("event")
    )
    c.refused("a", msg("closing", {"request_id": "r2"}), METHOD_NOT_FOUND, unknown_method("closing"))

    c = Case(
        f,
        "plain_notification.publish_delivers",
        "A publish without id or request_id is fire-and-forget: delivered, never answered.",
        conns=("a", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.send("a", msg("publish", {"event_name": c.ev(), "value": "ff", "client_id": ALICE}))
    c.expect("s", event(c.ev(), "ff", ref("s")))
    c.nothing("a")

    c = Case(
        f,
        "plain_notification.errors_not_answered",
        "A failing plain notification (unknown client, forbidden, bad params) is not answered and "
        "has no effect.",
        conns=("a", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.send("a", msg("publish", {"event_name": c.ev(), "value": 1, "client_id": STRANGER}))
    c.send("a", msg("publish", {"event_name": c.ev(), "value": 2, "client_id": NO_PUBLISH}))
    c.send("a", msg("publish", {"event_name": c.ev(), "client_id": ALICE}))
    c.send("a", msg("publish", {"event_name": c.ev(), "value": 3}))
    c.call("a", ping(1), PONG_1)
    c.nothing("s")

    c = Case(f, "plain_notification.ping", "A ping notification is not answered.")
    c.send("a", msg("ping"))
    c.send("a", msg("ping", {}))
    c.call("a", ping(2), ok(2, {}))

    c = Case(f, "extra_members_ignored", "Unknown envelope members are ignored, in both dialects.")
    c.call("a", {**ping(1), "extension": {"a": 1}}, PONG_1)
    c.call("a", {**msg("ping", {"request_id": "r2"}), "extension": True}, PUB_SUB.ok_empty("r2"))

    c = Case(f, "params_optional", "params may be omitted when a method needs none, or be an empty array.")
    c.call("a", msg("ping", id=1), PONG_1)
    c.call("a", msg("ping", [], 2), ok(2, {}))
    c.call("a", msg("publish", id=3), err(3, INVALID_PARAMS, missing_param("publish", "event_name")))

    ids = [
        ("string", "abc"),
        ("integer", 0),
        ("negative", -17),
        ("fraction", 1.5),
        ("null", None),
        ("unicode", 'ïd ✓ "quoted" }{'),
    ]
    for name, value in ids:
        c = Case(f, f"id.echoed.{name}", "A valid id is echoed exactly.")
        c.call("a", ping(value), ok(value, {}))


# == dialects.json ====================================================================


def dialects() -> None:
    f = "dialects"
    new_file(
        f,
        "The two dialects, chosen per message on one connection: exact answer shapes and key "
        "order, ping, failure answers with error_code, request_id echoing.",
    )
    for d in DIALECTS:
        k = d.kind
        c = Case(f, f"{k}.ping", "ping is answered with an empty result.")
        c.call("a", d.ping(d.rid(1)), d.ok_empty(d.rid(1)))

        c = Case(
            f,
            f"{k}.full_exchange",
            "subscribe, publish, event, unsubscribe: every answer shape of the dialect, key order included.",
            conns=("p", "s"),
        )
        c.subscribe("s", BOB, "foo", "sub", d, rid=d.rid(1))
        c.published("p", d.rid(1), {"b": 2, "a": [1, "x", None]}, ALICE, listeners=1, d=d)
        c.expect("s", event(c.ev(), {"b": 2, "a": [1, "x", None]}, ref("sub")))
        c.unsubscribe("s", d.rid(2), ref("sub"), BOB, d=d)
        c.published("p", d.rid(2), 2, ALICE, listeners=0, d=d)
        c.nothing("s")

        c = Case(f, f"{k}.failure_shape", "A refused request in this dialect: code and exact text.")
        c.refused(
            "a", d.subscribe(d.rid(1), c.ev(), NO_SUBSCRIBE), SUBSCRIBE_FORBIDDEN, NOT_ALLOWED_SUBSCRIBE
        )

    c = Case(
        f,
        "jsonrpc.ping_id_null",
        "An id of null is a request (not a notification) and is answered with id null.",
    )
    c.call("a", ping(None), ok(None, {}))

    c = Case(
        f,
        "pub_sub.request_id_any_string",
        "Any string is a request_id and names the answer, the empty string and non-ASCII included.",
    )
    c.call("a", PUB_SUB.ping("要求-1 ✓"), PUB_SUB.ok_empty("要求-1 ✓"))
    c.call("a", PUB_SUB.ping(""), PUB_SUB.ok_empty(""))

    c = Case(
        f,
        "mixed_on_one_connection",
        "Both dialects and plain notifications interleave on one connection; answers come in request order.",
    )
    c.send("a", JSONRPC.subscribe(1, c.ev(), BOB))
    c.send("a", PUB_SUB.subscribe("r2", c.ev(), BOB))
    c.send("a", msg("ping"))
    c.send("a", JSONRPC.publish(3, c.ev(), "v", ALICE))
    c.send("a", PUB_SUB.ping("r4"))
    c.expect(
        "a",
        ok(1, {"subscription_id": cap("s1"), "client_id": BOB}),
        PUB_SUB.ok_subscribe("r2", cap("s2"), BOB),
        event(c.ev(), "v", ref("s1")),
        event(c.ev(), "v", ref("s2")),
        ok(3, {"listeners": 2, "client_id": ALICE}),
        PUB_SUB.ok_empty("r4"),
    )

    c = Case(
        f,
        "events_same_in_both_dialects",
        "An event has one shape whatever dialect the subscription was made in.",
        conns=("j", "o", "p"),
    )
    c.subscribe("j", BOB, "foo", "sj", rid=1)
    c.subscribe("o", CAROL, "foo", "so", PUB_SUB, rid="r1")
    c.published("p", 1, [1, 2], ALICE, listeners=2)
    c.expect("j", event(c.ev(), [1, 2], ref("sj")))
    c.expect("o", event(c.ev(), [1, 2], ref("so")))

    c = Case(
        f,
        "pub_sub.original_client_messages",
        "Exactly what the original Dart JsonRpc2Client writes (client_id null on a trusted "
        "connection, bare documents) and the fields it reads back.",
        conns=("t",),
        trusted=("t",),
    )
    c.call(
        "t",
        PUB_SUB.subscribe("5d0a7c1e-9f3b-4c2d-8e6f-0a1b2c3d4e5f", c.ev(), None),
        PUB_SUB.ok_subscribe("5d0a7c1e-9f3b-4c2d-8e6f-0a1b2c3d4e5f", cap("s"), cap_adhoc("me")),
        framing="none",
    )
    c.call(
        "t",
        PUB_SUB.unsubscribe("6e1b8d2f-a04c-4d3e-9f70-1b2c3d4e5f60", ref("s"), ref("me")),
        PUB_SUB.ok_empty("6e1b8d2f-a04c-4d3e-9f70-1b2c3d4e5f60"),
        framing="none",
    )


# == batches.json ======================================================================


def batches() -> None:
    f = "batches"
    new_file(
        f,
        "JSON-RPC batches: members are handled in order; their responses come in one array "
        "(no array at all if no member gets a response); pub_sub answer notifications are written "
        "as frames of their own, in member order, before the array; empty and oversized batches "
        "get one error.",
    )
    c = Case(
        f, "mixed", "Valid and invalid members; the answers come in member order, notifications omitted."
    )
    c.call(
        "a",
        [
            ping(1),
            msg("publish", {"client_id": ALICE}, 2),
            msg("ping"),
            msg("frobnicate", id=3),
            5,
            msg("ping", {"request_id": "r4"}),
            prune(method="ping", id=6),
        ],
        PUB_SUB.ok_empty("r4"),
        [
            PONG_1,
            err(2, INVALID_PARAMS, missing_param("publish", "event_name")),
            err(3, METHOD_NOT_FOUND, unknown_method("frobnicate")),
            err(None, INVALID_REQUEST, bad_member(5)),
            err(6, INVALID_REQUEST, missing_key("jsonrpc")),
        ],
    )

    c = Case(f, "single_member", "A batch of one is answered with an array of one.")
    c.call("a", [ping(1)], [PONG_1])

    c = Case(
        f,
        "all_notifications",
        "A batch of plain notifications is not answered at all, but its members do run.",
        conns=("a", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.send(
        "a",
        [
            msg("ping"),
            msg("publish", {"event_name": c.ev(), "value": 1, "client_id": ALICE}),
            msg("frobnicate"),
        ],
    )
    c.expect("s", event(c.ev(), 1, ref("s")))
    c.nothing("a")
    c.call("a", ping(1), PONG_1)

    c = Case(f, "empty", "An empty array is one INVALID_REQUEST error, not an empty array.")
    c.call("a", [], err(None, INVALID_REQUEST, EMPTY_BATCH))

    c = Case(f, "garbage", "Members that are not objects are each answered with INVALID_REQUEST.")
    garbage = [1, "x", None, [], [ping(2)]]
    c.call("a", garbage, [err(None, INVALID_REQUEST, bad_member(member)) for member in garbage])

    c = Case(
        f,
        "over_default_limit",
        "101 members exceed the default limit of 100: one LIMIT_EXCEEDED error and no member runs.",
        conns=("a", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    members = [ping(i) for i in range(1, 101)] + [JSONRPC.publish(101, c.ev(), 1, ALICE)]
    c.call("a", members, err(None, LIMIT_EXCEEDED, "A batch may contain at most 100 requests."))
    c.nothing("s")

    c = Case(
        f,
        "at_configured_limit",
        "With the batch limit set to 3, three members are fine and four are refused.",
        options={"max_batch": 3},
    )
    c.call("a", [ping(1), ping(2), ping(3)], [PONG_1, ok(2, {}), ok(3, {})])
    c.call(
        "a",
        [ping(1), ping(2), ping(3), ping(4)],
        err(None, LIMIT_EXCEEDED, "A batch may contain at most 3 requests."),
    )

    c = Case(
        f,
        "pub_sub_members",
        "pub_sub members are answered by their answer notifications, each its own frame (a batch "
        "response array holds only responses); with no response there is no array.",
    )
    c.call(
        "a",
        [PUB_SUB.publish("r1", c.ev(), 1, ALICE), PUB_SUB.publish("r2", c.ev(), 1, NO_PUBLISH)],
        PUB_SUB.ok_publish("r1", 0, ALICE),
        PUB_SUB.fail("r2", PUBLISH_FORBIDDEN, NOT_ALLOWED_PUBLISH),
    )

    c = Case(
        f,
        "in_order_and_events_first",
        "Members run in order (a subscribe is stored before the next member publishes); events "
        "for this connection are written before the batch's array.",
    )
    c.call(
        "a",
        [
            JSONRPC.subscribe(1, c.ev(), BOB),
            JSONRPC.publish(2, c.ev(), "x", ALICE),
        ],
        event(c.ev(), "x", cap("s")),
        [ok(1, {"subscription_id": ref("s"), "client_id": BOB}), ok(2, {"listeners": 1, "client_id": ALICE})],
    )

    c = Case(f, "duplicate_ids", "Members with the same id are each answered.")
    c.call("a", [ping(1), ping(1)], [PONG_1, PONG_1])

    c = Case(
        f,
        "envelope_errors_answered",
        "Invalid notifications inside a batch are answered (id null), valid ones are not.",
    )
    c.call(
        "a",
        [prune(method="ping"), msg("ping"), msg(7)],
        [
            err(None, INVALID_REQUEST, missing_key("jsonrpc")),
            err(None, INVALID_REQUEST, wrong_type("method", 7)),
        ],
    )

    c = Case(f, "split_bytes", "A batch delivered one byte at a time.")
    c.call("a", [ping(1), PUB_SUB.ping("r2")], PUB_SUB.ok_empty("r2"), [PONG_1], split="bytes")

    c = Case(f, "invalid_json", "A batch that is not valid JSON is one parse error.")
    c.send("a", text='[{"jsonrpc":"2.0","method":"ping","id":1},]\n')
    c.expect("a", BAD_JSON)
    c.call("a", ping(2), ok(2, {}))


# == framing.json ======================================================================


def sized_ping(size: int, id_prefix: str = "") -> str:
    """A compact ping request of exactly `size` bytes (ASCII), id padded with x."""
    base = json.dumps(ping(id_prefix), separators=(",", ":"))
    pad = size - len(base)
    assert pad >= 0
    text = json.dumps(ping(id_prefix + "x" * pad), separators=(",", ":"))
    assert len(text.encode()) == size
    return text


def framing() -> None:
    f = "framing"
    new_file(
        f,
        "Byte streams: newline-delimited JSON, bare concatenated and pretty-printed documents, "
        "LSP Content-Length frames (detected per connection, answered in kind), arbitrary "
        "splitting of the input, parse errors, the frame size limit, fatal header errors and EOF.",
    )
    p1 = json.dumps(ping(1), separators=(",", ":"))
    p2 = json.dumps(ping(2), separators=(",", ":"))
    p3 = json.dumps(ping(3), separators=(",", ":"))

    c = Case(f, "newline.several_in_one_chunk", "Several newline-terminated documents in one write.")
    c.send("a", text=f"{p1}\n{p2}\n{p3}\n")
    c.expect("a", PONG_1, ok(2, {}), ok(3, {}), framing="newline")

    c = Case(
        f,
        "newline.crlf_and_blank_lines",
        "CRLF line ends, blank lines and indentation between documents are whitespace.",
    )
    c.send("a", text=f"\r\n\r\n  {p1}\r\n\t\r\n{p2}\r\n")
    c.expect("a", PONG_1, ok(2, {}))

    c = Case(
        f, "bare.concatenated", "Documents with nothing between them, as the original Dart client wrote them."
    )
    c.send("a", text=f"{p1}{p2}{p3}")
    c.expect("a", PONG_1, ok(2, {}), ok(3, {}), framing="newline")

    c = Case(f, "bare.spaces_between", "Documents separated by spaces on one line.")
    c.send("a", text=f"{p1} {p2}   {p3} ")
    c.expect("a", PONG_1, ok(2, {}), ok(3, {}))

    c = Case(f, "pretty_printed", "A multi-line, indented document is one frame.")
    c.send(
        "a",
        text=json.dumps(JSONRPC.publish(1, c.ev(), {"a": [1, 2]}, ALICE), indent=2) + "\n",
    )
    c.expect("a", ok(1, {"listeners": 0, "client_id": ALICE}))

    c = Case(
        f, "pretty_printed.concatenated", "Pretty-printed documents back to back, split at awkward places."
    )
    text = json.dumps(ping(1), indent=4) + json.dumps(ping(2), indent="\t")
    c.send("a", text=text, split=[1, 9, 30, len(text.encode()) - 1])
    c.expect("a", PONG_1, ok(2, {}))

    c = Case(
        f,
        "strings_with_structure",
        "Brackets, quotes, escapes and a newline escape inside strings do not confuse framing.",
    )
    tricky = 'a}b]c{d[e"f\\g\nh\u2028'
    c.send("a", msg("ping", id=tricky), framing="none")
    c.send("a", msg("ping", id="}"), framing="none")
    c.expect("a", ok(tricky, {}), ok("}", {}))

    c = Case(f, "split.every_byte", "A request delivered one byte per read.", conns=("a", "s"))
    c.subscribe("s", BOB, "foo", "s")
    c.call(
        "a",
        JSONRPC.publish(1, c.ev(), "é✓😀", ALICE),
        ok(1, {"listeners": 1, "client_id": ALICE}),
        split="bytes",
    )
    c.expect("s", event(c.ev(), "é✓😀", ref("s")))

    c = Case(
        f,
        "split.inside_utf8_and_escapes",
        "Splits inside a multi-byte UTF-8 character, an escape sequence and a number.",
    )
    text = (
        '{"jsonrpc":"2.0","method":"ping","id":"\\"é\\u00e9"}{"jsonrpc":"2.0","method":"ping","id":12345}\n'
    )
    raw = text.encode()
    cut_utf8 = raw.index("é".encode()) + 1
    cut_escape = raw.index(b"\\u00e9") + 3
    cut_quote_escape = raw.index(b'\\"') + 1
    cut_number = raw.index(b"12345") + 2
    c.send("a", text=text, split=sorted([cut_quote_escape, cut_utf8, cut_escape, cut_number]))
    c.expect("a", ok('"éé', {}), ok(12345, {}))

    c = Case(
        f, "split.documents_across_reads", "One read ends in the middle of the second of three documents."
    )
    text = f"{p1}\n{p2}\n{p3}\n"
    c.send("a", text=text, split=[len(p1) + 10])
    c.expect("a", PONG_1, ok(2, {}), ok(3, {}))

    c = Case(
        f,
        "scalars_in_stream",
        "Top-level scalars are complete JSON texts but not requests; each is answered.",
    )
    c.send("a", text=f'42 "x" null true {p1}\n')
    c.expect("a", *[NOT_REQUEST] * 4, PONG_1)

    c = Case(f, "number_then_object", "A number ends where an object starts.")
    c.send("a", text=f"42{p1}")
    c.expect("a", NOT_REQUEST, PONG_1)

    # Not JSON: PARSE_ERROR with id null, and the connection carries on.
    for name, description, sent in (
        (
            "parse_error.continues",
            "A document that is not valid JSON gets PARSE_ERROR with id null; the connection carries on.",
            {"text": "{bad json}\n"},
        ),
        ("parse_error.bare_word", "A bare word is a malformed JSON text.", {"text": "hello\n"}),
        (
            "parse_error.invalid_utf8",
            "Bytes that are not UTF-8 inside a string: PARSE_ERROR.",
            {"hex": b'{"jsonrpc":"2.0","method":"ping","id":"\xff\xfe"}\n'.hex()},
        ),
    ):
        c = Case(f, name, description)
        c.send("a", **sent)
        c.expect("a", BAD_JSON)
        c.call("a", ping(1), PONG_1)

    limit = 1024
    opts = {"max_frame_size": limit}
    too_big = err(None, FRAME_TOO_LARGE, too_large(limit))
    c = Case(
        f,
        "oversize.newline",
        "A document over the limit is skipped unparsed and answered with FRAME_TOO_LARGE; the next "
        "one works.",
        options=opts,
    )
    c.send("a", text=sized_ping(limit + 500) + "\n" + p2 + "\n")
    c.expect("a", too_big, ok(2, {}))

    c = Case(
        f,
        "oversize.exact_limit",
        "A document of exactly the limit is accepted; one byte more is not.",
        options=opts,
    )
    at_limit = sized_ping(limit, "at-")
    c.send("a", text=at_limit + "\r\n")
    c.expect("a", ok(json.loads(at_limit)["id"], {}))
    c.send("a", text=sized_ping(limit + 1) + "\n")
    c.expect("a", too_big)

    c = Case(
        f,
        "oversize.bare_split_bytes",
        "An oversized bare document arriving one byte at a time, followed by a good one.",
        options=opts,
    )
    c.send("a", text=sized_ping(limit + 100) + p2, split="bytes")
    c.expect("a", too_big, ok(2, {}))

    c = Case(
        f,
        "oversize.nested",
        "An oversized document full of brackets and strings that look like brackets.",
        options=opts,
    )
    nested = json.dumps(msg("ping", {"x": [["]", "}"]] * 200}, 1), separators=(",", ":"))
    assert len(nested) > limit
    c.send("a", text=nested + p2)
    c.expect("a", too_big, ok(2, {}))

    body2 = p2.encode()

    def cl(body: str) -> str:
        return f"Content-Length: {len(body.encode())}\r\n\r\n{body}"

    c = Case(
        f, "content_length.basic", "A Content-Length framed request is answered with a Content-Length frame."
    )
    c.call("a", ping(1), PONG_1, framing="content-length")

    c = Case(
        f,
        "content_length.header_variants",
        "Header names are case-insensitive, other headers (Content-Type) are ignored, the first byte "
        "'c' selects this framing.",
    )
    c.send(
        "a",
        text=f"content-length: {len(p1)}\r\n"
        "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"
        f"{p1}",
    )
    c.expect("a", PONG_1, framing="content-length")
    c.send("a", text=f"Content-Type: application/json\r\nCONTENT-LENGTH:{len(body2)}\r\n\r\n{p2}")
    c.expect("a", ok(2, {}), framing="content-length")

    c = Case(
        f,
        "content_length.several_in_one_chunk_and_split",
        "Several frames in one read, then a frame split one byte per read.",
    )
    c.send("a", text=cl(p1) + cl(p2))
    c.expect("a", PONG_1, ok(2, {}), framing="content-length")
    c.send("a", text=cl(p3), split="bytes")
    c.expect("a", ok(3, {}), framing="content-length")

    c = Case(f, "content_length.utf8_body", "The length counts bytes, not characters.")
    c.call("a", ping("ünïcødé ✓ 😀"), ok("ünïcødé ✓ 😀", {}), framing="content-length")

    c = Case(
        f,
        "content_length.whitespace_between_frames",
        "CRLF after a body (as some peers write) is tolerated between frames.",
    )
    c.send("a", text=cl(p1) + "\r\n" + cl(p2) + "\r\n")
    c.expect("a", PONG_1, ok(2, {}), framing="content-length")

    c = Case(
        f,
        "content_length.events_in_kind",
        "Each connection is written in its own framing: a Content-Length subscriber gets "
        "Content-Length events from a newline publisher.",
        conns=("lsp", "nl"),
    )
    c.call(
        "lsp",
        JSONRPC.subscribe(1, c.ev(), BOB),
        ok(1, {"subscription_id": cap("s"), "client_id": BOB}),
        framing="content-length",
    )
    c.published("nl", 1, "x", ALICE, listeners=1)
    c.expect("lsp", event(c.ev(), "x", ref("s")), framing="content-length")

    c = Case(
        f,
        "content_length.parse_error_continues",
        "A body that is not JSON is a PARSE_ERROR; the frame boundary is known, so the connection "
        "carries on.",
    )
    c.send("a", text=cl("{nope}"))
    c.expect("a", BAD_JSON, framing="content-length")
    c.call("a", ping(1), PONG_1, framing="content-length")

    c = Case(
        f,
        "content_length.oversize",
        "A body over the limit is skipped without being parsed; the next frame works.",
        options=opts,
    )
    big = sized_ping(limit + 1)
    c.send("a", text=cl(big) + cl(p2))
    c.expect("a", too_big, ok(2, {}), framing="content-length")
    exact = sized_ping(limit)
    c.send("a", text=cl(exact))
    c.expect("a", ok(json.loads(exact)["id"], {}), framing="content-length")

    fatal = [
        ("bad_length", "Content-Length: twelve\r\n\r\n"),
        ("negative_length", "Content-Length: -5\r\n\r\n"),
        ("missing_length", "Content-Type: application/json\r\n\r\n{}"),
        ("duplicate_length", f"Content-Length: {len(p1)}\r\nContent-Length: {len(p1)}\r\n\r\n{p1}"),
        ("line_without_colon", f"Content-Length {len(p1)}\r\n\r\n{p1}"),
    ]
    # A parse error of unspecified text, then 'closing'.
    broken = (err(None, PARSE_ERROR, ANY_STRING), closing(PARSE_ERROR, BROKEN_FRAMING))
    for name, text in fatal:
        c = Case(
            f,
            f"content_length.fatal.{name}",
            "A broken header makes the next frame impossible to find: a PARSE_ERROR (implementation-"
            "defined text), then a 'closing' notification, and the server closes the connection.",
        )
        c.send("a", text=text)
        c.expect("a", *broken, framing="content-length")
        c.closed("a")

    c = Case(
        f,
        "content_length.fatal_ignores_the_rest",
        "After a fatal header error nothing more is read, even in the same write.",
    )
    c.send("a", text="Content-Length: x\r\n\r\n" + cl(p1))
    c.expect("a", *broken)
    c.closed("a")

    c = Case(f, "eof.clean", "EOF after complete frames: everything is answered, then the connection closes.")
    c.send("a", text=p1 + "\n" + p2)
    c.eof("a")
    c.expect("a", PONG_1, ok(2, {}))
    c.closed("a")

    c = Case(
        f,
        "eof.trailing_scalar",
        "A number at the very end is only complete at EOF; it is answered, then the connection closes.",
    )
    c.send("a", text=p1 + " 42")
    c.expect("a", PONG_1)
    c.eof("a")
    c.expect("a", NOT_REQUEST)
    c.closed("a")

    # EOF inside a frame: the fragment is dropped unanswered, the frames before it are answered.
    for name, description, text, framing in (
        (
            "eof.mid_document",
            "EOF in the middle of a JSON document: the fragment is dropped unanswered and the connection "
            "closes.",
            p1 + '\n{"jsonrpc":"2.0","method":"pi',
            None,
        ),
        (
            "eof.mid_content_length_body",
            "EOF in the middle of a Content-Length body: dropped unanswered, connection closed.",
            cl(p1) + f"Content-Length: {len(p2)}\r\n\r\n{p2[:10]}",
            "content-length",
        ),
    ):
        c = Case(f, name, description)
        c.send("a", text=text)
        c.expect("a", PONG_1, framing=framing)
        c.eof("a")
        c.closed("a")

    c = Case(f, "eof.whitespace_only", "A connection that sends only whitespace and closes gets nothing.")
    c.send("a", text="  \r\n\t ")
    c.eof("a")
    c.closed("a")

    c = Case(
        f,
        "eof.subscriptions_removed",
        "EOF ends the connection: once the server has seen it, the connection's subscriptions "
        "no longer count and receive nothing (the server closes the connection anyway).",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.eof("s")
    c.closed("s")
    c.published("p", 1, 1, ALICE, listeners=0)


# == delivery.json =====================================================================


def delivery() -> None:
    f = "delivery"
    new_file(
        f,
        "Fan-out: who receives an event, the listeners count, exact event names, values passed "
        "through untouched, and ordering (events before the publisher's answer; per-publisher order).",
    )
    c = Case(
        f,
        "cross_connection",
        "A publish on one connection reaches a subscriber on another.",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.published("p", 1, "hello", ALICE, listeners=1)
    c.expect("s", event(c.ev(), "hello", ref("s")))

    c = Case(
        f,
        "publisher_excluded_across_connections",
        "The publisher's own subscriptions are skipped by client id, on every connection using that id.",
        conns=("a1", "a2", "b"),
    )
    c.subscribe("a1", ALICE, "foo", "sa")
    c.subscribe("b", BOB, "foo", "sb")
    c.published("a2", 1, 1, ALICE, listeners=1)
    c.expect("b", event(c.ev(), 1, ref("sb")))
    c.nothing("a1")

    c = Case(
        f,
        "events_before_answer.same_connection",
        "On the publisher's own connection, events for its other identities come before its answer.",
    )
    c.subscribe("a", BOB, "foo", "s")
    c.call(
        "a",
        JSONRPC.publish(1, c.ev(), 1, ALICE),
        event(c.ev(), 1, ref("s")),
        ok(1, {"listeners": 1, "client_id": ALICE}),
    )
    c.call(
        "a",
        PUB_SUB.publish("r2", c.ev(), 2, ALICE),
        event(c.ev(), 2, ref("s")),
        PUB_SUB.ok_publish("r2", 1, ALICE),
    )

    c = Case(
        f,
        "per_publisher_order",
        "Events from one publisher reach each subscriber in publish order, interleaved with that "
        "subscriber's own answers in FIFO order.",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.send(
        "p",
        text="".join(
            json.dumps(
                JSONRPC.publish(i, c.ev(), i, ALICE),
                separators=(",", ":"),
            )
            + "\n"
            for i in range(1, 6)
        ),
    )
    c.expect("p", *[ok(i, {"listeners": 1, "client_id": ALICE}) for i in range(1, 6)])
    c.send("s", ping(99))
    c.expect("s", *[event(c.ev(), i, ref("s")) for i in range(1, 6)], ok(99, {}))

    c = Case(
        f,
        "two_publishers_order",
        "Each publisher's events keep their order at a subscriber that listens to both.",
        conns=("p1", "p2", "s"),
    )
    c.subscribe("s", CAROL, "foo", "s")
    c.published("p1", 1, "a1", ALICE, listeners=1)
    c.published("p2", 1, "b1", BOB, listeners=1)
    c.published("p1", 2, "a2", ALICE, listeners=1)
    c.published("p2", 2, "b2", BOB, listeners=1)
    c.expect("s", *[event(c.ev(), v, ref("s")) for v in ("a1", "b1", "a2", "b2")])

    c = Case(
        f,
        "listeners_counts_subscriptions",
        "listeners counts subscriptions, not clients or connections: two by bob plus one by carol is 3.",
        conns=("p", "b", "c"),
    )
    c.subscribe("b", BOB, "foo", "b1")
    c.subscribe("b", BOB, "foo", "b2")
    c.subscribe("c", CAROL, "foo", "c1")
    c.published("p", 1, 1, ALICE, listeners=3)
    c.expect("b", event(c.ev(), 1, ref("b1")), event(c.ev(), 1, ref("b2")))
    c.expect("c", event(c.ev(), 1, ref("c1")))

    c = Case(f, "no_subscribers", "Publishing to an event nobody subscribed to: listeners 0.")
    c.published("a", 1, 1, ALICE, listeners=0)

    c = Case(
        f,
        "exact_event_names",
        "Event names match exactly: case-sensitive, no trimming, no prefixes or wildcards.",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    for i, short in enumerate(("Foo", "foo ", "foo::bar", "*", "fo"), start=1):
        c.published("p", i, i, ALICE, listeners=0, short=short)
    c.nothing("s")

    c = Case(
        f,
        "empty_and_unicode_event_names",
        "The empty string and any Unicode text are legal event names.",
        conns=("p", "s"),
    )
    c.call(
        "s",
        JSONRPC.subscribe(1, "", BOB),
        ok(1, {"subscription_id": cap("empty"), "client_id": BOB}),
    )
    c.subscribe("s", BOB, '日本語 ✓ "q"', "uni", rid=2)
    c.published("p", 1, 1, ALICE, listeners=1, short='日本語 ✓ "q"')
    c.expect("s", event(c.ev('日本語 ✓ "q"'), 1, ref("uni")))
    c.unsubscribe("s", 3, ref("empty"), BOB)

    c = Case(
        f,
        "values_pass_through",
        "Any JSON value is delivered as published, nested key order included.",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "s")
    values: list[Any] = [
        None,
        False,
        0,
        -12.5,
        "",
        [],
        {},
        {"z": 1, "a": {"y": [True, None, "é😀"], "b": 2}},
        'line\nbreak "quoted" \\ tab\t',
    ]
    for i, value in enumerate(values, start=1):
        c.published("p", i, value, ALICE, listeners=1)
    c.expect("s", *[event(c.ev(), v, ref("s")) for v in values])

    c = Case(
        f,
        "after_unsubscribe",
        "No event reaches a cancelled subscription; other subscriptions of the same client still get theirs.",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "s1")
    c.subscribe("s", BOB, "foo", "s2")
    c.unsubscribe("s", 1, ref("s1"), BOB)
    c.published("p", 1, 1, ALICE, listeners=1)
    c.expect("s", event(c.ev(), 1, ref("s2")))

    c = Case(
        f,
        "restricted_clients",
        "A client that may not publish still receives; one that may not subscribe still publishes.",
        conns=("p", "s"),
    )
    c.subscribe("s", NO_PUBLISH, "foo", "s")
    c.published("p", 1, 1, NO_SUBSCRIBE, listeners=1)
    c.expect("s", event(c.ev(), 1, ref("s")))

    c = Case(
        f,
        "fan_out_many",
        "One publish reaches five subscribers on five connections.",
        conns=("p", "s1", "s2", "s3", "s4", "s5"),
    )
    for i in range(1, 6):
        c.subscribe(f"s{i}", BOB if i % 2 else CAROL, "foo", f"sub{i}")
    c.published("p", 1, "all", ALICE, listeners=5)
    for i in range(1, 6):
        c.expect(f"s{i}", event(c.ev(), "all", ref(f"sub{i}")))

    c = Case(
        f,
        "subscription_by_plain_notification",
        "A subscribe sent as a plain notification is carried out though never answered; its events "
        "name a subscription id the client was never told.",
        conns=("p", "s"),
    )
    c.send("s", msg("subscribe", {"event_name": c.ev(), "client_id": BOB}))
    c.nothing("s")
    c.published("p", 1, 1, ALICE, listeners=1)
    c.expect("s", event(c.ev(), 1, {"$type": "uuid"}))


# == fixed_bugs.json ===================================================================


def fixed_bugs() -> None:
    f = "fixed_bugs"
    new_file(
        f,
        "The original's bugs that we fix (reference section 7), each shown on the wire.",
    )
    c = Case(
        f,
        "disconnect_cleanup",
        "Bug 1: a closed subscriber's subscriptions are removed at once; the publisher's count "
        "drops and it is still answered (the original hung and counted dead subscriptions).",
        conns=("p", "s", "late"),
    )
    c.subscribe("s", BOB, "foo", "s")
    c.published("p", 1, 1, ALICE, listeners=1)
    c.expect("s", event(c.ev(), 1, ref("s")))
    c.close("s")
    c.published("p", 2, 2, ALICE, listeners=0)
    c.subscribe("late", BOB, "foo", "s2")
    c.published("p", 3, 3, ALICE, listeners=1)
    c.expect("late", event(c.ev(), 3, ref("s2")))

    c = Case(
        f,
        "disconnect_one_of_many",
        "Bug 1: with one of three subscribers gone (closed with unread events), the others still get "
        "every event.",
        conns=("p", "s1", "s2", "s3"),
    )
    for i in (1, 2, 3):
        c.subscribe(f"s{i}", BOB, "foo", f"sub{i}")
    c.published("p", 1, 1, ALICE, listeners=3)
    c.close("s2")
    c.published("p", 2, 2, ALICE, listeners=2)
    c.expect("s1", event(c.ev(), 1, ref("sub1")), event(c.ev(), 2, ref("sub1")))
    c.expect("s3", event(c.ev(), 1, ref("sub3")), event(c.ev(), 2, ref("sub3")))

    c = Case(
        f,
        "duplicate_subscriptions",
        "Bug 8: two subscriptions by one client to one event each get one copy carrying its own "
        "subscription_id (the original's client fanned k copies to k streams), and count 2.",
        conns=("p", "s"),
    )
    c.subscribe("s", BOB, "foo", "first")
    c.call(
        "s",
        PUB_SUB.subscribe("r2", c.ev(), BOB),
        PUB_SUB.ok_subscribe("r2", {"$capture": "second", "$type": "uuid", "$not_ref": "first"}, BOB),
    )
    c.published("p", 1, "x", ALICE, listeners=2)
    c.expect("s", event(c.ev(), "x", ref("first")), event(c.ev(), "x", ref("second")))
    c.unsubscribe("s", 3, ref("first"), BOB)
    c.published("p", 2, "y", ALICE, listeners=1)
    c.expect("s", event(c.ev(), "y", ref("second")))

    c = Case(
        f,
        "one_adhoc_identity_per_connection",
        "Bugs 3 and 4: requests without an id, even pipelined before any answer, all act as one "
        "ad-hoc identity of the connection, so it can unsubscribe what it subscribed and never "
        "receives its own events.",
        conns=("t",),
        trusted=("t",),
    )
    c.send("t", PUB_SUB.subscribe("r1", c.ev(), None))
    c.send("t", PUB_SUB.publish("r2", c.ev(), 1, None))
    c.send("t", PUB_SUB.publish("r3", c.ev(), 2, None))
    c.expect(
        "t",
        PUB_SUB.ok_subscribe("r1", cap("s"), cap_adhoc("me")),
        PUB_SUB.ok_publish("r2", 0, ref("me")),
        PUB_SUB.ok_publish("r3", 0, ref("me")),
    )
    c.unsubscribe("t", "r4", ref("s"), None, d=PUB_SUB)

    c = Case(
        f,
        "stored_before_answer",
        "Bug 15: a subscription exists as soon as it is answered: a publish pipelined right behind "
        "the subscribe reaches it.",
    )
    c.send(
        "a",
        text=json.dumps(JSONRPC.subscribe(1, c.ev(), BOB), separators=(",", ":"))
        + json.dumps(JSONRPC.publish(2, c.ev(), 1, ALICE), separators=(",", ":")),
    )
    c.expect(
        "a",
        ok(1, {"subscription_id": cap("s"), "client_id": BOB}),
        event(c.ev(), 1, ref("s")),
        ok(2, {"listeners": 1, "client_id": ALICE}),
    )

    c = Case(
        f,
        "invalid_params_answered",
        "Bug 10: a pub_sub request with bad params is answered (the original swallowed the error and "
        "the client hung).",
    )
    c.refused(
        "a",
        PUB_SUB.raw("subscribe", "r1", {"client_id": ALICE}),
        INVALID_PARAMS,
        missing_param("subscribe", "event_name"),
    )

    c = Case(f, "unknown_method_answered", "Bug 10: a pub_sub request for an unknown method is answered.")
    c.refused(
        "a",
        msg("list_subscriptions", {"request_id": "r1", "client_id": ALICE}),
        METHOD_NOT_FOUND,
        unknown_method("list_subscriptions"),
    )

    c = Case(
        f,
        "client_id_must_be_string",
        "Bug 2 (hardening): a non-string client_id is an error, not a silent 'no id' that a trusted "
        "connection would turn into full rights.",
        conns=("t",),
        trusted=("t",),
    )
    c.refused(
        "t", PUB_SUB.publish("r1", c.ev(), 1, 12), INVALID_PARAMS, not_a_string("publish", "client_id", 12)
    )

    c = Case(
        f,
        "fragile_framing",
        "Bug 11: two documents in one read and one document over several reads both work.",
    )
    text = json.dumps(ping(1), separators=(",", ":")) + json.dumps(ping(2), separators=(",", ":"))
    c.send("a", text=text + text[: len(text) // 2 + 3], split=[len(text) + 5])
    c.expect("a", PONG_1, ok(2, {}), PONG_1)
    c.send("a", text=text[len(text) // 2 + 3 :])
    c.expect("a", ok(2, {}))

    c = Case(
        f,
        "slow_consumer",
        "Bug 9 (bounded buffers): a subscriber that does not read is sent 'closing' with "
        "SLOW_CONSUMER once its queue passes the limit, its subscriptions go, and the publisher "
        "is answered throughout.",
        conns=("p", "s"),
        options={"max_outbound": 300},
    )
    c.subscribe("s", BOB, "foo", "s")
    value = "v" * 120
    frame = json.dumps(
        event(c.ev(), value, "00000000-0000-4000-8000-000000000000"),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    size = len(frame.encode()) + 1
    assert size <= 300 < 2 * size, size
    c.published("p", 1, value, ALICE, listeners=1)
    c.published("p", 2, value, ALICE, listeners=1)
    c.published("p", 3, value, ALICE, listeners=0)
    c.expect(
        "s",
        event(c.ev(), value, ref("s")),
        event(c.ev(), value, ref("s")),
        closing(SLOW_CONSUMER, "Slow consumer: more than 300 bytes of events were waiting to be read."),
    )
    c.closed("s")

    c = Case(
        f,
        "slow_consumer_two_subscriptions",
        "The closing notification is the last frame, and listeners counts only the events "
        "actually queued: a slow consumer with two subscriptions to the event gets one copy "
        "(which crosses its limit), then 'closing'; the publisher is told 1, not 2.",
        conns=("p", "s"),
        options={"max_outbound": 100},
    )
    c.subscribe("s", BOB, "foo", "s1")
    c.subscribe("s", BOB, "foo", "s2")
    value = "w" * 100
    c.published("p", 1, value, ALICE, listeners=1)
    c.expect(
        "s",
        event(c.ev(), value, ref("s1")),
        closing(SLOW_CONSUMER, "Slow consumer: more than 100 bytes of events were waiting to be read."),
    )
    c.closed("s")
    c.published("p", 2, 2, ALICE, listeners=0)


# == patterns.json ===============================================================

INVALID_PATTERNS = [
    ("", "it is empty"),
    ("{p}*", '"*" and ">" must be whole segments'),
    ("{p}.a>", '"*" and ">" must be whole segments'),
    ("{p}:::*", '"*" and ">" must be whole segments'),
    ("{p}.>.a", '">" must be the last segment'),
]
BOTH = 'Request for method "subscribe" must give either "event_name" or "pattern", not both.'


def not_a_boolean(name: str, value: Any) -> str:
    return f'Parameter "{name}" for method "publish" must be a boolean, but was {show(value)}.'


def patterns() -> None:
    f = "patterns"
    new_file(
        f,
        "Pattern subscriptions (segments split at '.' and '::'; '*' one segment, '>' the rest), "
        "per-name allow/deny rules (client spec::ruled), and the publish options exclude_self "
        "and report (README 4.4, 4.5, 5.1).",
    )
    for d in DIALECTS:
        r = d.rid

        c = Case(
            f,
            f"star.{d.kind}",
            "'*' matches one segment, with either separator; "
            "the event carries the real name and the pattern subscription's id.",
            conns=("p", "s"),
        )
        c.subscribe_pattern("s", BOB, f"{c.name}.*", "s", d, r(1))
        for n, (short, listeners) in enumerate([("a", 1), ("b", 1), ("a.b", 0), ("a::b", 0)], start=2):
            c.published("p", r(n), n, ALICE, listeners=listeners, short=short, d=d)
            if listeners:
                c.expect("s", event(c.ev(short), n, ref("s")))
            else:
                c.nothing("s")

        c = Case(
            f,
            f"rest.{d.kind}",
            "'>' as the last segment matches one or more further segments.",
            conns=("p", "s"),
        )
        c.subscribe_pattern("s", BOB, c.ev("x.>"), "s", d, r(1))
        c.published("p", r(2), 0, ALICE, listeners=0, short="x", d=d)
        c.nothing("s")
        c.published("p", r(3), 1, ALICE, listeners=1, short="x::y.z", d=d)
        c.expect("s", event(c.ev("x::y.z"), 1, ref("s")))

        c = Case(
            f,
            f"one_event_per_subscription.{d.kind}",
            "A client whose exact and pattern "
            "subscriptions both match gets one event per subscription: exact ones first, then "
            "patterns in the order they were made.",
            conns=("p", "s"),
        )
        c.subscribe_pattern("s", BOB, f"{c.name}.>", "wide", d, r(1))
        c.subscribe("s", BOB, "a", "exact", d, rid=r(2))
        c.subscribe_pattern("s", BOB, f"{c.name}.*", "star", d, r(3))
        c.published("p", r(4), 4, ALICE, listeners=3, short="a", d=d)
        c.expect(
            "s",
            event(c.ev("a"), 4, ref("exact")),
            event(c.ev("a"), 4, ref("wide")),
            event(c.ev("a"), 4, ref("star")),
        )
        c.unsubscribe("s", r(5), ref("wide"), BOB, d=d)
        c.published("p", r(6), 6, ALICE, listeners=2, short="a", d=d)
        c.expect("s", event(c.ev("a"), 6, ref("exact")), event(c.ev("a"), 6, ref("star")))

        c = Case(
            f,
            f"invalid.{d.kind}",
            "Invalid patterns, both event_name and pattern, a pattern "
            "that is not a string: INVALID_PARAMS; null counts as absent.",
        )
        for n, (template, reason) in enumerate(INVALID_PATTERNS, start=1):
            text = template.format(p=c.name)
            c.refused(
                "a",
                d.subscribe(r(n), OMIT, ALICE, pattern=text),
                INVALID_PARAMS,
                f"Invalid pattern {show(text)}: {reason}.",
            )
        c.refused("a", d.subscribe(r(10), c.ev(), ALICE, pattern=f"{c.name}.*"), INVALID_PARAMS, BOTH)
        c.refused(
            "a",
            d.subscribe(r(11), OMIT, ALICE, pattern=5),
            INVALID_PARAMS,
            not_a_string("subscribe", "pattern", 5),
        )
        c.refused(
            "a",
            d.subscribe(r(12), OMIT, ALICE, pattern=None),
            INVALID_PARAMS,
            missing_param("subscribe", "event_name"),
        )
        c.call("a", d.subscribe(r(13), c.ev(), ALICE, pattern=None), d.ok_subscribe(r(13), cap("s"), ALICE))

        c = Case(
            f,
            f"publisher_excluded.{d.kind}",
            "The publisher's own pattern subscriptions are "
            "skipped like its exact ones; exclude_self false delivers to them too.",
        )
        c.subscribe_pattern("a", ALICE, f"{c.name}.*", "s", d, r(1))
        c.published("a", r(2), 1, ALICE, listeners=0, d=d)
        c.call(
            "a",
            d.publish(r(3), c.ev(), 2, ALICE, exclude_self=False),
            event(c.ev(), 2, ref("s")),
            d.ok_publish(r(3), 1, ALICE),
        )
        c.call("a", d.publish(r(4), c.ev(), 3, ALICE, exclude_self=True), d.ok_publish(r(4), 0, ALICE))

        c = Case(
            f,
            f"report.{d.kind}",
            "report true adds delivered and dropped to the answer; "
            "false or null leaves the original's shape.",
            conns=("p", "s"),
        )
        c.subscribe("s", BOB, "foo", "s", d, rid=r(1))
        c.call("p", d.publish(r(2), c.ev(), 1, ALICE, report=True), d.ok_report(r(2), 1, ALICE, 1, 0))
        c.expect("s", event(c.ev(), 1, ref("s")))
        c.call(
            "p",
            d.publish(r(3), c.ev(), 2, ALICE, report=False, exclude_self=None),
            d.ok_publish(r(3), 1, ALICE),
        )
        c.expect("s", event(c.ev(), 2, ref("s")))
        c.call(
            "p",
            d.publish(r(4), c.ev() + "::nobody", 3, ALICE, report=True),
            d.ok_report(r(4), 0, ALICE, 0, 0),
        )

        c = Case(f, f"option_types.{d.kind}", "exclude_self and report must be booleans (or null).")
        c.refused(
            "a",
            d.publish(r(1), c.ev(), 1, ALICE, exclude_self="no"),
            INVALID_PARAMS,
            not_a_boolean("exclude_self", "no"),
        )
        c.refused(
            "a", d.publish(r(2), c.ev(), 1, ALICE, report=1), INVALID_PARAMS, not_a_boolean("report", 1)
        )

        c = Case(
            f, f"rules_publish.{d.kind}", "Publish allow/deny rules: deny wins; the text names the event."
        )
        c.published("a", r(1), 1, RULED, listeners=0, short="public.news", d=d)
        for n, name in enumerate([c.ev("public.secret"), c.ev("public::secret"), c.ev("private")], start=2):
            c.refused(
                "a",
                d.publish(r(n), name, 1, RULED),
                PUBLISH_FORBIDDEN,
                f"You are not allowed to publish events named {show(name)}.",
            )

        c = Case(
            f,
            f"rules_subscribe.{d.kind}",
            "Subscribe rules: an exact name must be permitted; a "
            "pattern is refused when it cannot match any permitted name.",
        )
        c.refused(
            "a",
            d.subscribe(r(1), c.ev("public.secret"), RULED),
            SUBSCRIBE_FORBIDDEN,
            f"You are not allowed to subscribe to events named {show(c.ev('public.secret'))}.",
        )
        for n, pattern in enumerate(
            [c.ev("public.secret"), c.ev("public.secret.>"), c.ev("private.>"), c.ev("*")], start=2
        ):
            c.refused(
                "a",
                d.subscribe(r(n), OMIT, RULED, pattern=pattern),
                SUBSCRIBE_FORBIDDEN,
                f"You are not allowed to subscribe to any event matching {show(pattern)}.",
            )
        c.subscribe("a", RULED, "public.news", "s", d, rid=r(9))
        c.subscribe_pattern("a", RULED, c.ev("public.*"), "p", d, r(10))

        c = Case(
            f,
            f"rules_filter.{d.kind}",
            "A pattern that matches permitted and denied names is "
            "accepted, and never receives a denied name (nor counts it in listeners).",
            conns=("p", "s"),
        )
        c.subscribe_pattern("s", RULED, c.ev(">"), "s", d, r(1))
        for n, short in enumerate(["public.secret", "private", "public.secret.x"], start=2):
            c.published("p", r(n), n, ALICE, listeners=0, short=short, d=d)
            c.nothing("s")
        c.published("p", r(9), 9, ALICE, listeners=1, short="public.news", d=d)
        c.expect("s", event(c.ev("public.news"), 9, ref("s")))


# == stats.json ======================================================================


def stats() -> None:
    f = "stats"
    new_file(
        f,
        "The stats method: live counters for clients registered with can_inspect (and trusted "
        "connections' ad-hoc identities); everyone else is refused, and the connection carries on. "
        "Counter values depend on everything the server did before, so answers match members by type.",
    )
    for d in DIALECTS:
        k = d.kind
        c = Case(f, f"{k}.operator", "A client with can_inspect gets the counters.")
        c.call("a", d.stats(d.rid(1), OPERATOR), d.ok_stats(d.rid(1)))

        c = Case(
            f,
            f"{k}.refused_without_can_inspect",
            "A registered client without can_inspect is refused (-32011), even one with every other "
            "right; the connection carries on.",
        )
        c.refused("a", d.stats(d.rid(1), ALICE), INSPECT_FORBIDDEN, NOT_ALLOWED_INSPECT)
        c.call("a", d.ping(d.rid(2)), d.ok_empty(d.rid(2)))

        c = Case(f, f"{k}.unknown_client", "An unregistered id is refused as for publish and subscribe.")
        c.refused("a", d.stats(d.rid(1), STRANGER), UNKNOWN_CLIENT, unrecognized(STRANGER))

        c = Case(f, f"{k}.missing_id_untrusted", "No id on an untrusted connection: '<missing>'.")
        c.refused("a", d.stats(d.rid(1)), UNKNOWN_CLIENT, MISSING_CLIENT)

    c = Case(
        f,
        "jsonrpc.trusted_adhoc",
        "A trusted connection's ad-hoc identity has full rights, reading the counters included.",
        trusted=("a",),
    )
    c.call("a", JSONRPC.stats(1), JSONRPC.ok_stats(1))

    c = Case(f, "jsonrpc.positional", "Params by position: [client_id, request_id].")
    c.call("a", msg("stats", [OPERATOR], 1), JSONRPC.ok_stats(1))
    c.refused("a", msg("stats", [NOTHING, None], 2), INSPECT_FORBIDDEN, NOT_ALLOWED_INSPECT)
    c.refused("a", msg("stats", [OPERATOR, None, 3], 3), INVALID_PARAMS, wrong_arity("stats"))

    c = Case(f, "jsonrpc.client_id_not_a_string", "client_id must be a string or null.")
    c.refused("a", JSONRPC.stats(1, 5), INVALID_PARAMS, not_a_string("stats", "client_id", 5))

    c = Case(f, "notification.unanswered", "stats as a plain notification is never answered.")
    c.send("a", msg("stats", {"client_id": OPERATOR}))
    c.send("a", msg("stats", {"client_id": ALICE}))
    c.call("a", ping(1), PONG_1)


# == output ==============================================================================


def dump_case(case: dict[str, Any]) -> str:
    """One case, one step per line: short to read, easy to diff."""
    head = {k: v for k, v in case.items() if k != "steps"}
    lines = ["    {"]
    for key, value in head.items():
        lines.append(f"      {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append('      "steps": [')
    steps = [f"        {json.dumps(step, ensure_ascii=False)}" for step in case["steps"]]
    lines.append(",\n".join(steps))
    lines.append("      ]")
    lines.append("    }")
    return "\n".join(lines)


def render(file: dict[str, Any]) -> str:
    parts = [
        "{",
        '  "$schema": "../vector.schema.json",',
        f'  "description": {json.dumps(file["description"], ensure_ascii=False)},',
        '  "cases": [',
        ",\n".join(dump_case(case) for case in file["cases"]),
        "  ]",
        "}",
    ]
    return "\n".join(parts) + "\n"


def render_clients() -> str:
    rows = ",\n".join(f"    {json.dumps(c)}" for c in CLIENTS)
    return (
        "{\n"
        '  "$schema": "../vector.schema.json",\n'
        '  "description": "The registered clients every vector file assumes: register all of them '
        'before the server starts. Ids ending in ::stranger or ::invalid are deliberately absent.",\n'
        f'  "clients": [\n{rows}\n  ]\n'
        "}\n"
    )


def build() -> dict[str, str]:
    for make in (
        original_suite,
        identity,
        errors_params,
        envelope,
        dialects,
        batches,
        framing,
        delivery,
        fixed_bugs,
        stats,
        patterns,
    ):
        make()
    out = {"clients.json": render_clients()}
    names: set[str] = set()
    for file, content in FILES.items():
        for case in content["cases"]:
            assert case["name"] not in names, case["name"]
            names.add(case["name"])
        out[f"{file}.json"] = render(content)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="report files that differ instead of writing them"
    )
    args = parser.parse_args()
    stale = []
    for name, text in build().items():
        path = VECTORS / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(stale)} file(s)" if stale else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
