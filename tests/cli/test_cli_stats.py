"""``pubsub-rpc stats URL`` and ``serve --metrics``, run as an operator runs them.

The operator is registered with ``can_inspect = true`` (by ``id_env``); the
publisher is not, and is refused in one line.  No client id ever appears in
what the commands print, nor in the server's logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import SCRIPT, ServeProcess, run_cli, serving

OPERATOR_ID = "operator-s3cret"
PUBLISHER_ID = "pub-s3cret"
OPERATOR = {"PUBSUB_RPC_CLIENT_ID": OPERATOR_ID}
SECRETS = (OPERATOR_ID, PUBLISHER_ID)


@pytest.fixture
def inspected(tmp_path: Path) -> Iterator[ServeProcess]:
    """A server on TCP and a Unix socket with a metrics endpoint, and an operator who may inspect."""
    clients = tmp_path / "clients.toml"
    clients.write_text(
        f'[[client]]\nid_env = "TEST_OPERATOR_ID"\ncan_inspect = true\n[[client]]\nid = "{PUBLISHER_ID}"\n',
        encoding="utf-8",
    )
    with serving(
        clients, tmp_path, metrics=True, env={"TEST_OPERATOR_ID": OPERATOR_ID}, secrets=SECRETS
    ) as serve:
        yield serve


def _publish(server: ServeProcess) -> None:
    done = run_cli("publish", server.url("unix"), "greet", "1", "--client-id", PUBLISHER_ID)
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr


def test_stats_table_and_json(inspected: ServeProcess) -> None:
    _publish(inspected)
    table = run_cli("stats", inspected.url("tcp"), env=OPERATOR)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "events published         1" in lines
    assert any(line.startswith("connections open ") and line.endswith(" 1") for line in lines)
    header = next(line for line in lines if line.startswith("adapter "))
    assert header.split() == ["adapter", "kind", "open", "accepted", "refused"]
    tcp_row = next(line for line in lines if line.startswith(inspected.url("tcp")))
    unix_row = next(line for line in lines if line.startswith(inspected.url("unix")))
    assert tcp_row.split()[1:] == ["tcp", "1", "1", "0"]  # this very connection
    assert unix_row.split()[1:] == ["unix", "0", "1", "0"]  # the publisher, gone
    assert "http://" not in table.stdout  # the metrics endpoint serves no peers

    as_json = run_cli("stats", inspected.url("unix"), "--json", "--client-id", OPERATOR_ID)
    assert as_json.returncode == 0, as_json.stderr
    stats = json.loads(as_json.stdout)
    assert stats["events_published"] == 1 and stats["requests_refused"] == 0
    assert stats["connections"] == 1 and stats["connections_accepted"] == 3
    assert [adapter["kind"] for adapter in stats["adapters"]] == ["tcp", "unix"]
    for output in (table.stdout, table.stderr, as_json.stdout, as_json.stderr):
        assert not any(secret in output for secret in SECRETS)


def test_stats_refused_is_one_line(inspected: ServeProcess) -> None:
    done = run_cli("stats", inspected.url("tcp"), "--client-id", PUBLISHER_ID)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "pubsub-rpc: refused: You are not allowed to read server statistics.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "pubsub-rpc: give --client-id ID or set PUBSUB_RPC_CLIENT_ID\n"),
        (["--client-id", "x", "--watch", "0"], "pubsub-rpc: --watch must be a positive number of seconds\n"),
    ],
)
def test_stats_usage_errors(args: list[str], message: str) -> None:
    done = run_cli("stats", "tcp://127.0.0.1:1", *args, env={"PUBSUB_RPC_CLIENT_ID": ""})
    assert (done.returncode, done.stderr) == (2, message)


def test_stats_watch_repeats_until_interrupted(inspected: ServeProcess) -> None:
    watch = subprocess.Popen(
        [str(SCRIPT), "stats", inspected.url("tcp"), "--json", "--watch", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **OPERATOR},
    )
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        second = json.loads(watch.stdout.readline())
        # Each snapshot counts the stats requests before it.
        assert second["requests"] == first["requests"] + 1
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=15)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, err


def test_serve_metrics_scrape(inspected: ServeProcess) -> None:
    _publish(inspected)
    url = inspected.url("http")
    assert url.endswith("/metrics")
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.read().decode()
    assert "pubsub_rpc_events_published_total 1\n" in text
    assert (
        f'pubsub_rpc_adapter_connections_accepted_total{{adapter="{inspected.url("unix")}",kind="unix"}} 1'
        in text
    )
    assert not any(secret in text for secret in SECRETS)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url.removesuffix("metrics") + "other", timeout=10)
    assert caught.value.code == 404
    caught.value.close()


def test_the_table_shows_what_another_server_sends_as_it_came() -> None:
    from transports._cli_stats import format_table

    text = format_table(
        {
            "uptime_seconds": "soon",
            "requests": 2,
            "queue_depth": 7,
            "note": "a\nb",
            "adapters": [{"name": "x"}],
        }
    )
    lines = text.splitlines()
    assert lines[0].split() == ["uptime", '"soon"']
    assert lines[1].split() == ["requests", "2"]
    assert lines[2].split() == ["queue", "depth", "7"]
    assert lines[3].split() == ["note", '"a\\nb"']  # one line, escaped
    assert lines[5].split() == ["adapter", "kind", "open", "accepted", "refused"]
    assert lines[6].split() == ["x", "None", "None", "None", "None"]


def test_serve_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text('[[client]]\nid = "x"\n', encoding="utf-8")
    done = run_cli("serve", "--clients", str(clients), "--tcp", "127.0.0.1:0", "--metrics", "9100")
    assert done.returncode == 2
    assert done.stderr == "pubsub-rpc: --metrics '9100': expected HOST:PORT, as in 127.0.0.1:7700\n"
