"""Server addresses as URLs: ``tcp://``, ``tls://`` and ``ws(s)://`` ``HOST:PORT``, ``unix:///path``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Scheme = Literal["tcp", "tls", "unix", "ws", "wss"]


class BadURLError(ValueError):
    """A server URL that cannot be used."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerURL:
    """A parsed server address."""

    scheme: Scheme
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme in ("ws", "wss"):
            return f"{self.scheme}://{host}:{self.port}{self.path}"
        return f"{self.scheme}://{host}:{self.port}"


def parse_url(text: str) -> ServerURL:
    """Parse a server URL, raising ``BadURLError`` with a message a person can act on."""
    parts = urlsplit(text)
    if parts.scheme == "unix":
        path = parts.path
        if parts.netloc or not path.startswith("/"):
            raise BadURLError(f"{text!r}: a unix URL needs an absolute path, as in unix:///run/app.sock")
        return ServerURL(scheme="unix", path=path)
    if parts.scheme in ("tcp", "tls"):
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise BadURLError(f"{text!r}: expected {parts.scheme}://HOST:PORT")
        return ServerURL(scheme=parts.scheme, host=parts.hostname, port=port)  # type: ignore[arg-type]
    if parts.scheme in ("ws", "wss"):
        from .websocket import split_url

        try:
            host, port, resource, _ = split_url(text)
        except ValueError as exc:
            raise BadURLError(str(exc)) from None
        return ServerURL(scheme=parts.scheme, host=host, port=port, path=resource)  # type: ignore[arg-type]
    raise BadURLError(f"{text!r}: the scheme must be tcp://, tls://, unix://, ws:// or wss://")


def parse_host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:7700`` for IPv6) as given to ``--tcp``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise BadURLError(f"{text!r}: expected HOST:PORT, as in 127.0.0.1:7700")
    return host.strip("[]"), int(port_text)
