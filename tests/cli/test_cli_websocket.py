"""``pubsub-rpc serve --ws`` and ws:// URLs for publish and subscribe."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from cli_helpers import SCRIPT, run_cli, start_serve


def test_serve_ws_publish_and_subscribe(clients_file: Path) -> None:
    serve = start_serve(
        "--clients", str(clients_file), "--ws", "127.0.0.1:0", "--ws-origin", "http://app.example",
        env={"TEST_WATCHER_ID": "watch-s3cret"},
    )  # fmt: skip
    try:
        url = serve.url("ws")
        assert url.endswith("/")
        with urllib.request.urlopen(url.replace("ws://", "http://") + "client.js", timeout=10) as answer:
            assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
            assert b"export function connect" in answer.read()
        subscriber = subprocess.Popen(
            [str(SCRIPT), "subscribe", url, "news", "--count", "1", "--client-id", "watch-s3cret"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(100):  # until the subscription is in place
            published = run_cli("publish", url, "news", '{"n": 1}', "--client-id", "pub-s3cret")
            assert published.returncode == 0, published.stderr
            if published.stdout == "1\n":
                break
        else:
            raise AssertionError("the subscriber never subscribed")
        out, err = subscriber.communicate(timeout=30)
        assert (subscriber.returncode, out) == (0, '{"event_name":"news","value":{"n":1}}\n'), err
    finally:
        serve.process.terminate()
        serve.process.communicate(timeout=15)
    assert serve.process.returncode == 0


def test_ws_usage_errors(clients_file: Path) -> None:
    done = run_cli("publish", "ws://127.0.0.1:notaport/", "news", "1", "--client-id", "x")
    assert (done.returncode, done.stderr) == (
        2,
        "pubsub-rpc: 'ws://127.0.0.1:notaport/': the port must be a number from 0 to 65535\n",
    )
    done = run_cli(
        "serve", "--clients", str(clients_file), "--tcp", "127.0.0.1:0", "--ws-origin", "http://a",
        env={"TEST_WATCHER_ID": "watch-s3cret"},
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (2, "pubsub-rpc: --ws-origin goes with --ws\n")
