"""Error codes and the exception tree shared by every layer.

Wire codes live in one ``ErrorCode`` enum: the JSON-RPC reserved codes plus our
own range inside the "server error" band (-32000 to -32099).  Exceptions carry
their code so a transport can always turn an error into a wire answer.
"""

from __future__ import annotations

import enum
from typing import Final

import orjson


@enum.unique
class ErrorCode(enum.IntEnum):
    """Every error code this protocol puts on the wire."""

    #: The bytes of a frame are not valid JSON (or not valid UTF-8).
    PARSE_ERROR = -32700
    #: The JSON is not a valid JSON-RPC request object.
    INVALID_REQUEST = -32600
    #: The method does not exist.
    METHOD_NOT_FOUND = -32601
    #: A parameter is missing or has the wrong type.
    INVALID_PARAMS = -32602
    #: The server failed while handling a valid request.
    INTERNAL_ERROR = -32603
    #: The client id is not registered (or missing on an untrusted connection).
    UNKNOWN_CLIENT = -32001
    #: The client may not publish.
    PUBLISH_FORBIDDEN = -32002
    #: The client may not subscribe.
    SUBSCRIBE_FORBIDDEN = -32003
    #: The subscription id is unknown.
    NO_SUCH_SUBSCRIPTION = -32004
    #: The subscription belongs to another client.
    NOT_YOUR_SUBSCRIPTION = -32005
    #: A frame was larger than the connection's limit; it was skipped unparsed.
    FRAME_TOO_LARGE = -32006
    #: The connection fell too far behind reading its events and is being closed.
    SLOW_CONSUMER = -32007
    #: A configured limit (batch size, subscriptions, connections) was reached.
    LIMIT_EXCEEDED = -32008
    #: The server is shutting down and closes the connection.
    SERVER_CLOSING = -32009
    #: The connection sent no valid request within the idle timeout and is being closed.
    IDLE_TIMEOUT = -32010
    #: The client may not read the server's statistics (the ``stats`` method).
    INSPECT_FORBIDDEN = -32011


def error_code_from_int(code: int) -> ErrorCode | int:
    """Map a wire integer to ``ErrorCode``, keeping unknown codes as plain ints."""
    try:
        return ErrorCode(code)
    except ValueError:
        return code


_MAX_SHOWN: Final = 80


def describe(value: object) -> str:
    """A value as JSON for an error text, cut short so errors stay small.

    Never raises: a value nested deeper than orjson writes (254 levels; a
    request may nest 1024) is cut at a depth whose text lies beyond what is
    shown anyway, and anything else that is not JSON is shown by type.
    """
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        try:
            text = orjson.dumps(_prune(value, _MAX_SHOWN)).decode()
        except TypeError:
            text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _prune(value: object, depth: int) -> object:
    # Every level costs at least one character of JSON before its first
    # member, so cutting at a depth of _MAX_SHOWN does not change the prefix
    # that describe() shows.
    if type(value) is list:
        return [_prune(member, depth - 1) for member in value] if depth > 0 else []
    if type(value) is dict:
        return {key: _prune(member, depth - 1) for key, member in value.items()} if depth > 0 else {}
    return value


class PubSubError(Exception):
    """Base class of every error this package raises on purpose."""

    code: ErrorCode | int

    def __init__(self, message: str, *, code: ErrorCode | int = ErrorCode.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={int(self.code)})"


class ProtocolError(PubSubError):
    """Somebody broke the protocol; use a subclass to say who."""

    def __init__(self, message: str, *, code: ErrorCode | int = ErrorCode.INVALID_REQUEST) -> None:
        if type(self) is ProtocolError:
            # As in h11: the direction of a protocol error always matters, so the
            # base class exists only to be caught.
            raise TypeError("raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message, code=code)


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol or the object's state forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the protocol beyond repair of this connection."""

    def __init__(self, message: str, *, code: ErrorCode | int = ErrorCode.PARSE_ERROR) -> None:
        super().__init__(message, code=code)


class RequestError(PubSubError):
    """The server answered a request with a failure; ``message`` is its exact text."""

    def __init__(self, message: str, *, code: ErrorCode | int) -> None:
        super().__init__(message, code=code)

    def __str__(self) -> str:
        # The original's PubSubException printed this way; people grep logs for it.
        return f"`pub_sub` exception: {self.message}"


class ConnectionClosedError(PubSubError):
    """The connection ended before an answer arrived, or was used after it closed."""

    def __init__(self, message: str, *, code: ErrorCode | int = ErrorCode.SERVER_CLOSING) -> None:
        super().__init__(message, code=code)


class RequestTimeoutError(PubSubError):
    """No answer to a request arrived within the configured time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.INTERNAL_ERROR)
