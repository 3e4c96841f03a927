"""Turning one JSON-RPC message into a broker call and an outcome.

Two paths reach the same operations:

* the fast path (``OPERATIONS[method]``, or ``dispatch_fast``) takes the
  shape every well-behaved client sends (a single object, ``"jsonrpc":"2.0"``,
  a known method, object params) and calls the operation directly;
* everything else that is still a structurally valid request (unknown
  methods, positional params, extra envelope members) goes through
  ``jsonrpcserver.dispatch_to_serializable`` with the handlers below written in
  its convention.  jsonrpcserver costs about 20 us a request even with its
  jsonschema validation off (see shared/reference/dependencies.md, 7.3), so it
  stays off the hot path; ``tests/test_dispatch_golden.py`` proves both paths
  agree.

An operation either returns the ``result`` object or raises ``RequestError``
with the original's text; the caller formats that for the message's dialect.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Final

from ._broker import Broker, Subscriber
from ._errors import ErrorCode, RequestError, describe
from ._messages import PING, PUBLISH, STATS, SUBSCRIBE, UNSUBSCRIBE
from ._patterns import Pattern, PatternError

# jsonrpcserver 5.0.9 (pinned: its last release) reads its JSON Schema at
# import with importlib.resources.read_text/open_text, deprecated on Python
# 3.11 and 3.12.  That warning is about its code, which nobody can change, so
# exactly it is silenced here: importing pubsub_rpc (which the pytest plugin
# does whenever pytest starts) must stay clean under ``filterwarnings = error``.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    from jsonrpcserver import Error, Result, Success, dispatch_to_serializable

_MISSING: Final = object()


def missing_param(method: str, name: str) -> RequestError:
    """The error for a required parameter that is absent."""
    return RequestError(
        f'Request for method "{method}" is missing required parameter "{name}".',
        code=ErrorCode.INVALID_PARAMS,
    )


def _not_a_string(method: str, name: str, value: object) -> RequestError:
    return RequestError(
        f'Parameter "{name}" for method "{method}" must be a string, but was {describe(value)}.',
        code=ErrorCode.INVALID_PARAMS,
    )


def _required_string(params: dict[str, Any], method: str, name: str) -> str:
    value = params.get(name, _MISSING)
    if value is _MISSING:
        raise missing_param(method, name)
    if type(value) is not str:
        raise _not_a_string(method, name, value)
    return value


def _client_id(params: dict[str, Any], method: str) -> str | None:
    # Absent and null mean "no id" (a trusted connection then uses its ad-hoc
    # identity).  The original also treated numbers etc. as "no id", which let a
    # typo on a trusted adapter act with full rights; we refuse them instead.
    value = params.get("client_id")
    if value is None or type(value) is str:
        return value
    raise _not_a_string(method, "client_id", value)


def optional_flag(params: dict[str, Any], method: str, name: str, default: bool) -> bool:
    """An optional boolean param: absent or null means ``default``."""
    value = params.get(name)
    if value is None:
        return default
    if type(value) is not bool:
        raise RequestError(
            f'Parameter "{name}" for method "{method}" must be a boolean, but was {describe(value)}.',
            code=ErrorCode.INVALID_PARAMS,
        )
    return value


def pattern_param(params: dict[str, Any]) -> str | None:
    """The ``pattern`` param of a subscribe (None: an exact subscription), checked for shape.

    Exactly one of ``event_name`` and ``pattern`` (null counts as absent) may
    be given; with neither, the text is the original's missing ``event_name``.
    """
    pattern = params.get("pattern")
    if pattern is None:
        return None
    if "event_name" in params:
        raise RequestError(BOTH_TARGETS, code=ErrorCode.INVALID_PARAMS)
    if type(pattern) is not str:
        raise _not_a_string(SUBSCRIBE, "pattern", pattern)
    return pattern


#: The text for a subscribe that names an event and a pattern.
BOTH_TARGETS: Final = 'Request for method "subscribe" must give either "event_name" or "pattern", not both.'


def _publish(broker: Broker, connection: Subscriber, params: dict[str, Any]) -> dict[str, Any]:
    # The hottest request: the well-formed case is checked inline, and the
    # helpers run only to word an error.
    event_name = params.get("event_name")
    if type(event_name) is not str:
        event_name = _required_string(params, PUBLISH, "event_name")
    if "value" not in params:
        raise missing_param(PUBLISH, "value")
    client_id = params.get("client_id")
    if client_id is not None and type(client_id) is not str:
        client_id = _client_id(params, PUBLISH)
    if "exclude_self" in params or "report" in params:
        # Only clients that use the options pay for checking them.
        return broker.publish(
            connection,
            client_id,
            event_name,
            params["value"],
            exclude_self=optional_flag(params, PUBLISH, "exclude_self", True),
            report=optional_flag(params, PUBLISH, "report", False),
        )
    return broker.publish(connection, client_id, event_name, params["value"])


def _publish_unanswered(broker: Broker, connection: Subscriber, params: dict[str, Any]) -> object:
    """``publish`` as a plain notification: nobody reads the result, so none is built."""
    event_name = params.get("event_name")
    client_id = params.get("client_id")
    if (
        type(event_name) is str
        and (client_id is None or type(client_id) is str)
        and "value" in params
        and not ("exclude_self" in params or "report" in params)
    ):
        broker.publish_unanswered(connection, client_id, event_name, params["value"])
        return None
    return _publish(broker, connection, params)  # options, or an error to raise


def _subscribe(broker: Broker, connection: Subscriber, params: dict[str, Any]) -> dict[str, Any]:
    pattern = pattern_param(params)
    if pattern is None:
        event_name = _required_string(params, SUBSCRIBE, "event_name")
        return broker.subscribe(connection, _client_id(params, SUBSCRIBE), event_name)
    client_id = _client_id(params, SUBSCRIBE)
    try:
        parsed = Pattern.parse(pattern)
    except PatternError as exc:
        raise RequestError(str(exc), code=ErrorCode.INVALID_PARAMS) from None
    return broker.subscribe_pattern(connection, client_id, parsed)


def _unsubscribe(broker: Broker, connection: Subscriber, params: dict[str, Any]) -> dict[str, Any]:
    subscription_id = _required_string(params, UNSUBSCRIBE, "subscription_id")
    return broker.unsubscribe(connection, _client_id(params, UNSUBSCRIBE), subscription_id)


def _ping(broker: Broker, connection: Subscriber, params: dict[str, Any]) -> dict[str, Any]:
    return {}


def _stats(broker: Broker, connection: Subscriber, params: dict[str, Any]) -> dict[str, Any]:
    return broker.inspect(connection, _client_id(params, STATS))


Operation = Callable[[Broker, Subscriber, dict[str, Any]], dict[str, Any]]

#: The server's methods, by name.
OPERATIONS: Final[dict[str, Operation]] = {
    PUBLISH: _publish,
    SUBSCRIBE: _subscribe,
    UNSUBSCRIBE: _unsubscribe,
    PING: _ping,
    STATS: _stats,
}

#: Leaner forms of operations for plain notifications, whose result is thrown away.
UNANSWERED_OPERATIONS: Final[dict[str, Callable[[Broker, Subscriber, dict[str, Any]], object]]] = {
    PUBLISH: _publish_unanswered,
}


class CallContext:
    """What a jsonrpcserver handler gets as ``ctx``: where to act, and what happened."""

    __slots__ = ("broker", "connection", "outcome")

    def __init__(self, broker: Broker, connection: Subscriber) -> None:
        self.broker = broker
        self.connection = connection
        #: The operation's result dict or RequestError, once a handler ran.
        self.outcome: dict[str, Any] | RequestError | None = None


def _library_handler(name: str) -> Callable[..., Result]:
    operation = OPERATIONS[name]
    # Positional params bind in this order; named ones the fast path ignores
    # (unknown keys) are accepted and ignored here too, so both paths agree.
    order = {
        PUBLISH: ("event_name", "value", "client_id", "request_id"),
        SUBSCRIBE: ("event_name", "client_id", "request_id"),
        UNSUBSCRIBE: ("subscription_id", "client_id", "request_id"),
        PING: (),
        STATS: ("client_id", "request_id"),
    }[name]

    # ``context`` is positional-only so that a param named "ctx" (or
    # "context") lands in kwargs instead of colliding with it.
    def handler(context: CallContext, /, *args: Any, **kwargs: Any) -> Result:
        if len(args) > len(order):
            return Error(ErrorCode.INVALID_PARAMS, "too many positional arguments")
        params = dict(zip(order, args, strict=False))
        params.update(kwargs)
        try:
            result = operation(context.broker, context.connection, params)
        except RequestError as exc:
            context.outcome = exc
            return Error(exc.code, exc.message)
        context.outcome = result
        return Success(result)

    handler.__name__ = f"{name}_handler"
    return handler


_LIBRARY_METHODS: Final = {name: _library_handler(name) for name in OPERATIONS}


def _identity(message: Any) -> Any:
    return message


def _no_validation(message: Any) -> None:
    # Our envelope checks (in _server) already ran and produce better texts;
    # jsonschema would add ~37 us a request for the same decisions.
    return None


def dispatch_fast(
    broker: Broker, connection: Subscriber, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Run a known method with object params; raises ``RequestError`` on rejection."""
    return OPERATIONS[method](broker, connection, params)


def dispatch_general(
    broker: Broker, connection: Subscriber, message: dict[str, Any]
) -> tuple[dict[str, Any] | RequestError | None, dict[str, Any] | None]:
    """Dispatch a valid envelope the fast path declined, through jsonrpcserver.

    Returns the handler's outcome (``None`` when no handler ran: unknown method
    or params that do not bind) and the library's response (``None`` for a
    notification).
    """
    context = CallContext(broker, connection)
    response = dispatch_to_serializable(
        message,
        _LIBRARY_METHODS,
        context=context,
        deserializer=_identity,
        validator=_no_validation,
    )
    assert response is None or isinstance(response, dict)  # never a list: we split batches
    return context.outcome, response
