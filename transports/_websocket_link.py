"""``WebSocketLink``: one WebSocket connection as a pump ``Link`` of newline-framed JSON bytes.

Why a link and not a new pump or a new protocol object: the sans-IO core
(``ServerConnection``, ``ClientConnection``) speaks newline-delimited JSON
bytes, and the ``Pump`` and ``Client`` only need ``receive``/``send``/``aclose``
from a transport.  So a WebSocket connection plugs into the very same pump,
dispatch, fan-out, limits and shutdown as every byte stream once this link
translates between the two framings:

* in: each text message becomes the message's UTF-8 bytes plus ``\\n``, so the
  core's decoder sees exactly one frame per message;
* out: the core's output is whole newline-terminated frames (a frame never
  contains a raw newline, because JSON strings cannot), and each frame goes out
  as one text message.  ``data_to_send`` still hands over everything queued as
  one buffer; the WebSocket layer writes one message per frame.

A message-oriented link rather than a ``trio.abc.Stream`` facade: the stream
facade would have to invent ``receive_some`` chunking and lose the message
boundaries the link uses below; the link keeps them.

Message boundaries are kept, not just hoped for.  The core's decoder reads a
*stream*, so a message that is not one complete JSON text (``{"a":``, or one
starting ``Content-Length:``, which would switch the decoder to LSP framing)
would bleed into the next message.  Each message is first checked on its own
(``orjson.loads``, about half a microsecond for a typical request; failing
that, a throwaway ``FrameDecoder`` of the same size limit); one that does not
end cleanly on its own is replaced by a one-byte garbage frame, which the core
answers with the JSON-RPC parse error (-32700), and the connection carries on,
as it does for any bad frame on the other transports.  (The error's detail
then describes the substitute, not the message: a per-message entry point in
the core would fix that.)
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from pubsub_rpc import ConnectionClosedError, FrameDecoder, Framing, RemoteProtocolError

from ._errors import translate_io_errors

_log = logging.getLogger("pubsub_rpc.transports.websocket")

#: What a message that is not self-contained JSON is replaced by: not JSON, ends at its newline.
_NOT_ONE_JSON_TEXT: Final = b"!\n"
#: Close codes (RFC 6455, 7.4.1) that end a connection in order; others are failures.
_ORDERLY_CLOSE_CODES: Final = frozenset((1000, 1001, 1005))
#: A close frame's reason is at most 123 bytes of UTF-8.
_MAX_REASON_BYTES: Final = 123

#: RFC 6455 close codes this package sends.
NORMAL_CLOSURE: Final = 1000
GOING_AWAY: Final = 1001
UNSUPPORTED_DATA: Final = 1003
POLICY_VIOLATION: Final = 1008

BINARY_REFUSED: Final = (
    "Binary messages are not accepted: send each JSON-RPC message or batch as a text message."
)


def close_reason_text(reason: str) -> str:
    """``reason`` cut to what a close frame can carry (123 bytes, whole characters)."""
    data = reason.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return reason
    return data[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


def is_self_contained(data: bytes, max_frame_size: int) -> bool:
    """Whether ``data`` followed by a newline leaves a JSON-text decoder between frames.

    True for one JSON text (valid or not, too large or not: the core answers
    each kind), several complete ones, or only whitespace; False for a text
    cut short, or anything the decoder would take for ``Content-Length`` framing.
    """
    if len(data) <= max_frame_size:
        try:
            orjson.loads(data)  # the common case, at a fraction of a full probe's cost
        except orjson.JSONDecodeError:
            pass
        else:
            return True  # one JSON text (and none starts with "C")
    probe = FrameDecoder(max_frame_size=max_frame_size)
    try:
        probe.feed(data + b"\n")
        probe.feed_eof()
    except RemoteProtocolError:
        return False
    return probe.framing is not Framing.CONTENT_LENGTH


class WebSocketLink:
    """A pump ``Link`` over a ``trio_websocket.WebSocketConnection`` (either side).

    ``close_code``/``close_reason`` are what ``aclose`` sends; whoever decides
    why the connection ends sets them first (the server's connection does, on
    ``start_closing``).
    """

    __slots__ = ("close_code", "close_reason", "max_frame_size", "ws")

    def __init__(self, ws: WebSocketConnection, *, max_frame_size: int) -> None:
        self.ws = ws
        self.max_frame_size = max_frame_size
        self.close_code = NORMAL_CLOSURE
        self.close_reason: str | None = None

    def set_close(self, code: int, reason: str | None) -> None:
        """Choose the close frame ``aclose`` will send (the first choice wins)."""
        if self.close_code == NORMAL_CLOSURE and self.close_reason is None:
            self.close_code = code
            self.close_reason = None if reason is None else close_reason_text(reason)

    async def receive(self) -> bytes | None:
        """One message as one newline-terminated frame; ``None`` once the peer closed in order.

        A binary message ends the input too: the connection is then closed
        with 1003 (unsupported data) and ``BINARY_REFUSED`` as the reason.
        """
        try:
            with translate_io_errors("Receiving"):
                message = await self.ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
            if reason is None or reason.code in _ORDERLY_CLOSE_CODES:
                return None
            detail = f": {reason.reason}" if reason.reason else ""
            raise ConnectionClosedError(
                f"The WebSocket was closed with code {reason.code} ({reason.name}){detail}."
            ) from exc
        if isinstance(message, bytes):
            _log.debug("refusing a binary message of %d bytes", len(message))
            self.set_close(UNSUPPORTED_DATA, BINARY_REFUSED)
            return None
        data = message.encode()
        if is_self_contained(data, self.max_frame_size):
            return data + b"\n"
        _log.debug("a text message of %d bytes is not one complete JSON text", len(data))
        return _NOT_ONE_JSON_TEXT

    async def send(self, data: bytes) -> None:
        """Send each newline-terminated frame of ``data`` as one text message."""
        ws = self.ws
        try:
            with translate_io_errors("Sending"):
                for frame in data.split(b"\n"):
                    if frame:  # the piece after the last newline is empty
                        await ws.send_message(frame.decode())
        except ConnectionClosed as exc:
            raise ConnectionClosedError("Sending failed: the WebSocket is closed.") from exc

    async def aclose(self) -> None:
        """Send the close frame, wait a moment for the peer's, then close the socket."""
        # trio-websocket closes the underlying stream in a finally, even when
        # this times out or is cancelled; a failure leaves it closed too.
        with trio.move_on_after(1.0), suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.ws.aclose(self.close_code, self.close_reason)
