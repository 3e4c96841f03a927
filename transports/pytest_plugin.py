"""pytest fixtures for testing your own code against a real pub/sub server.

Installing pubsub-rpc registers this module as a pytest plugin (entry point
``pytest11``, name ``pubsub_rpc``), so with pytest-trio installed a test needs
no set-up at all::

    async def test_events_arrive(pubsub_connect):
        watcher, publisher = await pubsub_connect(), await pubsub_connect()
        async with await watcher.subscribe("user::logged_in") as logins:
            assert await publisher.publish("user::logged_in", {"user": "ada"}) == 1
            assert await anext(logins) == {"user": "ada"}

The fixtures are trio fixtures: they need pytest-trio, and a test using them
must be a trio test (``trio_mode = true`` in the pytest configuration, or
``@pytest.mark.trio`` on the test).  ``-p no:pubsub_rpc`` turns the plugin off.

* ``pubsub_clients``: the clients registered before the server starts, an
  iterable of ``pubsub_rpc.ClientInfo`` (none by default), registered as
  they are: per-name rules (``subscribe_deny=("secret.>",)`` and the rest)
  and ``can_inspect`` (the ``stats`` request) included.  Override it in a
  conftest or test module, or per test with
  ``@pytest.mark.parametrize("pubsub_clients", [[ClientInfo(...)]])``.
* ``pubsub_server_options``: keyword arguments for ``Server`` (its limits),
  ``{}`` by default; override it the same way.
* ``pubsub_server``: a ``RunningServer``: the serving ``Server`` with an
  in-process adapter, a TCP adapter on 127.0.0.1 (a free port) and, where the
  OS has them, a Unix socket in a private temporary directory.
* ``pubsub_connect``: a ``Connect``: ``await pubsub_connect("s3cret")`` opens a
  client with that id, ``await pubsub_connect()`` one with an ad-hoc identity;
  in-process unless ``transport="tcp"`` or ``"unix"`` says otherwise.

Every listener is trusted, as the in-process one always is: a client that
sends no id gets an ad-hoc identity with every right (``stats`` included).  A registered id gets
exactly its registered rights and an unknown id is refused, on every
transport.  At teardown the clients are closed, then the server, and the test
errors if the server misbehaved: broker indexes that disagree, state left
behind after every connection closed, or a connection that failed inside the
server (a bug, also logged).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import pytest
import trio

from pubsub_rpc import ClientInfo

from . import inprocess, tcp, unix
from ._client import Client
from ._server import Server

__all__ = ["Connect", "RunningServer"]

#: Seconds teardown may take to close the clients, beyond the server's own close timeout.
TEARDOWN_MARGIN: Final = 10.0

Transport = Literal["inprocess", "tcp", "unix"]


@dataclass(frozen=True, slots=True)
class RunningServer:
    """The server a test runs against, and the adapters that reach it."""

    #: The serving server (its ``broker`` and ``stats`` are there to inspect).
    server: Server
    #: The in-process adapter (``transports.inprocess.connect(adapter)`` reaches it).
    inprocess: inprocess.Adapter
    #: The TCP adapter on 127.0.0.1; ``tcp.url`` and ``tcp.port`` say where.
    tcp: tcp.Adapter
    #: The Unix socket adapter (``unix.url``), or None where the OS has no Unix sockets.
    unix: unix.Adapter | None


class Connect:
    """The ``pubsub_connect`` fixture: opens clients that stay open until the test ends.

    Not built directly; pytest hands it to a test that asks for ``pubsub_connect``.
    """

    def __init__(self, running: RunningServer, nursery: trio.Nursery) -> None:
        #: The server the clients connect to.
        self.running = running
        self._nursery = nursery
        self._done = trio.Event()

    async def __call__(
        self, client_id: str | None = None, *, transport: Transport = "inprocess", **options: Any
    ) -> Client:
        """Open a client acting as ``client_id`` (None: an ad-hoc identity) and return it.

        ``transport`` is ``"inprocess"`` (the default), ``"tcp"`` or
        ``"unix"``.  ``options`` go to that transport's ``connect`` (for
        example ``request_timeout`` or ``keepalive``, and ``dialect`` on the
        byte-stream transports).  The client is closed at teardown; closing
        it earlier with ``aclose`` is fine.  Raises ``ValueError`` for an
        unknown transport, ``TypeError`` for an option the transport lacks,
        and ``ConnectionClosedError`` if the server cannot be reached.
        """
        opener = self._opener(transport, client_id, options)
        # The client's tasks live in the fixture's nursery, not the test's:
        # a nursery must close in the task that opened it, and the fixture's
        # task is the one that closes the clients at teardown.
        client: Client = await self._nursery.start(self._hold, opener)
        return client

    def _opener(
        self, transport: str, client_id: str | None, options: dict[str, Any]
    ) -> AbstractAsyncContextManager[Client]:
        running = self.running
        if transport == "inprocess":
            return inprocess.connect(running.inprocess, client_id=client_id, **options)
        if transport == "tcp":
            host, port = running.tcp.address
            return tcp.connect(host, port, client_id=client_id, **options)
        if transport == "unix":
            if running.unix is None:
                raise ValueError("This system has no Unix sockets; use transport='tcp' or 'inprocess'.")
            return unix.connect(running.unix.path, client_id=client_id, **options)
        raise ValueError(f"Unknown transport {transport!r}: use 'inprocess', 'tcp' or 'unix'.")

    async def _hold(
        self,
        opener: AbstractAsyncContextManager[Client],
        *,
        task_status: trio.TaskStatus[Client] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with trio.CancelScope() as scope:
            async with opener as client:
                task_status.started(client)
                await self._done.wait()
                # Closing a client is local and quick: bound it, so a bug cannot hang teardown.
                scope.deadline = trio.current_time() + TEARDOWN_MARGIN
        if scope.cancelled_caught:
            raise RuntimeError(f"Closing a pub/sub test client took more than {TEARDOWN_MARGIN:g} seconds.")

    def _close_all(self) -> None:
        """Let every client's task leave its ``connect`` block, which closes the client."""
        self._done.set()


@pytest.fixture
def pubsub_clients() -> Iterable[ClientInfo]:
    """The clients registered before the server starts: none unless you override this fixture."""
    return ()


@pytest.fixture
def pubsub_server_options() -> dict[str, Any]:
    """Keyword arguments for the test server's ``Server`` (limits): none unless overridden."""
    return {}


@pytest.fixture
async def pubsub_server(
    pubsub_clients: Iterable[ClientInfo], pubsub_server_options: dict[str, Any]
) -> AsyncIterator[RunningServer]:
    """A running ``Server`` reachable in-process, over TCP on 127.0.0.1 and over a Unix socket.

    Errors the test at teardown if the server misbehaved (see the module docstring).
    """
    problems: list[str] = []
    with _socket_directory() as directory:
        running = RunningServer(
            Server([], **pubsub_server_options),
            inprocess.Adapter(),
            tcp.Adapter("127.0.0.1", 0, trusted=True),
            unix.Adapter(os.path.join(directory, "server.sock"), trusted=True) if directory else None,
        )
        server = running.server
        for adapter in (running.inprocess, running.tcp, running.unix):
            if adapter is not None:
                server.add_adapter(adapter)
        for info in pubsub_clients:
            server.register_client(info)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield running
            _check(server, problems, "while connections were open")
            with trio.move_on_after(server.close_timeout + TEARDOWN_MARGIN) as scope:
                await server.aclose()
            if scope.cancelled_caught:
                problems.append("the server did not shut down in time")
                nursery.cancel_scope.cancel()
    _check(server, problems, "after shutdown")
    if server.broker.subscription_count or server.broker.connections_held:
        problems.append(
            f"after shutdown the broker still held {server.broker.subscription_count} subscription(s) "
            f"and state for {server.broker.connections_held} connection(s)"
        )
    stats = server.stats
    if stats.internal_errors or stats.request_faults:
        problems.append(
            f"{stats.internal_errors} connection(s) and {stats.request_faults} request(s) failed "
            "inside the server (see the captured log)"
        )
    if problems:
        pytest.fail("The pub/sub test server misbehaved: " + "; ".join(problems), pytrace=False)


@pytest.fixture
async def pubsub_connect(pubsub_server: RunningServer) -> AsyncIterator[Connect]:
    """Open clients to ``pubsub_server``: ``await pubsub_connect("id", transport="tcp")``.

    Every client it opened is closed at teardown, before the server.
    """
    async with trio.open_nursery() as nursery:
        connect = Connect(pubsub_server, nursery)
        yield connect
        connect._close_all()


def _check(server: Server, problems: list[str], when: str) -> None:
    try:
        server.broker.check_consistency()
    except AssertionError as exc:
        # The first line is the broker's own text; pytest's assertion
        # rewriting (it rewrites every module of a plugin's distribution) adds more.
        reason = str(exc).partition("\n")[0]
        problems.append(f"broker indexes disagreed {when} ({reason})")


@contextmanager
def _socket_directory() -> Iterator[str | None]:
    """A short private directory for the Unix socket, or None without Unix sockets.

    Not pytest's ``tmp_path``: a socket path may be only about 100 bytes long,
    and ``tmp_path`` nests deeper still when tests run tests (``pytester``).
    """
    if not hasattr(socket, "AF_UNIX"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="pubsub-") as directory:
        yield directory
