"""``pubsub-rpc subscribe --pattern`` and ``publish --include-self`` / ``--report``, run as a user runs them.

The server is a real ``pubsub-rpc serve`` with a clients file that carries
per-name rules and ``can_inspect``; readiness is read from ``stats --json``
(how many subscriptions and pattern subscriptions the server holds), so no
probe events end up in what a subscriber prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import SCRIPT, ServeProcess, run_cli, serving

BOTH = "both-s3cret"  # publishes, subscribes and inspects
RULED = "ruled-s3cret"  # subscribes, but not to secret.>
PUBLISHER = "pub-s3cret"
SECRETS = (BOTH, RULED, PUBLISHER)


@pytest.fixture
def patterned(tmp_path: Path) -> Iterator[ServeProcess]:
    """A server on TCP, a Unix socket and a metrics port, with rules and an inspecting client."""
    clients = tmp_path / "clients.toml"
    clients.write_text(
        f'[[client]]\nid = "{BOTH}"\ncan_inspect = true\n'
        f'[[client]]\nid = "{RULED}"\ncan_publish = false\nsubscribe_deny = ["secret.>"]\n'
        f'[[client]]\nid = "{PUBLISHER}"\ncan_subscribe = false\n',
        encoding="utf-8",
    )
    with serving(clients, tmp_path, metrics=True, secrets=SECRETS) as serve:
        yield serve


def subscriber(url: str, client_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), "subscribe", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PUBSUB_RPC_CLIENT_ID": client_id},
    )


def stats(server: ServeProcess) -> dict[str, Any]:
    done = run_cli("stats", server.url("tcp"), "--json", "--client-id", BOTH)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def wait_for_subscriptions(server: ServeProcess, subscriptions: int, patterns: int) -> dict[str, Any]:
    """Poll ``stats`` until the server holds that many subscriptions (the subscriber is ready)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counters = stats(server)
        if (counters["subscriptions"], counters["pattern_subscriptions"]) == (subscriptions, patterns):
            return counters
        time.sleep(0.05)
    raise AssertionError("the subscriber never subscribed")


def publish(server: ServeProcess, client_id: str, event: str, value: str, *flags: str) -> str:
    done = run_cli("publish", server.url("tcp"), event, value, "--client-id", client_id, *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_subscribe_to_patterns_prints_each_events_real_name(patterned: ServeProcess) -> None:
    watcher = subscriber(
        patterned.url("unix"), RULED, "--pattern", "user.>", "--pattern", "*.logout", "--count", "4"
    )
    counters = wait_for_subscriptions(patterned, 2, 2)
    assert counters["event_names"] == 0
    table = run_cli("stats", patterned.url("tcp"), "--client-id", BOTH)
    assert "pattern subscriptions    2" in table.stdout.splitlines(), table.stdout
    with urllib.request.urlopen(patterned.url("http"), timeout=10) as answer:
        assert "pubsub_rpc_pattern_subscriptions 2\n" in answer.read().decode()
    assert publish(patterned, PUBLISHER, "user.login", '{"user": "ada"}') == "1\n"
    assert publish(patterned, PUBLISHER, "user::logout", "2") == "2\n"  # both patterns match
    publish(patterned, PUBLISHER, "secret.logout", '"hidden"')  # matched, but denied to this client
    assert publish(patterned, PUBLISHER, "user.end", "null") == "1\n"
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    # One line per subscription that received the event; across subscriptions the order may vary.
    assert sorted(lines, key=json.dumps) == sorted(
        [
            {"event_name": "user.login", "value": {"user": "ada"}, "pattern": "user.>"},
            {"event_name": "user::logout", "value": 2, "pattern": "user.>"},
            {"event_name": "user::logout", "value": 2, "pattern": "*.logout"},
            {"event_name": "user.end", "value": None, "pattern": "user.>"},
        ],
        key=json.dumps,
    )
    assert lines[-1]["event_name"] == "user.end"  # the secret one never came before it


def test_exact_names_and_patterns_together(patterned: ServeProcess) -> None:
    watcher = subscriber(patterned.url("tcp"), BOTH, "news", "--pattern", "news.*", "--count", "2")
    wait_for_subscriptions(patterned, 2, 1)
    assert publish(patterned, PUBLISHER, "news", '"plain"') == "1\n"
    assert publish(patterned, PUBLISHER, "news.today", '"sub"') == "1\n"
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    assert sorted(out.splitlines()) == sorted(
        [
            '{"event_name":"news","value":"plain"}',  # an exact name's lines keep their shape
            '{"event_name":"news.today","value":"sub","pattern":"news.*"}',
        ]
    )


def test_a_denied_pattern_is_refused_in_one_line(patterned: ServeProcess) -> None:
    done = run_cli("subscribe", patterned.url("tcp"), "--pattern", "secret.*", "--client-id", RULED)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        'pubsub-rpc: refused: You are not allowed to subscribe to any event matching "secret.*".\n'
    )
    assert stats(patterned)["subscriptions"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", "a.>.b"], 'pubsub-rpc: --pattern: Invalid pattern "a.>.b": ">" must be the last segment.\n'),
        (["news", "--pattern", ""], 'pubsub-rpc: --pattern: Invalid pattern "": it is empty.\n'),
        ([], "pubsub-rpc: give at least one EVENT or --pattern PATTERN\n"),
    ],
)
def test_subscribe_usage_errors_need_no_server(args: list[str], message: str) -> None:
    # Port 9 (discard) on loopback: nothing is listening, and nothing is tried.
    done = run_cli("subscribe", "tcp://127.0.0.1:9", *args, "--client-id", "x")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)


def test_publish_include_self_and_report(patterned: ServeProcess) -> None:
    watcher = subscriber(patterned.url("tcp"), BOTH, "news", "--count", "3")
    wait_for_subscriptions(patterned, 1, 0)
    # The same client id, on another connection: its own subscription is left out by default.
    assert publish(patterned, BOTH, "news", "1") == "0\n"
    assert publish(patterned, BOTH, "news", "2", "--include-self") == "1\n"
    reported = publish(patterned, BOTH, "news", "3", "--include-self", "--report")
    assert json.loads(reported) == {"listeners": 1, "delivered": 1, "dropped": 0}
    assert reported.count("\n") == 1
    assert json.loads(publish(patterned, PUBLISHER, "news", "4", "--report")) == {
        "listeners": 1,
        "delivered": 1,
        "dropped": 0,
    }
    assert json.loads(publish(patterned, BOTH, "news", "5", "--report")) == {
        "listeners": 0,
        "delivered": 0,
        "dropped": 0,
    }
    out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    assert [json.loads(line)["value"] for line in out.splitlines()] == [2, 3, 4]
    counters = stats(patterned)
    assert (counters["events_published"], counters["events_delivered"]) == (5, 3)


def test_the_help_and_the_readme_document_the_shapes() -> None:
    subscribe_help = " ".join(run_cli("subscribe", "--help").stdout.split())
    assert '{"event_name": NAME, "value": VALUE, "pattern": PATTERN}' in subscribe_help
    publish_help = " ".join(run_cli("publish", "--help").stdout.split())
    assert "--include-self" in publish_help
    assert '{"listeners": N, "delivered": N, "dropped": N}' in publish_help
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8").split())
    assert '`{"event_name": "user::logged_in", "value": ..., "pattern": "user.>"}`' in readme
    assert '`{"listeners": N, "delivered": N, "dropped": N}`' in readme
    assert "`publish --include-self`" in readme
