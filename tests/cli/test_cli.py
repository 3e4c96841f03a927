"""The ``pubsub-rpc`` command, run as a user runs it: the installed script in a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from cli_helpers import SCRIPT, ServeProcess, run_cli, start_serve

WATCHER = {"PUBSUB_RPC_CLIENT_ID": "watch-s3cret"}


def subscribe_process(url: str, *events: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), "subscribe", url, *events, "--count", str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, **WATCHER},
    )


def wait_subscribed(server: ServeProcess, event: str) -> None:
    """Publish probes until one reaches a listener: the subscriber is then ready."""
    for _ in range(100):
        done = run_cli("publish", server.url("tcp"), event, '"probe"', "--client-id", "pub-s3cret")
        assert done.returncode == 0, done.stderr
        if done.stdout.strip() != "0":
            return
    raise AssertionError("the subscriber never subscribed")


def test_publish_and_subscribe_across_tcp_and_unix(server: ServeProcess) -> None:
    subscriber = subscribe_process(server.url("unix"), "ready", "greet", "other", count=3)
    wait_subscribed(server, "ready")
    published = run_cli("publish", server.url("tcp"), "greet", '{"hi": 1}', "--client-id", "pub-s3cret")
    assert (published.returncode, published.stdout) == (0, "1\n")
    from_stdin = run_cli(
        "publish", server.url("tcp"), "other", env={"PUBSUB_RPC_CLIENT_ID": "pub-s3cret"}, stdin="[1, 2]"
    )
    assert (from_stdin.returncode, from_stdin.stdout) == (0, "1\n")
    out, err = subscriber.communicate(timeout=20)
    assert subscriber.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event_name": "ready", "value": "probe"},
        {"event_name": "greet", "value": {"hi": 1}},
        {"event_name": "other", "value": [1, 2]},
    ]


@pytest.mark.parametrize(
    ("args", "env", "status", "message"),
    [
        (
            ["greet", "1", "--client-id", "nobody"],
            {},
            1,
            'pubsub-rpc: refused: Unrecognized client ID "nobody".',
        ),
        (
            ["greet", "1", "--client-id", "watch-s3cret"],
            {},
            1,
            "pubsub-rpc: refused: You are not allowed to publish events.",
        ),
        (["greet", "{bad", "--client-id", "pub-s3cret"], {}, 2, "pubsub-rpc: the value is not valid JSON"),
        (
            ["greet", "1"],
            {"PUBSUB_RPC_CLIENT_ID": ""},
            2,
            "pubsub-rpc: give --client-id ID or set PUBSUB_RPC_CLIENT_ID",
        ),
    ],
)
def test_publish_errors_are_one_line(
    server: ServeProcess, args: list[str], env: dict[str, str], status: int, message: str
) -> None:
    done = run_cli("publish", server.url("tcp"), *args, env=env)
    assert done.returncode == status
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_subscribe_refused_without_the_right(server: ServeProcess) -> None:
    done = run_cli("subscribe", server.url("tcp"), "greet", "--client-id", "mute-s3cret", "--count", "1")
    assert done.returncode == 1
    assert done.stderr == "pubsub-rpc: refused: You are not allowed to subscribe to events.\n"


def test_server_not_running(tmp_path: Path) -> None:
    for url in ("tcp://127.0.0.1:1", f"unix://{tmp_path}/absent.sock"):
        done = run_cli("publish", url, "greet", "1", "--client-id", "x")
        assert done.returncode == 1
        assert done.stderr.startswith("pubsub-rpc: ") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["http://x:1", "tcp://nohost", "unix://relative"])
def test_bad_urls(url: str) -> None:
    done = run_cli("publish", url, "greet", "1", "--client-id", "x")
    assert done.returncode == 2
    assert done.stderr.startswith("pubsub-rpc: ") and done.stderr.count("\n") == 1


def test_serve_refuses_a_bad_clients_file(tmp_path: Path) -> None:
    bad = tmp_path / "clients.toml"
    bad.write_text("[[client]]\nid = 'a'\nflavour = 1\n", encoding="utf-8")
    done = run_cli("serve", "--clients", str(bad), "--tcp", "127.0.0.1:0")
    assert done.returncode == 2
    assert done.stderr == f"pubsub-rpc: {bad}: client #1: unknown key 'flavour'\n"
    assert done.stdout == ""
    bad.write_text("[[client]]\nid = 'a'\npublish_allow = ['a.>.b']\n", encoding="utf-8")
    done = run_cli("serve", "--clients", str(bad), "--tcp", "127.0.0.1:0")
    assert done.returncode == 2
    assert done.stderr == (
        f"pubsub-rpc: {bad}: client #1: 'publish_allow': "
        'Invalid pattern "a.>.b": ">" must be the last segment.\n'
    )
    missing = run_cli("serve", "--clients", str(tmp_path / "nope.toml"), "--tcp", "127.0.0.1:0")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "nope.toml: no such file" in missing.stderr


def test_serve_stops_in_order_on_sigterm_and_sigint(clients_file: Path, tmp_path: Path) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        sock = tmp_path / f"s{signum}.sock"
        serve = start_serve("--clients", str(clients_file), "--unix", str(sock), env={"TEST_WATCHER_ID": "w"})
        assert serve.urls == [f"unix://{sock}"]
        assert sock.exists()
        serve.process.send_signal(signum)
        _, err = serve.process.communicate(timeout=15)
        assert serve.process.returncode == 0, err
        assert not sock.exists()
        assert "pub-s3cret" not in err


def test_serve_stdio_announces_on_stderr(clients_file: Path) -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--clients", str(clients_file), "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**__import__("os").environ, "TEST_WATCHER_ID": "w"},
    )
    request = b'{"jsonrpc":"2.0","method":"publish","params":{"client_id":"pub-s3cret","event_name":"e","value":1},"id":1}\n'
    try:
        out, _ = process.communicate(request, timeout=20)
    finally:
        if process.poll() is None:  # never leave a server behind, even when the test fails
            process.kill()
            process.communicate()
    assert json.loads(out.splitlines()[0]) == {
        "jsonrpc": "2.0",
        "result": {"listeners": 0, "client_id": "pub-s3cret"},
        "id": 1,
    }
    assert b"listening on" not in out


def test_demo_runs_and_exits_zero() -> None:
    done = run_cli("demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("received") == 5
    assert "refused: You are not allowed to publish events." in done.stdout or "was refused" in done.stdout


def test_module_entry_point_and_help() -> None:
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "transports", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    for command in ("serve", "publish", "subscribe", "demo"):
        assert command in done.stdout


def test_serve_tunes_the_garbage_collector_for_short_lived_requests() -> None:
    import gc

    from transports import _cli

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        _cli._tune_gc_for_serving()
        assert gc.get_threshold() == (_cli.SERVE_GC_THRESHOLD, *threshold[1:])
        assert gc.get_freeze_count() > frozen  # what was alive at start-up is left out of collections
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
