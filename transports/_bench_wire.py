"""The bytes the bench's load generators send and check, for both systems under test.

``ours`` is the pubsub-rpc server (JSON-RPC 2.0); ``floor`` is the bare
forwarder in ``_bench_floor``.  Every frame is built here, once, before a
run's clock starts; the workers only write these bytes and count newlines.
The payload is BENCH.md's: a compact JSON object of exactly 100 bytes.
"""

from __future__ import annotations

import socket
from typing import Any, Final, Literal

import orjson

from ._urls import parse_url

System = Literal["ours", "floor"]
SYSTEMS: Final[tuple[System, ...]] = ("ours", "floor")

#: The client ids the bench registers on the server it starts.
PUBLISHER_ID: Final = "bench-publisher"
SUBSCRIBER_ID: Final = "bench-subscriber"
PAYLOAD_SIZE: Final = 100

#: The id of the ``ping`` request a publisher syncs on at the end.
_SYNC_ID: Final = "bench-sync"


def payload(seq: int, ts: int) -> bytes:
    """``{"seq":..,"ts":..,"src":"bench","pad":"xx.."}``, padded to exactly 100 bytes."""
    head = b'{"seq":%d,"ts":%d,"src":"bench","pad":"' % (seq, ts)
    return head + b"x" * (PAYLOAD_SIZE - len(head) - 2) + b'"}'


def publish_frame(system: System, topic: str, value: bytes, *, client_id: str, ack_id: int | None) -> bytes:
    """One publish line: a notification (fire and forget) or, with ``ack_id``, acknowledged."""
    if system == "floor":
        ack = b',"ack":true' if ack_id is not None else b""
        return b'{"op":"pub","topic":"%s","data":%s%s}\n' % (topic.encode(), value, ack)
    params = b'{"client_id":"%s","event_name":"%s","value":%s}' % (client_id.encode(), topic.encode(), value)
    if ack_id is None:
        return b'{"jsonrpc":"2.0","method":"publish","params":%s}\n' % params
    return b'{"jsonrpc":"2.0","method":"publish","params":%s,"id":%d}\n' % (params, ack_id)


def subscribe_frames(system: System, topics: list[str], client_id: str) -> tuple[bytes, int]:
    """The subscribe line(s) for one connection, and how many confirmation lines to await."""
    if system == "floor":
        return orjson.dumps({"op": "sub", "topics": topics}) + b"\n", 1
    lines = [
        orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "subscribe",
                "params": {"client_id": client_id, "event_name": topic},
                "id": number,
            }
        )
        + b"\n"
        for number, topic in enumerate(topics)
    ]
    return b"".join(lines), len(lines)


def check_confirmation(system: System, line: bytes) -> None:
    """Raise ``RuntimeError`` unless ``line`` confirms a subscription."""
    message = orjson.loads(line)
    ok = message.get("op") == "subok" if system == "floor" else "result" in message
    if not ok:
        raise RuntimeError(f"subscribe refused: {line[:200]!r}")


def ping_frame(system: System) -> bytes:
    """The request a publisher syncs on after its last publish."""
    if system == "floor":
        return b'{"op":"ping"}\n'
    return b'{"jsonrpc":"2.0","method":"ping","params":{},"id":"%s"}\n' % _SYNC_ID.encode()


def is_ping_answer(system: System, line: bytes) -> bool:
    """Whether ``line`` answers ``ping_frame``."""
    if system == "floor":
        return line == b'{"op":"pong"}'
    message = orjson.loads(line)
    return bool(message.get("id") == _SYNC_ID and "result" in message)


def check_ack(system: System, line: bytes, ack_id: int, receivers: int) -> None:
    """Raise ``RuntimeError`` unless ``line`` acknowledges publish ``ack_id`` to ``receivers``."""
    message = orjson.loads(line)
    if system == "floor":
        ok = message.get("op") == "ack" and message.get("n") == receivers
    else:
        result = message.get("result")
        ok = message.get("id") == ack_id and type(result) is dict and result.get("listeners") == receivers
    if not ok:
        raise RuntimeError(f"publish {ack_id} not acknowledged as expected: {line[:200]!r}")


def event_seq(system: System, line: bytes, topic: str) -> int:
    """The ``seq`` of a delivered event line; raises ``RuntimeError`` if it is not an event of ``topic``."""
    message: Any = orjson.loads(line)
    try:
        if system == "floor":
            name, value = message["topic"], message["data"]
        else:
            if message["method"] != "event":
                raise KeyError("method")
            params = message["params"]
            name, value = params["event_name"], params["value"]
        seq = value["seq"]
    except (KeyError, TypeError):
        raise RuntimeError(f"not an event: {line[:200]!r}") from None
    if name != topic or type(seq) is not int:
        raise RuntimeError(f"unexpected event: {line[:200]!r}")
    return seq


def connect(url: str) -> socket.socket:
    """A blocking socket connected to ``tcp://HOST:PORT`` or ``unix:///PATH`` (TCP_NODELAY set)."""
    where = parse_url(url)
    if where.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(where.path)
        except OSError:
            sock.close()
            raise
        return sock
    if where.scheme != "tcp":
        raise ValueError(f"the bench speaks tcp:// and unix:// only, not {where.scheme}://")
    sock = socket.create_connection((where.host, where.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    """The next line from a blocking socket (without its newline); ``buffer`` keeps the rest."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            return line
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed the connection")
        buffer += data
