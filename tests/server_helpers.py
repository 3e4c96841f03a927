"""Helpers shared by the ServerConnection test modules: frames in, frames out, no I/O."""

from __future__ import annotations

import re
from typing import Any

import orjson

from pubsub_rpc import Broker, ClientInfo, Framing, ServerConnection

NL, CL = Framing.NEWLINE, Framing.CONTENT_LENGTH
_CL_FRAME = re.compile(rb"Content-Length: (\d+)\r\n\r\n")


#: The clients most core tests register: two who may do anything, one who may not publish,
#: one who may not subscribe.
CLIENTS = (
    ClientInfo("alice"),
    ClientInfo("bob"),
    ClientInfo("nopub", can_publish=False),
    ClientInfo("nosub", can_subscribe=False),
)


def started_broker(*clients: ClientInfo, **options: Any) -> Broker:
    """A started ``Broker(**options)`` with ``clients`` registered, in that order."""
    broker = Broker(**options)
    for info in clients:
        broker.register_client(info)
    broker.start()
    return broker


def make_broker(*extra: ClientInfo) -> Broker:
    """A started broker with ``CLIENTS`` and then ``extra`` registered."""
    return started_broker(*CLIENTS, *extra)


def frame(message: Any, framing: Framing = NL) -> bytes:
    body = message if isinstance(message, bytes) else orjson.dumps(message)
    return body + b"\n" if framing is NL else b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_frames(data: bytes, framing: Framing = NL) -> list[Any]:
    """Split server output strictly: one compact text per line, or exact Content-Length bodies."""
    if framing is NL:
        assert data == b"" or data.endswith(b"\n")
        return [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    frames, pos = [], 0
    while pos < len(data):
        match = _CL_FRAME.match(data, pos)
        assert match, data[pos:]
        end = match.end() + int(match[1])
        assert end <= len(data)
        frames.append(orjson.loads(data[match.end() : end]))
        pos = end
    return frames


def rpc(method: str, id: Any = 1, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id}


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def send(conn: ServerConnection, *messages: Any, framing: Framing = NL) -> list[Any]:
    conn.receive_data(b"".join(frame(m, framing) for m in messages))
    return read_frames(conn.data_to_send(), framing)


def error(code: int, message: str, id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}


def failure(request_id: str, code: int, message: str) -> dict[str, Any]:
    params = {"status": False, "request_id": request_id, "error_message": message, "error_code": code}
    return note(request_id, **params)


def answer(request_id: str, result: dict[str, Any], **flat: Any) -> dict[str, Any]:
    return note(request_id, status=True, request_id=request_id, result=result, **flat)


def ok(result: dict[str, Any], id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": result, "id": id}


def subscribe(conn: ServerConnection, client_id: str = "alice", framing: Framing = NL) -> str:
    [response] = send(conn, rpc("subscribe", client_id=client_id, event_name="e"), framing=framing)
    return response["result"]["subscription_id"]


def publish(conn: ServerConnection, value: Any, client_id: str = "bob") -> int:
    """Publish on "e"; return the listeners count."""
    [response] = send(conn, rpc("publish", client_id=client_id, event_name="e", value=value))
    return response["result"]["listeners"]


def values(conn: ServerConnection, framing: Framing = NL) -> list[Any]:
    """The values of the events queued on a connection."""
    return [e["params"]["value"] for e in read_frames(conn.data_to_send(), framing)]
