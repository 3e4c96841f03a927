"""README.md stays true: its commands and its Python example are run here."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from cli_helpers import SCRIPT

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of one language, in order."""
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def shell_commands() -> list[str]:
    """Every shell command of the README, continuation lines joined."""
    return [block.replace("\\\n", " ").strip() for block in blocks("sh")]


def test_setup_commands_are_what_ci_runs() -> None:
    install_and_demo, run_tests = shell_commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run_tests == ".venv/bin/python -m pytest"
    assert run_tests in ci.splitlines()
    install, demo = install_and_demo.rsplit(" && ", 1)
    assert demo == ".venv/bin/pubsub-rpc demo"
    for step in install.split(" && "):
        assert step in ci, step


def test_the_demo_of_the_setup_command_works() -> None:
    done = subprocess.run([str(SCRIPT), "demo"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "demo finished" in done.stdout


def test_python_example_runs(tmp_path: Path) -> None:
    example, _ = blocks("python")
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1 listener got {'user': 'ada'}\n"


def test_testing_example_passes_under_pytest(tmp_path: Path) -> None:
    _, user_test = blocks("python")
    (tmp_path / "test_readme_example.py").write_text(user_test, encoding="utf-8")
    # A user's project: no trio_mode, warnings are errors; the fixtures come from the entry point.
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_patterns_example_runs(tmp_path: Path) -> None:
    (example,) = [block for block in blocks("py") if "psubscribe" in block]
    script = tmp_path / "patterns.py"
    script.write_text(example, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # The denied name never reached the pattern subscription; the report counts one delivery.
    assert done.stdout == "user.ada.logged_in {'at': 1} 1 0\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def localise(command: str, port: int, sock: Path) -> list[str]:
    """A README command made runnable here: this venv, a free port, a private socket path."""
    command = command.replace("7700", str(port)).replace("/tmp/app.sock", str(sock))
    words = shlex.split(command)
    env_words = [w for w in words if re.fullmatch(r"[A-Z_]+=.*", w)]
    rest = words[len(env_words) :]
    rest[0] = str(BIN / Path(rest[0]).name)
    return [*env_words, *rest]


def run_words(words: list[str], tmp_path: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("PUBSUB_RPC_CLIENT_ID", None)
    argv = []
    for word in words:
        name, eq, value = word.partition("=")
        if eq and not argv and name.isupper():
            env[name] = value
        else:
            argv.append(word)
    return subprocess.Popen(argv, cwd=tmp_path, env=env, text=True, **kwargs)  # type: ignore[call-overload]


def test_three_terminal_walkthrough(tmp_path: Path) -> None:
    (toml,) = blocks("toml")
    (tmp_path / "clients.toml").write_text(toml, encoding="utf-8")
    serve, subscribe, publish = shell_commands()[2:5]
    port, sock = free_port(), tmp_path / "app.sock"
    server = run_words(localise(serve, port, sock), tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == f"listening on tcp://127.0.0.1:{port}\n"
        assert server.stdout.readline() == f"listening on unix://{sock}\n"
        subscriber = run_words(
            [*localise(subscribe, port, sock), "--count", "1"],
            tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        publish_words = localise(publish, port, sock)
        for _ in range(100):  # until the subscriber's subscription is in place
            publisher = run_words(publish_words, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = publisher.communicate(timeout=30)
            assert publisher.returncode == 0, err
            if out == "1\n":
                break
        else:
            raise AssertionError("the subscriber never received")
        out, err = subscriber.communicate(timeout=30)
        assert (subscriber.returncode, out) == (
            0,
            '{"event_name":"user::logged_in","value":{"user":"ada"}}\n',
        ), err
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "s3cret" not in err
