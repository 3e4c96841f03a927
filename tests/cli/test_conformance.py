"""``pubsub-rpc conformance``: the spec's vectors against live servers, run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import ServeProcess, run_cli, start_serve

from pubsub_rpc._conformance import load_suite
from transports._clients_file import load_clients

ROOT = Path(__file__).resolve().parents[2]
SUITE = load_suite(ROOT / "spec")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def summary(stdout: str) -> tuple[int, int, int]:
    last = stdout.splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, f"no summary line at the end: {last!r}"
    passed, failed, skipped = map(int, match.groups())
    return passed, failed, skipped


def verdicts(stdout: str, kind: str) -> dict[str, str]:
    """{case name: reason} of the ``PASS``/``FAIL``/``SKIP`` lines."""
    found = {}
    for line in stdout.splitlines():
        if line.startswith(kind + " "):
            name, _, reason = line.removeprefix(kind + " ").partition(": ")
            found[name] = reason
    return found


def stop(serve: ServeProcess) -> None:
    if serve.process.poll() is None:
        serve.process.terminate()
    serve.process.communicate(timeout=15)


@pytest.fixture(scope="module")
def vector_clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    done = run_cli("conformance", "--print-clients")
    assert done.returncode == 0, done.stderr
    path = tmp_path_factory.mktemp("conformance") / "clients.toml"
    path.write_text(done.stdout, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(vector_clients: Path) -> Iterator[ServeProcess]:
    """Our server with the vectors' clients: untrusted TCP and a trusted Unix socket."""
    serve = start_serve(
        "--clients",
        str(vector_clients),
        "--tcp",
        "127.0.0.1:0",
        "--unix",
        str(vector_clients.with_name("trusted.sock")),
        "--trust",
        "unix",
        listeners=2,
    )
    try:
        yield serve
    finally:
        stop(serve)


def test_print_clients_is_a_clients_file_of_the_vectors(vector_clients: Path) -> None:
    clients = load_clients(vector_clients)
    assert clients == list(SUITE.clients)
    raw = json.loads((ROOT / "spec" / "vectors" / "clients.json").read_text(encoding="utf-8"))
    assert [client.id for client in clients] == [client["id"] for client in raw["clients"]]


def test_our_server_passes_every_vector_it_can_run(server: ServeProcess) -> None:
    done = run_cli("conformance", server.url("tcp"), "--trusted-url", server.url("unix"), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    passed, failed, skipped = summary(done.stdout)
    assert failed == 0
    # Only cases that need server limits other than the defaults are skipped.
    assert set(verdicts(done.stdout, "SKIP")) == {case.name for case in SUITE.cases if case.options}
    assert skipped == len(verdicts(done.stdout, "SKIP")) <= 10
    assert passed == len(verdicts(done.stdout, "PASS")) == len(SUITE.cases) - skipped
    assert done.stderr == ""  # no progress display when stderr is not a terminal


def test_without_a_trusted_url_trusted_cases_are_skipped(server: ServeProcess) -> None:
    done = run_cli("conformance", server.url("tcp"), "--only", "original_suite.standard.")
    assert done.returncode == 0, done.stdout + done.stderr
    skips = verdicts(done.stdout, "SKIP")
    assert skips and all("needs a trusted connection" in reason for reason in skips.values())
    assert summary(done.stdout) == (8 - len(skips), 0, len(skips))


def test_limit_cases_run_against_a_server_started_with_those_limits(vector_clients: Path) -> None:
    serve = start_serve("--clients", str(vector_clients), "--tcp", "127.0.0.1:0", "--max-frame-size", "1024")
    try:
        done = run_cli("conformance", serve.url("tcp"), "--server-limits", "max_frame_size=1024")
    finally:
        stop(serve)
    assert done.returncode == 0, done.stdout + done.stderr
    wanted = {
        case.name
        for case in SUITE.cases
        if case.options == {"max_frame_size": 1024} and not case.needs_trusted
    }
    assert len(wanted) >= 3
    assert set(verdicts(done.stdout, "PASS")) == wanted
    assert summary(done.stdout) == (len(wanted), 0, len(SUITE.cases) - len(wanted))


def test_a_mismatch_is_reported_with_what_differs(server: ServeProcess, tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(ROOT / "spec", spec, ignore=shutil.ignore_patterns("tools"))
    path = spec / "vectors" / "dialects.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    case = next(case for case in document["cases"] if case["name"] == "dialects.jsonrpc.ping")
    case["steps"][-1]["expect"]["frames"][0]["result"] = {"pong": True}
    path.write_text(json.dumps(document), encoding="utf-8")
    done = run_cli(
        "conformance", server.url("tcp"), "--only", "dialects.", env={"PUBSUB_RPC_SPEC_DIR": str(spec)}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert verdicts(done.stdout, "FAIL") == {
        "dialects.jsonrpc.ping": "step 2 (expect): a[0].result: expected members ['pong'], got [] "
        '(in {"jsonrpc":"2.0","result":{},"id":1})'
    }
    passed, failed, _ = summary(done.stdout)
    assert failed == 1 and passed >= 9


class WrongServer(socketserver.ThreadingTCPServer):
    """Answers every line with the same wrong answer: a server that conforms to nothing."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), WrongAnswers)


class WrongAnswers(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the runner resets connections it is done with
            for _line in self.rfile:
                self.wfile.write(b'{"jsonrpc":"2.0","result":"wrong","id":0}\n')


def test_a_wrong_server_fails() -> None:
    with WrongServer() as wrong:
        threading.Thread(target=wrong.serve_forever, daemon=True).start()
        try:
            url = "tcp://{}:{}".format(*wrong.server_address[:2])
            done = run_cli("conformance", url, "--only", "dialects.", "--timeout", "0.5")
            content_length = run_cli("conformance", url, "--only", "framing.content_length.basic")
        finally:
            wrong.shutdown()
    assert done.returncode == 1, done.stdout + done.stderr
    failures = verdicts(done.stdout, "FAIL")
    assert failures["dialects.jsonrpc.ping"].startswith(
        "step 2 (expect): a[0].result: expected an object, got"
    )
    passed, failed, skipped = summary(done.stdout)
    assert (passed, failed) == (0, len(failures)) and failed + skipped == 11
    # Answering in the wrong framing is caught as it arrives, and said so.
    assert content_length.returncode == 1
    assert verdicts(content_length.stdout, "FAIL") == {
        "framing.content_length.basic": "step 2 (expect): "
        "the server writes newline framing to a peer that speaks content-length"
    }


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ([], 2, "pubsub-rpc: give the URL of the server under test (or --print-clients)"),
        (
            ["tcp://127.0.0.1:1", "--server-limits", "max_batch=x"],
            2,
            "pubsub-rpc: --server-limits 'max_batch=x'",
        ),
        (
            ["tcp://127.0.0.1:1", "--only", "no.such.case"],
            2,
            "pubsub-rpc: no case name contains 'no.such.case'",
        ),
        (
            ["--print-clients", "--spec-dir", "/nonexistent"],
            2,
            "pubsub-rpc: /nonexistent: not a pubsub-rpc spec",
        ),
        (["http://x"], 2, "pubsub-rpc: 'http://x': the scheme must be"),
        (["tcp://127.0.0.1:1"], 1, "pubsub-rpc: Connecting to tcp://127.0.0.1:1 failed"),
    ],
)
def test_errors_are_one_line(args: list[str], status: int, message: str) -> None:
    done = run_cli("conformance", *args)
    assert done.returncode == status
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""
