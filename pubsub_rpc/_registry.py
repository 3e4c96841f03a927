"""Who a request acts as: registered clients and the ad-hoc identities of trusted connections.

Client ids are secrets.  They are looked up in a dict (a keyed SipHash of the
presented string, then one comparison only on a hash match), so how long a
failed lookup takes says nothing about how much of a registered id a guess
got right.  A client registered by digest (``ClientInfo.from_sha256``) is
found by hashing the presented id with SHA-256 and looking the digest up the
same way; the server never holds such an id in plain text until its owner
presents it.

Every rejection text is the original ``pub_sub``'s, character for character.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Hashable
from typing import Final, Protocol

from ._errors import ErrorCode, LocalProtocolError, RequestError
from ._messages import ClientInfo, is_sha256_hex

#: Prefix of the identities minted for trusted connections that send no id.
ADHOC_PREFIX: Final = "pub_sub::adhoc_client"


class Party(Hashable, Protocol):
    """What the registry needs from a connection: whether it is trusted."""

    #: Whether requests without a client id get this connection's ad-hoc identity.
    trusted: bool


def _unrecognized(client_id: str | None) -> RequestError:
    shown = "<missing>" if client_id is None else client_id
    return RequestError(f'Unrecognized client ID "{shown}".', code=ErrorCode.UNKNOWN_CLIENT)


def _sha256(client_id: str) -> bytes:
    # surrogatepass: a str from a decoder never holds lone surrogates, but a
    # Python caller's might; hashing must not raise either way.
    return hashlib.sha256(client_id.encode("utf-8", "surrogatepass")).digest()


class ClientRegistry:
    """Registered clients (closed once started) and one ad-hoc identity per trusted connection."""

    def __init__(self) -> None:
        #: Registered ids, plus ids registered by digest once their owner has
        #: presented them (so that later lookups are one dict probe).  Read
        #: only, outside this class: the broker's publish path probes it
        #: directly before calling ``resolve``.
        self.known: dict[str, ClientInfo] = {}
        # SHA-256 of the id -> record, for clients registered by digest only.
        self._digests: dict[bytes, ClientInfo] = {}
        # SHA-256 of every registered id, to refuse duplicates across both kinds.
        self._registered: set[bytes] = set()
        # Ad-hoc identities belong to exactly one trusted connection and die with it.
        self._adhoc_by_connection: dict[Party, ClientInfo] = {}
        self._adhoc_owner: dict[str, Party] = {}
        self._started = False

    @property
    def started(self) -> bool:
        """Whether ``start()`` was called; registration is closed from then on."""
        return self._started

    @property
    def registered(self) -> int:
        """Number of registered clients."""
        return len(self._registered)

    def register(self, info: ClientInfo) -> None:
        """Add a client that may connect; only before ``start()``."""
        if self._started:
            raise LocalProtocolError(
                "You cannot register new clients after the server has started listening."
            )
        if info.id_sha256 is not None:
            if info.id:
                raise LocalProtocolError("A client is registered by its ID or by its SHA-256, not both.")
            if not is_sha256_hex(info.id_sha256):
                raise LocalProtocolError("A client's id_sha256 must be 64 hexadecimal digits.")
            digest = bytes.fromhex(info.id_sha256)
        elif not isinstance(info.id, str) or not info.id:
            # The original accepted "" and then never let it authenticate.
            raise LocalProtocolError("A client ID must be a non-empty string.")
        else:
            digest = _sha256(info.id)
        if digest in self._registered:
            raise LocalProtocolError("A client with the same ID is already registered.")
        self._registered.add(digest)
        if info.id_sha256 is not None:
            self._digests[digest] = info
        else:
            self.known[info.id] = info

    def start(self) -> None:
        """Close registration; the server is about to accept requests."""
        self._started = True

    def lookup(self, client_id: str) -> ClientInfo | None:
        """The registered client with this id, if any (by id, or by its digest)."""
        info = self.known.get(client_id)
        if info is None and self._digests:
            hashed = self._digests.get(_sha256(client_id))
            if hashed is not None:
                info = dataclasses.replace(hashed, id=client_id, id_sha256=None)
                self.known[client_id] = info
        return info

    def resolve(self, connection: Party, client_id: str | None) -> ClientInfo:
        """Find who a request acts as, or raise the original's error."""
        if client_id:
            info = self.known.get(client_id)
            if info is not None:
                return info
            info = self.lookup(client_id)
            if info is not None:
                return info
            if self._adhoc_owner.get(client_id) is connection:
                return self._adhoc_by_connection[connection]
            raise _unrecognized(client_id)
        if not connection.trusted:
            raise _unrecognized(None)
        # One identity per trusted connection (the original minted one per request).
        adhoc = self._adhoc_by_connection.get(connection)
        if adhoc is None:
            # Trusted connections are the operator's own: full rights, as in the original.
            adhoc = ClientInfo(f"{ADHOC_PREFIX}::{secrets.token_hex(16)}", can_inspect=True)
            self._adhoc_by_connection[connection] = adhoc
            self._adhoc_owner[adhoc.id] = connection
        return adhoc

    def owner_id(self, connection: Party, client_id: str | None) -> str | None:
        """Whose subscriptions an unsubscribe may cancel (``None``: nobody's).

        A registered id, or this connection's own ad-hoc identity: an ad-hoc id
        is a credential of one connection only, even if another one learns it.
        """
        adhoc = self._adhoc_by_connection.get(connection)
        if not client_id:
            return adhoc.id if adhoc is not None else None
        if self.lookup(client_id) is not None or (adhoc is not None and adhoc.id == client_id):
            return client_id
        return None

    def has_adhoc(self, connection: Party) -> bool:
        """Whether this connection has been given an ad-hoc identity."""
        return connection in self._adhoc_by_connection

    def adhoc_connections(self) -> set[Party]:
        """The connections that hold an ad-hoc identity."""
        return set(self._adhoc_by_connection)

    def drop(self, connection: Party) -> None:
        """Forget a closed connection's ad-hoc identity, if it had one."""
        adhoc = self._adhoc_by_connection.pop(connection, None)
        if adhoc is not None:
            del self._adhoc_owner[adhoc.id]

    def check_consistency(self) -> None:
        """Raise ``AssertionError`` if the ad-hoc indexes disagree."""
        assert len(self._adhoc_owner) == len(self._adhoc_by_connection), "ad-hoc indexes disagree"
        for connection, adhoc in self._adhoc_by_connection.items():
            assert self._adhoc_owner[adhoc.id] is connection, "ad-hoc owner mismatch"
