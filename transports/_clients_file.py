"""Reading the ``--clients`` TOML file of ``pubsub-rpc serve``.

One ``[[client]]`` table per client::

    [[client]]
    id_env = "APP_PUBLISHER_ID"     # or: id = "s3cret" (keep the file private)
    can_subscribe = false

    [[client]]
    id_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    can_publish = false
    can_inspect = true              # may read the server's counters (``stats``)

``id_sha256`` is the SHA-256 of the id's UTF-8 bytes in hex (``printf %s ID |
sha256sum``): the file then holds no credential at all.  Give exactly one of
``id``, ``id_env`` and ``id_sha256`` per client.

``publish_allow``, ``publish_deny``, ``subscribe_allow`` and ``subscribe_deny``
are arrays of event-name patterns (``"orders.>"``, ``"user.*"``) that narrow
what the client may publish and subscribe to; deny wins (see ``ClientInfo``).

Every problem becomes one ``ClientsFileError`` whose text names the file and
the problem, and never contains a client id: ids are secrets.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pubsub_rpc import ClientInfo, Pattern, PatternError

_ID_KEYS: Final = ("id", "id_env", "id_sha256")
_FLAGS: Final = {"can_publish": True, "can_subscribe": True, "can_inspect": False}
_RULE_KEYS: Final = ("publish_allow", "publish_deny", "subscribe_allow", "subscribe_deny")
_KEYS: Final = frozenset((*_ID_KEYS, *_FLAGS, *_RULE_KEYS))
_HEX: Final = frozenset("0123456789abcdefABCDEF")


class ClientsFileError(Exception):
    """The clients file is missing, unreadable or malformed."""


def load_clients(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> list[ClientInfo]:
    """Parse a clients file into ``ClientInfo`` records, or raise ``ClientsFileError``."""
    env = os.environ if environ is None else environ
    name = os.fspath(path)
    try:
        document = tomllib.loads(Path(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientsFileError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientsFileError(f"{name}: cannot read it ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClientsFileError(f"{name}: not valid TOML ({exc})") from None
    unknown_top = set(document) - {"client"}
    if unknown_top:
        raise ClientsFileError(f"{name}: unknown top-level key {sorted(unknown_top)[0]!r}")
    tables = document.get("client", [])
    if not isinstance(tables, list) or not tables:
        raise ClientsFileError(f"{name}: expected at least one [[client]] table")
    clients: list[ClientInfo] = []
    seen: set[str] = set()
    for number, table in enumerate(tables, start=1):
        info = _client(name, number, table, env)
        digest = info.id_sha256 or hashlib.sha256(info.id.encode("utf-8", "surrogatepass")).hexdigest()
        if digest in seen:
            raise ClientsFileError(f"{name}: client #{number} repeats the id of an earlier client")
        seen.add(digest)
        clients.append(info)
    return clients


def _client(name: str, number: int, table: Any, env: Mapping[str, str]) -> ClientInfo:
    where = f"{name}: client #{number}"
    if not isinstance(table, dict):
        raise ClientsFileError(f"{where} is not a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ClientsFileError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if sum(key in table for key in _ID_KEYS) != 1:
        raise ClientsFileError(f"{where}: give exactly one of 'id', 'id_env' and 'id_sha256'")
    flags: dict[str, Any] = {}
    for key, default in _FLAGS.items():
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise ClientsFileError(f"{where}: {key!r} must be true or false")
        flags[key] = value
    rules = _rules(where, table)
    if "id_sha256" in table:
        digest = table["id_sha256"]
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
            raise ClientsFileError(f"{where}: 'id_sha256' must be 64 hexadecimal digits")
        return ClientInfo.from_sha256(digest, **flags, **rules)
    if "id" in table:
        client_id = table["id"]
        if not isinstance(client_id, str) or not client_id:
            raise ClientsFileError(f"{where}: 'id' must be a non-empty string")
    else:
        variable = table["id_env"]
        if not isinstance(variable, str) or not variable:
            raise ClientsFileError(f"{where}: 'id_env' must name an environment variable")
        client_id = env.get(variable, "")
        if not client_id:
            raise ClientsFileError(f"{where}: environment variable {variable} is unset or empty")
    return ClientInfo(client_id, **flags, **rules)


def _rules(where: str, table: dict[str, Any]) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for key in _RULE_KEYS:
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ClientsFileError(f"{where}: {key!r} must be an array of strings")
        for item in value:
            try:
                Pattern.parse(item)
            except PatternError as exc:
                raise ClientsFileError(f"{where}: {key!r}: {exc}") from None
        rules[key] = tuple(value)
    return rules
