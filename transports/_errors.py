"""Errors the trio layer adds, and the one place trio's I/O exceptions become ours.

Everything a caller sees from a transport is a ``pubsub_rpc.PubSubError``:
a stream that breaks, resets or is closed under us becomes
``ConnectionClosedError`` (with the trio or OS exception as its ``__cause__``),
so application code needs one ``except`` whatever the transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from pubsub_rpc import ConnectionClosedError, ErrorCode, PubSubError


class SubscriptionOverflowError(PubSubError):
    """A subscription's buffer filled up because its values were not read fast enough.

    The subscription has been ended and unsubscribed from the server; its
    iterator raises this after the values buffered before the overflow.  The
    client and its other subscriptions carry on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.SLOW_CONSUMER)


class ReconnectFailedError(ConnectionClosedError):
    """A reconnecting client gave up: ``max_attempts`` attempts in a row failed.

    Every request and subscription of that client raises it from then on;
    the message says how many attempts failed and why the last one did.
    """


@contextmanager
def translate_io_errors(what: str) -> Iterator[None]:
    """Re-raise trio's and the OS's stream failures as ``ConnectionClosedError``.

    ``what`` says which operation failed, for the message: "Sending",
    "Receiving", ...  ``trio.Cancelled`` and our own errors pass untouched.
    """
    try:
        yield
    except trio.ClosedResourceError as exc:
        # Closed by this side: a local aclose() raced with the operation.
        raise ConnectionClosedError(f"{what} failed: the connection was closed.") from exc
    except trio.BrokenResourceError as exc:
        # trio wraps the OSError (reset, broken pipe, TLS failure) as __cause__.
        cause = exc.__cause__
        detail = _describe_os_error(cause) if isinstance(cause, OSError) else "the connection is broken"
        raise ConnectionClosedError(f"{what} failed: {detail}.") from exc
    except OSError as exc:
        raise ConnectionClosedError(f"{what} failed: {_describe_os_error(exc)}.") from exc


def _describe_os_error(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


@contextmanager
def unwrap_single_exception() -> Iterator[None]:
    """Re-raise a lone exception that nurseries wrapped in exception groups as itself.

    Our context managers run background tasks in a nursery around the
    caller's code, and ``Server.serve`` runs adapters in nurseries; those
    tasks end only by themselves, so the one real error (the caller's own, or
    an adapter that could not listen) is usually the only one, and ``except
    RequestError`` or ``except OSError`` should work on it as written.  Real
    groups (two or more) pass unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        single: BaseException = group
        # Nested nurseries nest groups: look through every one-member level.
        while isinstance(single, BaseExceptionGroup) and len(single.exceptions) == 1:
            single = single.exceptions[0]
        if isinstance(single, BaseExceptionGroup):
            raise
        raise single from single.__cause__
