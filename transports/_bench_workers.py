"""The bench's load generators: one role per process, driven over stdin/stdout.

    python -m transports._bench_workers ROLE CONFIG_JSON

Each worker prints JSON lines on stdout: ``{"ready": ...}`` once connected
(and subscribed), then its result; an error is ``{"error": "..."}``.  Roles
that publish wait for a ``go`` line on stdin first, so the clock starts only
when every subscriber is ready.

They are load generators, not clients of our library (BENCH.md 2.6): plain
blocking or epoll sockets, pre-built frames written in large batches,
subscribers reading 64 KiB at a time and counting newlines.  A subscriber
parses one line in every ``_SAMPLE_EVERY`` reads (topic, ``seq`` rising) and
the very last line (``seq`` = N-1), and checks that it got exactly N frames
of N x the first frame's size: every frame of one subscription has the same
size, because the payload is always 100 bytes.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import statistics
import sys
import time
from typing import Any, Final

import orjson

from ._bench_wire import (
    System,
    check_ack,
    check_confirmation,
    connect,
    event_seq,
    is_ping_answer,
    payload,
    ping_frame,
    publish_frame,
    read_line,
    subscribe_frames,
)

_READ_SIZE: Final = 64 * 1024
_WRITE_CHUNK: Final = 1024 * 1024
_SAMPLE_EVERY: Final = 16
_TAIL: Final = 1024


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


def _wait_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit(0)  # the bench gave up on this run


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Sub:
    """One subscriber connection's counters."""

    __slots__ = (
        "count",
        "done_ns",
        "first",
        "frame_len",
        "last_seq",
        "nbytes",
        "reads",
        "sock",
        "tail",
        "topic",
    )

    def __init__(self, sock: socket.socket, topic: str, leftover: bytes) -> None:
        self.sock = sock
        self.topic = topic
        self.count = leftover.count(b"\n")
        self.nbytes = len(leftover)
        self.first = leftover  # bytes until the first newline, to learn the frame size
        self.frame_len = leftover.find(b"\n") + 1
        self.tail = leftover[-_TAIL:]
        self.reads = 0
        self.last_seq = -1
        self.done_ns = 0


def _subscribe_all(cfg: dict[str, Any]) -> list[_Sub]:
    system: System = cfg["system"]
    subs: list[_Sub] = []
    first, count, batch = cfg["first"], cfg["count"], cfg["batch"]
    for start in range(first, first + count, batch):
        opened: list[tuple[socket.socket, int]] = []
        for index in range(start, min(start + batch, first + count)):
            sock = connect(cfg["url"])
            topics = [template.format(i=index) for template in cfg["topics"]]
            frames, confirmations = subscribe_frames(system, topics, cfg["client_id"])
            sock.sendall(frames)
            opened.append((sock, confirmations))
        for sock, confirmations in opened:
            buffer = bytearray()
            for _ in range(confirmations):
                check_confirmation(system, read_line(sock, buffer))
            subs.append(_Sub(sock, cfg["delivered_topic"], bytes(buffer)))
    return subs


def _receive(subs: list[_Sub], system: System, expect: int, timeout: float) -> list[str]:
    """Read every connection until it has ``expect`` frames; returns the problems found."""
    problems: list[str] = []
    selector = selectors.DefaultSelector()
    remaining = 0
    for sub in subs:
        if sub.count >= expect:
            sub.done_ns = time.monotonic_ns()
            continue
        sub.sock.setblocking(False)
        selector.register(sub.sock, selectors.EVENT_READ, sub)
        remaining += 1
    while remaining:
        ready = selector.select(timeout)
        if not ready:
            problems.append(f"{remaining} connection(s) got nothing for {timeout:g} s")
            break
        for key, _ in ready:
            sub = key.data
            try:
                data = sub.sock.recv(_READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                data = b""
                problems.append(f"receive failed: {exc}")
            if not data:
                problems.append(f"the server closed a connection after {sub.count} of {expect} frames")
                selector.unregister(sub.sock)
                remaining -= 1
                continue
            # Hot loop: count frames, keep a short tail, parse only a sample.
            sub.count += data.count(b"\n")
            sub.nbytes += len(data)
            sub.tail = data[-_TAIL:] if len(data) >= _TAIL else (sub.tail + data)[-_TAIL:]
            sub.reads += 1
            if not sub.frame_len:
                sub.first += data
                sub.frame_len = sub.first.find(b"\n") + 1
            if sub.reads % _SAMPLE_EVERY == 0:
                _sample(sub, system, data, expect, problems)
            if sub.count >= expect:
                sub.done_ns = time.monotonic_ns()
                selector.unregister(sub.sock)
                remaining -= 1
    selector.close()
    for sub in subs:
        _final_check(sub, system, expect, problems)
    return problems


def _sample(sub: _Sub, system: System, data: bytes, expect: int, problems: list[str]) -> None:
    start = data.find(b"\n") + 1
    end = data.find(b"\n", start)
    if start == 0 or end < 0:
        return
    try:
        seq = event_seq(system, data[start:end], sub.topic)
    except (RuntimeError, orjson.JSONDecodeError) as exc:
        problems.append(str(exc))
        return
    if not sub.last_seq < seq < expect:
        problems.append(f"seq {seq} after {sub.last_seq} (expected rising, below {expect})")
    sub.last_seq = seq


def _final_check(sub: _Sub, system: System, expect: int, problems: list[str]) -> None:
    if sub.count != expect:
        if sub.count > expect:
            problems.append(f"a connection got {sub.count} frames, expected {expect}")
        return
    if sub.nbytes != expect * sub.frame_len:
        problems.append(f"a connection got {sub.nbytes} bytes, expected {expect} x {sub.frame_len}")
        return
    tail = sub.tail
    start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    try:
        seq = event_seq(system, tail[start:-1], sub.topic)
    except (RuntimeError, orjson.JSONDecodeError) as exc:
        problems.append(f"last frame: {exc}")
        return
    if seq != expect - 1:
        problems.append(f"the last frame has seq {seq}, expected {expect - 1}")


def role_subscribe(cfg: dict[str, Any]) -> None:
    """Open ``count`` connections, subscribe each, then count ``expect`` events on each."""
    started = time.monotonic()
    subs = _subscribe_all(cfg)
    _emit({"ready": True, "setup_s": time.monotonic() - started})
    problems = _receive(subs, cfg["system"], cfg["expect"], cfg["timeout"])
    t_last = max((sub.done_ns for sub in subs), default=0)
    received = sum(min(sub.count, cfg["expect"]) for sub in subs)
    _emit({"t_last": t_last, "received": received, "problems": problems[:5], "cpu_s": _cpu_seconds()})
    for sub in subs:
        sub.sock.close()


def _write_all(sock: socket.socket, blob: bytes, system: System, timeout: float) -> list[bytes]:
    """Write ``blob`` in large chunks while collecting whatever the server says meanwhile."""
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    view = memoryview(blob)
    offset, size = 0, len(blob)
    replies = bytearray()
    while offset < size:
        events = selector.select(timeout)
        if not events:
            raise RuntimeError(f"the server accepted nothing for {timeout:g} s")
        for _, mask in events:
            if mask & selectors.EVENT_READ:
                data = sock.recv(_READ_SIZE)
                if not data:
                    raise RuntimeError("the server closed the publisher's connection")
                replies += data[: 64 * 1024 - len(replies)] if len(replies) < 64 * 1024 else b""
            if mask & selectors.EVENT_WRITE:
                with contextlib.suppress(BlockingIOError):
                    offset += sock.send(view[offset : offset + _WRITE_CHUNK])
    selector.close()
    sock.setblocking(True)
    sock.settimeout(timeout)
    return bytes(replies).split(b"\n")[:-1] if replies else []


def role_publish(cfg: dict[str, Any]) -> None:
    """Fire-and-forget publishes of ``n`` pre-built frames, then sync on a ping."""
    system: System = cfg["system"]
    sock = connect(cfg["url"])
    topic, client_id = cfg["topic"], cfg["client_id"]
    blob = b"".join(
        publish_frame(system, topic, payload(seq, time.monotonic_ns()), client_id=client_id, ack_id=None)
        for seq in range(cfg["n"])
    )
    _emit({"ready": True})
    _wait_go()
    t0 = time.monotonic_ns()
    unexpected = _write_all(sock, blob, system, cfg["timeout"])
    sock.sendall(ping_frame(system))
    buffer = bytearray()
    while not is_ping_answer(system, line := read_line(sock, buffer)):
        unexpected.append(line)
    t_end = time.monotonic_ns()
    problems = [f"unexpected answer to a publish: {line[:200]!r}" for line in unexpected[:3]]
    _emit({"t0": t0, "t_end": t_end, "problems": problems, "cpu_s": _cpu_seconds()})
    sock.close()


def _latency_summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pct(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000

    return {
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": ordered[-1] / 1000,
        "mean": statistics.fmean(ordered) / 1000,
    }


def role_rtt(cfg: dict[str, Any]) -> None:
    """W2: publish one event, wait until the subscriber connection has it, repeat."""
    system: System = cfg["system"]
    topic, client_id = cfg["topic"], cfg["client_id"]
    sub = connect(cfg["url"])
    frames, confirmations = subscribe_frames(system, [topic], cfg["subscriber_id"])
    sub.sendall(frames)
    sub_buffer = bytearray()
    for _ in range(confirmations):
        check_confirmation(system, read_line(sub, sub_buffer))
    # The cluster bench publishes on another server than the subscriber's.
    pub = connect(cfg.get("publish_url") or cfg["url"])
    sub.settimeout(cfg["timeout"])
    _emit({"ready": True})
    _wait_go()
    samples: list[int] = []
    warmup = cfg["warmup"]
    for seq in range(cfg["n"] + warmup):
        frame = publish_frame(
            system, topic, payload(seq, time.monotonic_ns()), client_id=client_id, ack_id=None
        )
        t1 = time.monotonic_ns()
        pub.sendall(frame)
        while event_seq(system, read_line(sub, sub_buffer), topic) != seq:
            pass
        t2 = time.monotonic_ns()
        if seq >= warmup:
            samples.append(t2 - t1)
    _emit({"latency_us": _latency_summary(samples), "problems": [], "cpu_s": _cpu_seconds()})
    sub.close()
    pub.close()


def role_ack(cfg: dict[str, Any]) -> None:
    """W4: ``n`` sequential publishes, each waiting for the server's answer."""
    system: System = cfg["system"]
    topic, client_id, receivers = cfg["topic"], cfg["client_id"], cfg["receivers"]
    sock = connect(cfg["url"])
    sock.settimeout(cfg["timeout"])
    frames = [
        publish_frame(system, topic, payload(seq, time.monotonic_ns()), client_id=client_id, ack_id=seq)
        for seq in range(cfg["n"])
    ]
    _emit({"ready": True})
    _wait_go()
    buffer = bytearray()
    samples: list[int] = []
    t0 = time.monotonic_ns()
    for seq, frame in enumerate(frames):
        t1 = time.monotonic_ns()
        sock.sendall(frame)
        line = read_line(sock, buffer)
        samples.append(time.monotonic_ns() - t1)
        check_ack(system, line, seq, receivers)
    t_end = time.monotonic_ns()
    _emit(
        {
            "t0": t0,
            "t_end": t_end,
            "latency_us": _latency_summary(samples),
            "problems": [],
            "cpu_s": _cpu_seconds(),
        }
    )
    sock.close()


_ROLES: Final = {"subscribe": role_subscribe, "publish": role_publish, "rtt": role_rtt, "ack": role_ack}


def main() -> None:
    """Entry point: ``python -m transports._bench_workers ROLE CONFIG_JSON``."""
    role, config = sys.argv[1], orjson.loads(sys.argv[2])
    try:
        _ROLES[role](config)
    except (OSError, RuntimeError, orjson.JSONDecodeError) as exc:
        _emit({"error": f"{role}: {exc}"})
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
