"""Running the installed ``pubsub-rpc`` console script from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The console script installed next to this interpreter (as README's set-up makes it).
SCRIPT = Path(sys.executable).with_name("pubsub-rpc")


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``pubsub-rpc ARGS`` to completion and return the CompletedProcess."""
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


class ServeProcess:
    """A running ``pubsub-rpc serve`` and the URLs it announced."""

    def __init__(self, process: subprocess.Popen[str], urls: list[str]) -> None:
        self.process = process
        self.urls = urls

    def url(self, scheme: str) -> str:
        """The first announced URL with that scheme."""
        return next(url for url in self.urls if url.startswith(scheme + "://"))


def start_serve(*args: str, env: dict[str, str] | None = None, listeners: int = 1) -> ServeProcess:
    """Start ``pubsub-rpc serve ARGS`` and wait for its ``listening on`` lines."""
    process = subprocess.Popen(
        [str(SCRIPT), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    urls = []
    assert process.stdout is not None
    while len(urls) < listeners:
        line = process.stdout.readline()  # the server flushes each line; EOF means it died
        if not line:
            process.wait(timeout=10)
            raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")
        assert line.startswith("listening on "), line
        urls.append(line.removeprefix("listening on ").strip())
    return ServeProcess(process, urls)


@contextmanager
def serving(
    clients: Path,
    directory: Path,
    *,
    metrics: bool = False,
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (),
) -> Iterator[ServeProcess]:
    """``pubsub-rpc serve --clients CLIENTS`` on a free TCP port and ``DIRECTORY/app.sock``; SIGTERM after.

    With ``metrics`` it also serves metrics on a free port.  Its stderr, read
    once it has stopped, must contain none of ``secrets`` (client ids are
    never logged).
    """
    args = ["--clients", str(clients), "--tcp", "127.0.0.1:0", "--unix", str(directory / "app.sock")]
    if metrics:
        args += ["--metrics", "127.0.0.1:0"]
    serve = start_serve(*args, env=env, listeners=3 if metrics else 2)
    try:
        yield serve
    finally:
        if serve.process.poll() is None:
            serve.process.terminate()
        _, err = serve.process.communicate(timeout=15)  # also closes the pipes
        assert not any(secret in err for secret in secrets)
