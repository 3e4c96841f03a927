"""``pubsub-rpc conformance``: the vectors of ``spec/`` against a live server, over sockets.

What a case means is decided by ``pubsub_rpc._conformance`` (the same code
the core test uses); this module only performs its actions on real
connections: one stream per vector connection (to the trusted URL for
trusted ones), each piece of a split send written on its own, frames read
with a per-step timeout, "nothing arrives" as a quiet period, half-close as
``send_eof``.  Cases run one after another, each on fresh connections that
are all closed when it ends; a live runner may share one server between
cases because every case uses event names of its own (spec/README.md, 14.2).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TextIO

import trio

from pubsub_rpc import ClientInfo, ConnectionClosedError, PubSubError
from pubsub_rpc._conformance import (
    DEFAULT_LIMITS,
    Action,
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
    load_suite,
    skip_reason,
)

from . import tcp
from ._errors import translate_io_errors
from ._urls import ServerURL, parse_url

DEFAULT_TIMEOUT: Final = 5.0
#: How long "nothing arrives" is watched (spec/README.md, 14.3: 100 ms is plenty on loopback).
DEFAULT_QUIET_PERIOD: Final = 0.1
#: Between the pieces of a split send, so that they tend to arrive as separate reads.
PIECE_PAUSE: Final = 0.001
_RECEIVE_SIZE: Final = 65536


@dataclass(frozen=True, kw_only=True)
class LiveOptions:
    """Where the server under test listens and how patiently to wait for it."""

    url: ServerURL
    trusted_url: ServerURL | None = None
    timeout: float = DEFAULT_TIMEOUT
    quiet_period: float = DEFAULT_QUIET_PERIOD
    #: The limits the server was started with (the missing ones: the spec's defaults).
    limits: Mapping[str, int] = field(default_factory=dict)


def parse_limits(text: str) -> dict[str, int]:
    """``max_frame_size=1024,max_batch=3`` as a dict; ``ValueError`` with a readable text."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in DEFAULT_LIMITS or not value.isdigit() or int(value) < 1:
            raise ValueError(f"{item!r}: expected NAME=N with NAME one of {', '.join(DEFAULT_LIMITS)}")
        limits[name] = int(value)
    return limits


def clients_toml(clients: Sequence[ClientInfo]) -> str:
    """The vectors' clients as a ``pubsub-rpc serve --clients`` file."""
    lines = [
        "# The registered clients the pubsub-rpc conformance vectors expect (spec/vectors/clients.json).",
        "# Test ids, not secrets.  Serve them, with one trusted listener, e.g.:",
        "#   pubsub-rpc serve --clients THIS_FILE --tcp 127.0.0.1:7700 --unix /tmp/pubsub.sock --trust unix",
        "# then: pubsub-rpc conformance tcp://127.0.0.1:7700 --trusted-url unix:///tmp/pubsub.sock",
    ]
    for client in clients:
        lines += [
            "",
            "[[client]]",
            f"id = {_toml_string(client.id)}",
            f"can_publish = {str(client.can_publish).lower()}",
            f"can_subscribe = {str(client.can_subscribe).lower()}",
        ]
        if client.can_inspect:
            lines.append("can_inspect = true")
        for key in ("publish_allow", "publish_deny", "subscribe_allow", "subscribe_deny"):
            patterns = getattr(client, key)
            if patterns is not None and (patterns or key.endswith("allow")):
                lines.append(f"{key} = [{', '.join(_toml_string(p) for p in patterns)}]")
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in escaped) + '"'


# -- connections ----------------------------------------------------------------------


async def open_connection(url: ServerURL, timeout: float) -> trio.abc.Stream:
    """A raw byte stream to the server (``ConnectionClosedError`` if it cannot be had in time)."""
    if url.scheme == "unix":
        with trio.move_on_after(timeout), translate_io_errors(f"Connecting to {url}"):
            return await trio.open_unix_socket(url.path)
        raise ConnectionClosedError(f"Connecting to {url} failed: no answer within {timeout:g} seconds.")
    context = ssl.create_default_context() if url.scheme == "tls" else None
    return await tcp.open_stream(url.host, url.port, ssl_context=context, timeout=timeout)


class _LiveDriver:
    """Performs one case's actions on real connections."""

    def __init__(self, options: LiveOptions) -> None:
        self.options = options
        self.streams: dict[str, trio.abc.Stream] = {}
        self.wires: dict[str, Wire] = {}
        self.closed: set[str] = set()  # the server ended the stream (EOF or reset)
        self.half_closed: set[str] = set()
        self.timed_out = False  # the last step waited in vain for frames

    async def run(self, run: CaseRun) -> None:
        actions = run.actions()
        try:
            action = next(actions)
            while True:
                self.timed_out = False
                try:
                    await self.perform(action)
                except CaseFailure as exc:
                    action = actions.throw(exc)  # re-raised, naming the step
                else:
                    action = actions.send(frozenset(self.closed))
        except StopIteration:
            return
        except CaseFailure as exc:
            if self.timed_out:
                raise CaseFailure(f"{exc} (waited {self.options.timeout:g} s)") from None
            raise

    async def aclose(self) -> None:
        for stream in self.streams.values():
            await trio.aclose_forcefully(stream)

    async def perform(self, action: Action) -> None:
        options = self.options
        match action:
            case Open(conn=name, trusted=trusted, wire=wire):
                url = options.trusted_url if trusted and options.trusted_url else options.url
                try:
                    self.streams[name] = await open_connection(url, options.timeout)
                except (PubSubError, OSError) as exc:
                    raise CaseFailure(f"cannot open {name!r}: {exc}") from None
                self.wires[name] = wire
            case Send(conn=name, pieces=pieces):
                for number, piece in enumerate(pieces):
                    if number:
                        await trio.sleep(PIECE_PAUSE)
                    try:
                        await self.streams[name].send_all(piece)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        raise CaseFailure(f"sending on {name!r} failed: the server closed it") from None
            case Expect(conn=name, count=count):
                wire = self.wires[name]
                with trio.move_on_after(options.timeout) as scope:
                    await self._read(name, lambda: wire.ready(count))
                self.timed_out = scope.cancelled_caught
                if count == 0:
                    await self._settle([name])
            case ExpectClosed(conn=name):
                with trio.move_on_after(options.timeout) as scope:
                    await self._read(name, lambda: False)
                self.timed_out = scope.cancelled_caught
            case Close(conn=name):
                await trio.aclose_forcefully(self.streams.pop(name))
                await trio.sleep(options.quiet_period)  # let the server see it before the next step
            case HalfClose(conn=name):
                stream = self.streams[name]
                if not isinstance(stream, trio.abc.HalfCloseableStream):
                    raise CaseFailure(f"{name!r} cannot be half-closed on this transport")
                self.half_closed.add(name)
                try:
                    await stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise CaseFailure(f"half-closing {name!r} failed: the server closed it") from None
            case Settle(conns=names):
                await self._settle(names, barrier=True)

    async def _settle(self, names: Sequence[str], *, barrier: bool = False) -> None:
        """Read every connection of ``names`` for the quiet period, all at once.

        With ``barrier``, a connection that can take one gets a ping after
        everything the case sent (``Wire.barrier``): once its answer is in,
        nothing more can come, and the wait ends early.
        """
        failures: list[CaseFailure] = []

        async def watch(name: str) -> None:
            wire = self.wires[name]
            ping = wire.barrier() if barrier and name not in self.half_closed else None
            if ping is not None:
                try:
                    await self.streams[name].send_all(ping)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    ping = None  # closed by the server: the read below sees that
            try:
                await self._read(name, lambda: bool(failures) or (ping is not None and wire.take_barrier()))
            except CaseFailure as exc:
                failures.append(exc)

        with trio.move_on_after(self.options.quiet_period):
            async with trio.open_nursery() as nursery:
                for name in names:
                    if name not in self.closed:
                        nursery.start_soon(watch, name)
        if failures:
            raise failures[0]

    async def _read(self, name: str, done: Callable[[], bool]) -> None:
        """Feed what ``name`` receives into its wire until ``done()`` or the server ends the stream."""
        stream, wire = self.streams[name], self.wires[name]
        while not done() and name not in self.closed:
            try:
                data = await stream.receive_some(_RECEIVE_SIZE)
            except trio.BrokenResourceError:
                data = b""  # reset by the server: it has closed the connection too
            if not data:
                self.closed.add(name)
                return
            wire.received(data)


# -- the suite ----------------------------------------------------------------------------


@dataclass
class Tally:
    """What a run found."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def _skip(case: Case, options: LiveOptions) -> tuple[str, str] | None:
    """(why this case cannot run here, the kind of reason for the summary), or None."""
    schemes = {options.url.scheme}
    if case.needs_trusted and options.trusted_url is not None:
        schemes.add(options.trusted_url.scheme)
    reason = skip_reason(
        case, trusted=options.trusted_url is not None, limits=options.limits, half_close="tls" not in schemes
    )
    if reason is None:
        return None
    if case.needs_trusted and options.trusted_url is None:
        return f"{reason} (give --trusted-url)", "a trusted connection (--trusted-url)"
    if reason.startswith("needs server limits"):
        return f"{reason} (start a server with them, give --server-limits)", "other server limits"
    return reason, "a half-close, which TLS cannot do"


async def run_case(case: Case, options: LiveOptions) -> None:
    """Run one case on fresh connections; ``CaseFailure`` or ``VectorError`` if it fails."""
    driver = _LiveDriver(options)
    try:
        await driver.run(CaseRun(case))
    finally:
        await driver.aclose()


async def run_suite(
    cases: Sequence[Case], options: LiveOptions, *, out: TextIO, progress: TextIO | None = None
) -> Tally:
    """Run ``cases`` in order: a line per case on ``out``, a counter on ``progress`` (a terminal)."""
    for url in filter(None, (options.url, options.trusted_url)):
        # One clear error, rather than every case failing, if nobody listens there.
        await trio.aclose_forcefully(await open_connection(url, options.timeout))
    tally = Tally()
    width = len(str(len(cases)))
    counter = progress if progress is not None and progress.isatty() else None
    for number, case in enumerate(cases, start=1):
        if counter is not None:
            counter.write(f"\r[{number:>{width}}/{len(cases)}] ")  # rewritten in place
            counter.flush()
        skip = _skip(case, options)
        if skip is not None:
            tally.skipped += 1
            tally.skip_reasons[skip[1]] += 1
            line = f"SKIP {case.name}: {skip[0]}"
        else:
            try:
                await run_case(case, options)
            except (CaseFailure, VectorError) as exc:
                tally.failed += 1
                kind = "the vector is wrong: " if isinstance(exc, VectorError) else ""
                known = f" (a known defect of the reference server: {case.xfail})" if case.xfail else ""
                line = f"FAIL {case.name}: {kind}{exc}{known}".replace("\r", "\\r").replace("\n", "\\n")
            else:
                tally.passed += 1
                line = f"PASS {case.name}"
        if counter is not None:
            counter.write("\r" + " " * (2 * width + 4) + "\r")  # erased before the verdict is printed
            counter.flush()
        print(line, file=out, flush=True)
    for need, count in sorted(tally.skip_reasons.items()):
        print(f"skipped {count}: they need {need}", file=out)
    print(tally.summary(), file=out, flush=True)
    return tally


# -- the command -------------------------------------------------------------------------


def add_conformance_parser(commands: Any) -> None:
    """Add the ``conformance`` subcommand to the CLI's subparsers."""
    check = commands.add_parser("conformance", help="run the spec's conformance vectors against a server")
    check.add_argument("url", metavar="URL", nargs="?", help="the server under test (untrusted listener)")
    check.add_argument("--trusted-url", metavar="URL", help="its trusted listener (else those cases skip)")
    check.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="per step (default: %(default)s)"
    )
    check.add_argument(
        "--quiet-period",
        type=float,
        default=DEFAULT_QUIET_PERIOD,
        metavar="S",
        help='how long "nothing arrives" is watched (default: %(default)s)',
    )
    check.add_argument(
        "--server-limits",
        default="",
        metavar="NAME=N,...",
        help="the server's max_frame_size/max_batch/max_outbound if not the defaults",
    )
    check.add_argument("--only", metavar="SUBSTRING", help="run the cases whose name contains it")
    check.add_argument("--spec-dir", metavar="DIR", help="the spec directory (default: the installed one)")
    check.add_argument("--print-clients", action="store_true", help="print the clients file to serve, exit")
    check.set_defaults(handler=run_conformance_command)


def run_conformance_command(args: argparse.Namespace) -> int:
    """``pubsub-rpc conformance``: 0 if no case failed, 1 otherwise (2: usage, via ``UsageError``)."""
    from ._cli import UsageError  # the CLI imports this module only when building its parser

    try:
        suite = load_suite(args.spec_dir)
    except (SpecNotFoundError, VectorError) as exc:
        raise UsageError(str(exc)) from None
    if args.print_clients:
        sys.stdout.write(clients_toml(suite.clients))
        return 0
    if args.url is None:
        raise UsageError("give the URL of the server under test (or --print-clients)")
    if args.timeout <= 0 or args.quiet_period <= 0:
        raise UsageError("--timeout and --quiet-period must be positive")
    try:
        limits = parse_limits(args.server_limits)
    except ValueError as exc:
        raise UsageError(f"--server-limits {exc}") from None
    cases = [case for case in suite.cases if args.only is None or args.only in case.name]
    if not cases:
        raise UsageError(f"no case name contains {args.only!r}")
    options = LiveOptions(
        url=parse_url(args.url),
        trusted_url=parse_url(args.trusted_url) if args.trusted_url else None,
        timeout=args.timeout,
        quiet_period=args.quiet_period,
        limits=limits,
    )
    tally = trio.run(partial(run_suite, cases, options, out=sys.stdout, progress=sys.stderr))
    return 1 if tally.failed else 0
