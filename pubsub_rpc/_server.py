"""One server-side byte-stream connection: bytes in, answers and events out.

``ServerConnection`` is what a transport drives: it feeds received bytes with
``receive_data``, takes what to write with ``data_to_send`` (everything queued
since the last call, as one ``bytes`` so the transport makes one write), and
calls ``close()`` when the stream ends.  Fan-out queues events on *other*
connections; ``on_output`` tells the transport that a connection that had
nothing to send now has something.

Every message that can be answered is answered.  The dialect is chosen per
message: a request with an ``id`` gets a JSON-RPC response; a notification
whose params carry a string ``request_id`` gets the original's answer
notification; a plain notification gets no answer.

Nothing a peer sends makes ``receive_data`` raise: damage is answered with an
error, and a fault of ours while handling one message is answered with
``INTERNAL_ERROR`` and counted in ``internal_errors`` (a bug to report).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Final

import orjson

from ._broker import Broker, Subscription
from ._dispatch import OPERATIONS, UNANSWERED_OPERATIONS, Operation, dispatch_general
from ._envelope import EMPTY_PARAMS, ENVELOPE_KEYS, InvalidRequest, bad_request_id, check_envelope
from ._errors import ErrorCode, RemoteProtocolError, RequestError, describe
from ._frames import DEFAULT_MAX_FRAME_SIZE, BadFrame, BadFrameReason, Framing, encode
from ._framing import FrameDecoder
from ._messages import NO_ID, RequestId
from ._wire import (
    EncodedEvent,
    closing_notification,
    error_response,
    pub_sub_answer,
    pub_sub_failure,
    success_response,
)

#: Default bound on bytes queued for one connection before it is a slow consumer.
DEFAULT_MAX_OUTBOUND: Final = 8 * 1024 * 1024
#: Default bound on the members of one batch.
DEFAULT_MAX_BATCH: Final = 100

_INTERNAL_ERROR_TEXT: Final = "Internal error."
_log = logging.getLogger("pubsub_rpc.server")
_EMPTY: Final = EMPTY_PARAMS


def log_fault(exc: Exception) -> None:
    """Log a fault of ours while handling one request: where it happened, nothing more.

    Never the exception's text or the request: either may hold a client id.
    """
    where = traceback.extract_tb(exc.__traceback__)[-1]
    _log.error(
        "internal error while handling a request: %s at %s:%s",
        type(exc).__name__,
        where.filename,
        where.lineno,
    )


class ServerConnection:
    """The protocol state of one connection to a ``Broker``."""

    def __init__(
        self,
        broker: Broker,
        *,
        trusted: bool = False,
        on_output: Callable[[], None] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_outbound: int = DEFAULT_MAX_OUTBOUND,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.broker = broker
        self.trusted = trusted
        self.on_output = on_output
        self.max_outbound = max_outbound
        self.max_batch = max_batch
        self._decoder = FrameDecoder(max_frame_size=max_frame_size, exact_integers=True)
        self._content_length = False  # whether the peer (and so this side) uses Content-Length
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._closing = False
        self._closed = False
        #: Why the server decided to close this connection, once it has.
        self.close_reason: ErrorCode | int | None = None
        #: Whether the peer has sent a valid request (one that passed the
        #: envelope checks); a transport's idle timeout closes a connection
        #: that has not.
        self.active = False
        #: Messages whose handling failed inside the server (answered with
        #: INTERNAL_ERROR); always 0 unless there is a bug.
        self.internal_errors = 0

    # -- what the transport calls -----------------------------------------

    @property
    def framing(self) -> Framing:
        """The framing this connection writes: the peer's, newline until known."""
        return self._decoder.framing or Framing.NEWLINE

    @property
    def closing(self) -> bool:
        """The server wants this connection closed once its output is written."""
        return self._closing

    @property
    def outbound_bytes(self) -> int:
        """Bytes queued and not yet taken by ``data_to_send``."""
        return self._out_bytes

    @property
    def buffered_input(self) -> int:
        """Bytes received and held back waiting for the rest of a frame (bounded by the frame limit)."""
        return self._decoder.buffered

    def receive_data(self, data: bytes) -> None:
        """Process bytes from the peer; answers and events are queued for sending."""
        if self._closing:
            return
        self.broker.bytes_received += len(data)
        try:
            frames = self._decoder.feed(data)
        except RemoteProtocolError as exc:
            self._content_length = self._decoder.framing is Framing.CONTENT_LENGTH
            self._fatal(exc)
            return
        # Known from the first byte on; kept in a plain attribute because every
        # answer and every event asks.
        self._content_length = self._decoder.framing is Framing.CONTENT_LENGTH
        self._handle_frames(frames)
        if self._decoder.error is not None and not self._closing:
            # The frames before the damage were answered; now the stream ends.
            self._fatal(RemoteProtocolError(self._decoder.error))

    def receive_eof(self) -> None:
        """The peer closed its sending side; raises if it stopped mid-frame."""
        if self._closing:
            return
        try:
            frames = self._decoder.feed_eof()
        finally:
            self._closing = True
            # The peer is gone for requests, and so for events: its
            # subscriptions stop counting now, not when the transport gets
            # round to close().  Its last frames are still answered below.
            self.broker.drop_connection(self)
        self._handle_frames(frames)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one buffer."""
        out = self._out
        if not out:
            return b""
        self.broker.bytes_sent += self._out_bytes
        self._out = []
        self._out_bytes = 0
        return b"".join(out)

    def close(self) -> None:
        """The stream is gone: drop this connection's subscriptions and identity."""
        if not self._closed:
            self._closed = True
            self._closing = True
            self.broker.drop_connection(self)

    def start_closing(self, code: ErrorCode | int, message: str) -> None:
        """Queue the ``closing`` notification and accept nothing more."""
        if self._closing:
            return
        self._write(closing_notification(code, message))
        self._closing = True
        self.close_reason = code
        # Subscriptions go now, so publishes stop counting this connection.
        self.broker.drop_connection(self)

    # -- fan-out -----------------------------------------------------------

    def push_event(self, event: EncodedEvent, subscription: Subscription) -> bool:
        """Queue one event (called by the broker during a publish); False once closing."""
        if self._closing:
            return False  # nothing may follow the closing notification
        out = self._out
        was_empty = not out
        if self._content_length:
            tail = subscription.tail
            out.append(event.content_length_header(len(tail)))
        else:
            tail = subscription.tail_newline
        # The head is shared by every subscriber: the value was serialised once.
        out.append(event.head)
        out.append(tail)
        self._out_bytes += len(event.head) + len(tail)
        if was_empty and self.on_output is not None:
            self.on_output()
        if self._out_bytes > self.max_outbound:
            self.start_closing(
                ErrorCode.SLOW_CONSUMER,
                f"Slow consumer: more than {self.max_outbound} bytes of events were waiting to be read.",
            )
        return True

    # -- internals ---------------------------------------------------------

    def _write(self, message: Any) -> None:
        out = self._out
        was_empty = not out
        if self._content_length:
            frame = encode(message, Framing.CONTENT_LENGTH)
        else:
            # encode()'s newline case, inline: see there why it concatenates.
            frame = orjson.dumps(message) + b"\n"
        out.append(frame)
        self._out_bytes += len(frame)
        if was_empty and self.on_output is not None:
            self.on_output()

    def _fatal(self, exc: RemoteProtocolError) -> None:
        self._write(error_response(NO_ID, exc.code, exc.message))
        self.start_closing(exc.code, "The connection's framing is broken beyond recovery.")

    def _handle_frames(self, frames: list[object]) -> None:
        for frame in frames:
            answer: list[Any] | dict[str, Any] | None
            if type(frame) is dict:
                try:
                    answer = self._handle_message(frame)
                except Exception as exc:  # a bug of ours: answer it, keep the connection
                    answer = self._internal_error(frame, exc)
            elif type(frame) is list:
                answer = self._handle_batch(frame)
            elif isinstance(frame, BadFrame):
                answer = self._refuse(self._bad_frame(frame))
            else:
                answer = self._refuse(
                    error_response(NO_ID, ErrorCode.INVALID_REQUEST, "Request must be an Array or an Object.")
                )
            if answer is not None:
                self._write(answer)
            if self._closing:
                return

    def _refuse(self, answer: dict[str, Any]) -> dict[str, Any]:
        """Count an error answer (operators see refused requests in ``stats``)."""
        self.broker.requests_refused += 1
        return answer

    @staticmethod
    def _bad_frame(frame: BadFrame) -> dict[str, Any]:
        if frame.reason is BadFrameReason.TOO_LARGE:
            return error_response(NO_ID, ErrorCode.FRAME_TOO_LARGE, f"Frame too large: {frame.detail}.")
        return error_response(NO_ID, ErrorCode.PARSE_ERROR, f"Invalid JSON: {frame.detail}")

    def _handle_batch(self, batch: list[Any]) -> list[Any] | dict[str, Any] | None:
        if not batch:
            return error_response(
                NO_ID, ErrorCode.INVALID_REQUEST, "A batch must contain at least one request."
            )
        if len(batch) > self.max_batch:
            return error_response(
                NO_ID,
                ErrorCode.LIMIT_EXCEEDED,
                f"A batch may contain at most {self.max_batch} requests.",
            )
        responses = []
        for member in batch:
            if type(member) is dict:
                try:
                    answer = self._handle_message(member)
                except Exception as exc:  # a bug of ours: answer it, keep the connection
                    answer = self._internal_error(member, exc)
            else:
                answer = error_response(
                    NO_ID,
                    ErrorCode.INVALID_REQUEST,
                    f"A batch member must be an Object, but was {describe(member)}.",
                )
            if answer is None:
                continue
            if "method" in answer:
                # A pub_sub answer is a notification, which a JSON-RPC batch
                # response may not contain: it goes out on its own, in order.
                self._write(answer)
            else:
                responses.append(answer)
        return responses or None

    def _internal_error(self, message: dict[str, Any], exc: Exception) -> dict[str, Any] | None:
        """Answer a message whose handling failed inside the server, in its dialect."""
        self.internal_errors += 1
        log_fault(exc)
        request_id = message.get("id", NO_ID)
        if request_id is None or type(request_id) in (str, int, float):
            return error_response(request_id, ErrorCode.INTERNAL_ERROR, _INTERNAL_ERROR_TEXT)
        params = message.get("params")
        pub_sub_id = params.get("request_id") if type(params) is dict else None
        if request_id is NO_ID and type(pub_sub_id) is str:
            return pub_sub_failure(pub_sub_id, ErrorCode.INTERNAL_ERROR, _INTERNAL_ERROR_TEXT)
        if request_id is NO_ID:
            return None  # a plain notification is never answered
        return error_response(NO_ID, ErrorCode.INTERNAL_ERROR, _INTERNAL_ERROR_TEXT)

    def _handle_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Handle one request object; return its answer, if it gets one."""
        self.broker.requests += 1
        params = message.get("params", _EMPTY)
        method = message.get("method")
        # Fast path: the shape every well-behaved client sends.
        if (
            type(params) is dict
            and type(method) is str  # before the lookup: a list or dict is unhashable
            and (operation := OPERATIONS.get(method)) is not None
            and message.get("jsonrpc") == "2.0"
            # Three members, params among them, are exactly a notification's
            # envelope: cheaper to know than the key-set comparison.
            and ((len(message) == 3 and params is not _EMPTY) or message.keys() <= ENVELOPE_KEYS)
        ):
            self.active = True
            request_id: RequestId = message.get("id", NO_ID)
            if request_id is NO_ID:
                pub_sub_id = params.get("request_id", NO_ID)
                if pub_sub_id is NO_ID:
                    # A plain notification: fire and forget, errors are not
                    # answered.  (Inline, and try/except rather than
                    # contextlib.suppress: this is the hottest path.)
                    try:
                        UNANSWERED_OPERATIONS.get(method, operation)(self.broker, self, params)
                    except RequestError:
                        self.broker.requests_refused += 1
                    return None
                if type(pub_sub_id) is not str:
                    return self._refuse(bad_request_id(method, pub_sub_id))
                return self._pub_sub_request(method, operation, params, pub_sub_id)
            if type(request_id) in (str, int) or request_id is None:
                try:
                    return success_response(request_id, operation(self.broker, self, params))
                except RequestError as exc:
                    return self._refuse(error_response(request_id, exc.code, exc.message))
        return self._handle_general(message)

    def _pub_sub_request(
        self, method: str, operation: Operation, params: dict[str, Any], pub_sub_id: str
    ) -> dict[str, Any]:
        """Run a request of the original's dialect; its answer is a notification named ``pub_sub_id``."""
        try:
            result = operation(self.broker, self, params)
        except RequestError as exc:
            return self._refuse(pub_sub_failure(pub_sub_id, exc.code, exc.message))
        return pub_sub_answer(pub_sub_id, method, result)

    def _handle_general(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Anything the fast path declined: check the envelope, then let jsonrpcserver dispatch."""
        try:
            request_id = check_envelope(message)
        except InvalidRequest as exc:
            return self._refuse(error_response(exc.request_id, ErrorCode.INVALID_REQUEST, str(exc)))
        self.active = True
        method: str = message["method"]
        params = message.get("params", _EMPTY)
        pub_sub_id = params.get("request_id", NO_ID) if type(params) is dict else NO_ID
        if request_id is NO_ID and pub_sub_id is not NO_ID:
            if type(pub_sub_id) is not str:
                return self._refuse(bad_request_id(method, pub_sub_id))
            operation = OPERATIONS.get(method)
            if operation is not None:
                # Only extra envelope members kept it off the fast path; they are ignored.
                return self._pub_sub_request(method, operation, params, pub_sub_id)
        outcome, response = dispatch_general(self.broker, self, message)
        if not isinstance(outcome, dict):
            self.broker.requests_refused += 1  # refused by an operation, or no handler ran
        if request_id is NO_ID:
            if type(pub_sub_id) is str:
                if outcome is None:
                    return pub_sub_failure(
                        pub_sub_id, ErrorCode.METHOD_NOT_FOUND, f'Unknown method "{method}".'
                    )
                if isinstance(outcome, RequestError):
                    return pub_sub_failure(pub_sub_id, outcome.code, outcome.message)
                return pub_sub_answer(pub_sub_id, method, outcome)
            return None
        if isinstance(outcome, RequestError):
            return error_response(request_id, outcome.code, outcome.message)
        if outcome is not None:
            return success_response(request_id, outcome)
        # No handler ran: the library refused the method or the params binding.
        assert response is not None
        error = response["error"]
        if error["code"] == ErrorCode.METHOD_NOT_FOUND:
            return error_response(request_id, ErrorCode.METHOD_NOT_FOUND, f'Unknown method "{method}".')
        return error_response(
            request_id,
            error["code"],
            f'Invalid parameters for method "{method}".',
            error.get("data", NO_ID),
        )
