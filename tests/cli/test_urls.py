"""Server URLs and HOST:PORT arguments."""

from __future__ import annotations

import pytest

from transports._urls import BadURLError, ServerURL, parse_host_port, parse_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp://127.0.0.1:7700", ServerURL(scheme="tcp", host="127.0.0.1", port=7700)),
        ("tls://example.org:443", ServerURL(scheme="tls", host="example.org", port=443)),
        ("tcp://[::1]:9", ServerURL(scheme="tcp", host="::1", port=9)),
        ("unix:///run/app.sock", ServerURL(scheme="unix", path="/run/app.sock")),
    ],
)
def test_parses_and_prints_back(text: str, expected: ServerURL) -> None:
    assert parse_url(text) == expected
    assert str(parse_url(text)) == text


@pytest.mark.parametrize(
    "text",
    ["http://x:1", "tcp://host", "tcp://:80", "tcp://h:99999", "unix://relative.sock", "unix:rel", "x"],
)
def test_rejects_with_a_usable_message(text: str) -> None:
    with pytest.raises(BadURLError, match=r"tcp://|unix://"):
        parse_url(text)


def test_host_port() -> None:
    assert parse_host_port("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_host_port("[::1]:7700") == ("::1", 7700)
    for bad in ("7700", "host:", ":80", "h:70000", "h:x"):
        with pytest.raises(BadURLError):
            parse_host_port(bad)
