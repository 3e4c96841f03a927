"""pubsub_rpc: a sans-IO publish/subscribe protocol spoken as JSON-RPC 2.0.

This package contains no networking code at all.  It turns bytes received on
a connection into protocol actions and tells you which bytes to send back; the
``transports`` package binds it to trio (TCP, Unix sockets, stdio, in-process).

Server side: a ``Broker`` (client registry, subscriptions, fan-out) and one
``ServerConnection`` per connected peer.  Client side: ``ClientConnection``.
The in-process flavour (Python objects instead of bytes) has
``InProcessConnection`` and ``InProcessClientConnection``.
It never imports trio: tests/test_layering.py holds it to that.
"""

from ._broker import ADHOC_PREFIX, DEFAULT_MAX_SUBSCRIPTIONS, Backplane, Broker, Subscriber, Subscription
from ._client import (
    ClientConnection,
    ClientEvent,
    EventReceived,
    PingRequested,
    RequestFailed,
    RequestSucceeded,
    ServerClosing,
)
from ._errors import (
    ConnectionClosedError,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    PubSubError,
    RemoteProtocolError,
    RequestError,
    RequestTimeoutError,
)
from ._frames import DEFAULT_MAX_FRAME_SIZE, BadFrame, BadFrameReason, Framing, encode
from ._framing import FrameDecoder
from ._inprocess import DEFAULT_MAX_OUTBOUND_MESSAGES, InProcessConnection
from ._inprocess_client import InProcessClientConnection
from ._messages import (
    NO_ID,
    ClientInfo,
    Closing,
    Dialect,
    Event,
    JSONValue,
    Ping,
    PingResult,
    Publish,
    PublishResult,
    Request,
    Result,
    StatsResult,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
    UnsubscribeResult,
)
from ._patterns import Pattern, PatternError
from ._server import DEFAULT_MAX_BATCH, DEFAULT_MAX_OUTBOUND, ServerConnection
from ._wire import EncodedEvent

__all__ = [
    "ADHOC_PREFIX",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_OUTBOUND",
    "DEFAULT_MAX_OUTBOUND_MESSAGES",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "NO_ID",
    "Backplane",
    "BadFrame",
    "BadFrameReason",
    "Broker",
    "ClientConnection",
    "ClientEvent",
    "ClientInfo",
    "Closing",
    "ConnectionClosedError",
    "Dialect",
    "EncodedEvent",
    "ErrorCode",
    "Event",
    "EventReceived",
    "FrameDecoder",
    "Framing",
    "InProcessClientConnection",
    "InProcessConnection",
    "JSONValue",
    "LocalProtocolError",
    "Pattern",
    "PatternError",
    "Ping",
    "PingRequested",
    "PingResult",
    "ProtocolError",
    "PubSubError",
    "Publish",
    "PublishResult",
    "RemoteProtocolError",
    "Request",
    "RequestError",
    "RequestFailed",
    "RequestSucceeded",
    "RequestTimeoutError",
    "Result",
    "ServerClosing",
    "ServerConnection",
    "StatsResult",
    "Subscribe",
    "SubscribeResult",
    "Subscriber",
    "Subscription",
    "Unsubscribe",
    "UnsubscribeResult",
    "encode",
]
