"""Processes of one bench run: the server under test and the load-generator workers.

Every run gets a fresh server process (ours through ``python -m transports
serve``, exactly what a user runs; or the floor), pinned to its own CPU when
the machine has two or more, with every worker on the other CPUs.  The
server's CPU time comes from ``/proc/PID/stat`` (utime + stime) and its
memory from ``/proc/PID/status`` (``VmRSS``, ``VmHWM``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Final

import orjson

from ._bench_wire import PUBLISHER_ID, SUBSCRIBER_ID, System

_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
_CLIENTS_TOML: Final = f"""
[[client]]
id = "{PUBLISHER_ID}"
[[client]]
id = "{SUBSCRIBER_ID}"
"""


class BenchError(Exception):
    """A run could not be completed (a process failed, a deadline passed)."""


def cpu_plan(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): the first allowed CPU for the server, the rest for clients."""
    allowed = sorted(os.sched_getaffinity(0))
    if not pin or len(allowed) < 2:
        return None, None
    return {allowed[0]}, set(allowed[1:])


def _pin(pid: int, cpus: set[int] | None) -> None:
    if cpus is not None:
        with contextlib.suppress(OSError):  # the process may already be gone
            os.sched_setaffinity(pid, cpus)


class _LineReader:
    """Whole lines from a pipe, with a deadline (no partial-line surprises)."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.fd = pipe.fileno()
        self.buffer = b""

    def line(self, deadline: float, what: str) -> bytes:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise BenchError(f"{what}: no answer in time")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise BenchError(f"{what}: the process ended early")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


class Server:
    """The server under test, or an external one given by URL (then without CPU/memory figures)."""

    def __init__(
        self,
        system: System,
        transport: str,
        workdir: Path,
        cpus: set[int] | None,
        extra_args: tuple[str, ...] = (),
        name: str = "",
    ) -> None:
        self.system = system
        self.pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr_path = workdir / f"server-{system}{name}.log"
        where = (
            ["--unix", str(workdir / f"{system}{name}.sock")]
            if transport == "unix"
            else ["--tcp", "127.0.0.1:0"]
        )
        if system == "ours":
            clients = workdir / "clients.toml"
            clients.write_text(_CLIENTS_TOML, encoding="utf-8")
            argv = [sys.executable, "-m", "transports", "-q", "serve", "--clients", str(clients), *where]
            argv += extra_args  # the cluster bench: --redis ...
        else:
            argv = [sys.executable, "-m", "transports._bench_floor", *where]
        with self._stderr_path.open("wb") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        self.pid = self._process.pid
        _pin(self.pid, cpus)
        assert self._process.stdout is not None
        try:
            line = _LineReader(self._process.stdout).line(time.monotonic() + 30, f"{system} server start")
        except BenchError:
            self.stop()
            raise BenchError(f"the {system} server did not start: {self.log_tail()}") from None
        self.url = line.decode().removeprefix("listening on ").strip()
        self.rss_empty = self.memory("VmRSS")

    @classmethod
    def external(cls, url: str) -> Server:
        """A server we did not start: only its URL is known."""
        server = cls.__new__(cls)
        server.system, server.pid, server._process, server.url = "ours", None, None, url
        server.rss_empty = None
        return server

    def cpu_seconds(self) -> float | None:
        """utime + stime of the server process so far."""
        if self.pid is None:
            return None
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def memory(self, field: str) -> int | None:
        """A ``/proc/PID/status`` memory figure (``VmRSS``, ``VmHWM``) in bytes."""
        if self.pid is None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return None

    def log_tail(self) -> str:
        """The end of the server's stderr, for error messages."""
        with contextlib.suppress(OSError):
            return self._stderr_path.read_text(errors="replace")[-500:].strip() or "(no output)"
        return "(no output)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class RssSampler:
    """Samples the server's ``VmRSS`` every 20 ms in a thread (BENCH.md 2.1)."""

    def __init__(self, server: Server) -> None:
        self.peak = 0
        self._server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if server.pid is not None:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._server.memory("VmRSS") or 0)

    def stop(self) -> int | None:
        """Stop sampling; the largest sample (None without a local server)."""
        if self._server.pid is None:
            return None
        self._stop.set()
        self._thread.join()
        return self.peak


class Worker:
    """A load-generator process (see ``_bench_workers``)."""

    def __init__(self, role: str, config: dict[str, Any], cpus: set[int] | None, workdir: Path) -> None:
        self.role = role
        self._stderr_path = workdir / f"worker-{role}-{id(self)}.log"
        argv = [sys.executable, "-m", "transports._bench_workers", role, orjson.dumps(config).decode()]
        with self._stderr_path.open("wb") as log:
            self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        _pin(self._process.pid, cpus)
        assert self._process.stdout is not None
        self._reader = _LineReader(self._process.stdout)

    def message(self, deadline: float) -> dict[str, Any]:
        """The worker's next message; raises ``BenchError`` for an error or a missed deadline."""
        try:
            line = self._reader.line(deadline, f"the {self.role} worker")
        except BenchError as exc:
            detail = self._stderr_path.read_text(errors="replace")[-300:].strip()
            raise BenchError(f"{exc}{': ' + detail if detail else ''}") from None
        message: dict[str, Any] = orjson.loads(line)
        if "error" in message:
            raise BenchError(message["error"])
        return message

    def go(self) -> None:
        """Start the clock: the worker begins publishing."""
        assert self._process.stdin is not None
        self._process.stdin.write(b"go\n")
        self._process.stdin.flush()

    def close(self) -> None:
        """End the worker (it normally has already exited)."""
        process = self._process
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
