"""The ``pubsub-rpc`` command: serve, publish, subscribe, demo, conformance.

Exit statuses: 0 success, 1 a failure at run time (server unreachable, a
request refused), 2 a usage or configuration error.  Errors a user can cause
print one line on stderr, never a traceback.  Logs go to stderr and never
contain a client id.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from pubsub_rpc import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_OUTBOUND,
    DEFAULT_MAX_SUBSCRIPTIONS,
    PubSubError,
    RequestError,
)

from . import stdio, tcp, unix, websocket
from ._adapter import Adapter
from ._cli_client import UsageError as UsageError  # re-exported: _conformance raises it
from ._cli_client import add_client_parsers
from ._cli_stats import add_metrics_option, add_stats_parser, metrics_adapters
from ._clients_file import ClientsFileError, load_clients
from ._redis_options import add_redis_options, bridge_from_args
from ._server import DEFAULT_CLOSE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Server
from ._urls import BadURLError, parse_host_port

if TYPE_CHECKING:
    from ._redis_bridge import RedisBridge

_log = logging.getLogger("pubsub_rpc.cli")


def _fail(message: str, status: int) -> NoReturn:
    print(f"pubsub-rpc: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


# -- serve ---------------------------------------------------------------------


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.tls_cert and not args.tls_key:
        return None
    if not (args.tls_cert and args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate or key: {exc}") from None
    return context


def _octal_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal file mode: {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"not a file mode: {text!r}")
    return mode


def _add_limit_options(serve: argparse.ArgumentParser) -> None:
    """The serve options for the server's limits (spec/README.md, "Limits")."""
    limits = serve.add_argument_group("limits")
    for flag, default, unit, text in (
        ("--max-frame-size", DEFAULT_MAX_FRAME_SIZE, "BYTES", "largest frame parsed"),
        ("--max-batch", DEFAULT_MAX_BATCH, "N", "most requests in one batch"),
        (
            "--max-outbound",
            DEFAULT_MAX_OUTBOUND,
            "BYTES",
            "events waiting per connection before it is cut off",
        ),
        ("--max-subscriptions", DEFAULT_MAX_SUBSCRIPTIONS, "N", "subscriptions per connection"),
        ("--max-connections", DEFAULT_MAX_CONNECTIONS, "N", "connections per listener"),
    ):
        limits.add_argument(
            flag, type=int, default=default, metavar=unit, help=f"{text} (default: %(default)s)"
        )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="S",
        help="close connections with no valid request after S seconds; 0: never (default: %(default)s)",
    )
    limits.add_argument(
        "--close-timeout",
        type=float,
        default=DEFAULT_CLOSE_TIMEOUT,
        metavar="S",
        help="time a closing connection gets to flush (default: %(default)s)",
    )
    serve.add_argument(
        "--unix-mode",
        type=_octal_mode,
        default=0o600,
        metavar="OCTAL",
        help="file mode of --unix socket files (default: 600, owner only)",
    )


def _build_server(args: argparse.Namespace) -> Server:
    try:
        clients = load_clients(args.clients)
    except ClientsFileError as exc:
        raise UsageError(str(exc)) from None
    if not (args.tcp or args.unix or args.stdio or args.ws):
        raise UsageError("nothing to serve: give --tcp HOST:PORT, --ws HOST:PORT, --unix PATH or --stdio")
    if args.ws_origin and not args.ws:
        raise UsageError("--ws-origin goes with --ws")
    trust = set(args.trust or ())
    tls = _tls_context(args)
    adapters: list[Adapter] = []
    for spec in args.tcp or ():
        try:
            host, port = parse_host_port(spec)
        except BadURLError as exc:
            raise UsageError(f"--tcp {exc}") from None
        adapters.append(tcp.Adapter(host, port, trusted="tcp" in trust, ssl_context=tls))
    adapters.extend(
        unix.Adapter(path, trusted="unix" in trust, mode=args.unix_mode) for path in args.unix or ()
    )
    for spec in args.ws or ():
        try:
            host, port = parse_host_port(spec)
        except BadURLError as exc:
            raise UsageError(f"--ws {exc}") from None
        adapters.append(
            websocket.Adapter(
                host, port, trusted="ws" in trust, ssl_context=tls, allowed_origins=args.ws_origin
            )
        )
    if args.stdio:
        adapters.append(stdio.Adapter(trusted="stdio" in trust))
    adapters.extend(metrics_adapters(args))
    try:
        server = Server(
            adapters,
            max_frame_size=args.max_frame_size,
            max_batch=args.max_batch,
            max_outbound=args.max_outbound,
            max_subscriptions=args.max_subscriptions,
            max_connections=args.max_connections,
            idle_timeout=args.idle_timeout or None,
            close_timeout=args.close_timeout,
        )
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    for info in clients:
        server.register_client(info)
    return server


async def _serve(server: Server, announce_to_stderr: bool, bridge: RedisBridge | None = None) -> None:
    out = sys.stderr if announce_to_stderr else sys.stdout
    stop = trio.Event()

    async def on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                _log.info("received %s: shutting down", signal.Signals(signum).name)
                stop.set()
                return

    async def on_stdio_peer_gone(adapter: stdio.Adapter) -> None:
        # A stdio-only server has nobody left to serve once its one peer left.
        await adapter.wait_disconnected()
        stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signal)
        if bridge is not None:
            await nursery.start(bridge.run)
        await nursery.start(server.serve)
        for adapter in server.adapters:
            url = getattr(adapter, "url", None)
            print(f"listening on {url}" if url else "serving one peer on stdio", file=out, flush=True)
        stdio_adapters = [adapter for adapter in server.adapters if isinstance(adapter, stdio.Adapter)]
        if len(stdio_adapters) == len(server.adapters):
            for stdio_adapter in stdio_adapters:
                nursery.start_soon(on_stdio_peer_gone, stdio_adapter)
        await stop.wait()
        await server.aclose()
        if bridge is not None:
            await bridge.aclose()
        nursery.cancel_scope.cancel()


#: Allocations between young-generation collections while serving (CPython's default: 700).
SERVE_GC_THRESHOLD: Final = 20_000


def _tune_gc_for_serving() -> None:
    """Collect cyclic garbage less often: a server allocates containers by the million, all short-lived."""
    # Every decoded request is three dicts that die within the read that
    # brought them; at the default threshold the collector ran every ~100
    # publishes and cost about 4% of the publish path, finding nothing.
    # Objects alive now (modules, classes, the configuration) are frozen
    # out of all future collections.  Cycles are still collected, a little later.
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(SERVE_GC_THRESHOLD, older, oldest)


def _cmd_serve(args: argparse.Namespace) -> int:
    server = _build_server(args)
    bridge = bridge_from_args(args, server.broker)
    _tune_gc_for_serving()
    try:
        trio.run(_serve, server, bool(args.stdio), bridge)
    except* OSError as group:
        _fail(f"cannot listen: {group.exceptions[0]}", 1)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    trio.run(run_demo, args.events)
    return 0


# -- plumbing ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pubsub-rpc``."""
    parser = argparse.ArgumentParser(
        prog="pubsub-rpc", description="Publish/subscribe over JSON-RPC 2.0: server, client and demo."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a server")
    serve.add_argument("--clients", required=True, metavar="FILE", help="TOML file of [[client]] tables")
    serve.add_argument("--tcp", action="append", metavar="HOST:PORT", help="listen on TCP (port 0: any)")
    serve.add_argument("--unix", action="append", metavar="PATH", help="listen on a Unix socket")
    serve.add_argument("--stdio", action="store_true", help="serve one peer over stdin/stdout")
    serve.add_argument(
        "--trust",
        action="append",
        choices=("tcp", "unix", "stdio", "ws"),
        help="let that transport's peers omit the client id (ad-hoc identity)",
    )
    serve.add_argument(
        "--ws",
        action="append",
        metavar="HOST:PORT",
        help="listen for WebSocket clients, browsers too; also serves /client.js (port 0: any)",
    )
    serve.add_argument(
        "--ws-origin",
        action="append",
        metavar="ORIGIN",
        help="only pages from this origin (as in https://app.example) may connect over --ws; repeatable",
    )
    serve.add_argument(
        "--tls-cert", metavar="PEM", help="serve TCP and WebSockets over TLS with this certificate"
    )
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    _add_limit_options(serve)
    add_metrics_option(serve)
    add_redis_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    add_client_parsers(commands)
    add_stats_parser(commands)

    demo = commands.add_parser("demo", help="run a server and two clients in this process, and watch")
    demo.add_argument("--events", type=int, default=5, help="how many events to publish")
    demo.set_defaults(handler=_cmd_demo)

    from ._conformance import add_conformance_parser

    add_conformance_parser(commands)

    from ._bench import add_bench_parser

    add_bench_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pubsub-rpc`` console script."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING + 10 * (args.quiet - args.verbose)
    logging.basicConfig(
        stream=sys.stderr,
        level=max(level, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every error a user can cause ends as one line
        _report(_first_leaf(exc))
    return status


def _first_leaf(exc: BaseException) -> BaseException:
    # trio nurseries wrap errors in ExceptionGroups; the user wants the cause.
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _report(exc: BaseException) -> NoReturn:
    if isinstance(exc, UsageError | BadURLError):
        _fail(str(exc), 2)
    if isinstance(exc, RequestError):
        _fail(f"refused: {exc.message}", 1)
    if isinstance(exc, PubSubError):
        _fail(exc.message, 1)
    if isinstance(exc, OSError):
        _fail(f"cannot connect: {exc.strerror or exc}", 1)
    raise exc
