"""The JSON-RPC envelope of a request: its checks and their exact error texts.

The fast path in ``_server`` accepts the common envelope with a few cheap
tests; anything else is checked here, member by member, in the order
spec/README.md (section 4.2) gives, so every malformed request gets the
precise complaint.
"""

from __future__ import annotations

from typing import Any, Final

from ._errors import ErrorCode, describe
from ._messages import NO_ID, RequestId
from ._wire import error_response

#: The members a request object may have.
ENVELOPE_KEYS: Final = frozenset(("jsonrpc", "method", "params", "id"))
#: Params of a request that has none (shared, never modified).
EMPTY_PARAMS: Final[dict[str, Any]] = {}


class InvalidRequest(Exception):
    """An envelope error: answered with -32600 and the id, if one was readable."""

    def __init__(self, message: str, request_id: RequestId = NO_ID) -> None:
        super().__init__(message)
        self.request_id = request_id


def check_envelope(message: dict[str, Any]) -> RequestId:
    """Validate the JSON-RPC envelope; return the id (or NO_ID)."""
    request_id: RequestId = message.get("id", NO_ID)
    if request_id is not NO_ID and (type(request_id) not in (str, int, float) and request_id is not None):
        raise InvalidRequest(f"Request id must be a string, number, or null, but was {describe(request_id)}.")
    if "jsonrpc" not in message:
        raise InvalidRequest('Request must contain a "jsonrpc" key.', request_id)
    if message["jsonrpc"] != "2.0":
        raise InvalidRequest(
            f'Invalid JSON-RPC version {describe(message["jsonrpc"])}, expected "2.0".', request_id
        )
    if "method" not in message:
        raise InvalidRequest('Request must contain a "method" key.', request_id)
    if type(message["method"]) is not str:
        raise InvalidRequest(
            f"Request method must be a string, but was {describe(message['method'])}.", request_id
        )
    params = message.get("params", EMPTY_PARAMS)
    if type(params) is not dict and type(params) is not list:
        raise InvalidRequest(
            f"Request params must be an Array or an Object, but was {describe(params)}.", request_id
        )
    return request_id


def bad_request_id(method: str, request_id: object) -> dict[str, Any]:
    """The answer to a pub_sub ``request_id`` that is not a string."""
    # Not a string, so no notification can be named after it: answer as plain
    # JSON-RPC with a null id, the only address left.
    return error_response(
        NO_ID,
        ErrorCode.INVALID_PARAMS,
        f'Parameter "request_id" for method "{method}" must be a string, but was {describe(request_id)}.',
    )
