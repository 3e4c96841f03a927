"""The ``--clients`` TOML file: good files load, every mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubsub_rpc import ClientInfo
from transports._clients_file import ClientsFileError, load_clients


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clients.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_ids_rights_and_environment_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[client]]
id = "alpha"

[[client]]
id_env = "BETA_ID"
can_publish = false

[[client]]
id = "gamma"
can_subscribe = false
""",
    )
    assert load_clients(path, environ={"BETA_ID": "beta"}) == [
        ClientInfo("alpha"),
        ClientInfo("beta", can_publish=False),
        ClientInfo("gamma", can_subscribe=False),
    ]


def test_can_inspect_with_every_kind_of_id(tmp_path: Path) -> None:
    digest = "ab" * 32
    path = write(
        tmp_path,
        f"""
[[client]]
id = "operator"
can_inspect = true

[[client]]
id_env = "WATCHER_ID"
can_publish = false
can_inspect = true

[[client]]
id_sha256 = "{digest}"
can_inspect = true

[[client]]
id = "plain"
""",
    )
    assert load_clients(path, environ={"WATCHER_ID": "watcher"}) == [
        ClientInfo("operator", can_inspect=True),
        ClientInfo("watcher", can_publish=False, can_inspect=True),
        ClientInfo.from_sha256(digest, can_inspect=True),
        ClientInfo("plain"),  # inspecting is opt-in
    ]
    assert not load_clients(path, environ={"WATCHER_ID": "watcher"})[3].can_inspect


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[client]\nid = 'x'", "not valid TOML"),
        ("", "expected at least one [[client]] table"),
        ("[[client]]\nid = 'x'\ncolour = 'red'", "unknown key 'colour'"),
        ("[other]\nx = 1\n[[client]]\nid = 'x'", "unknown top-level key 'other'"),
        ("[[client]]\ncan_publish = true", "give exactly one of 'id', 'id_env' and 'id_sha256'"),
        ("[[client]]\nid = 'x'\nid_env = 'X'", "give exactly one of 'id', 'id_env' and 'id_sha256'"),
        ("[[client]]\nid = ''", "'id' must be a non-empty string"),
        ("[[client]]\nid = 5", "'id' must be a non-empty string"),
        ("[[client]]\nid_env = 'UNSET_VARIABLE'", "environment variable UNSET_VARIABLE is unset or empty"),
        ("[[client]]\nid = 'x'\ncan_publish = 'yes'", "'can_publish' must be true or false"),
        ("[[client]]\nid = 'x'\ncan_inspect = 1", "'can_inspect' must be true or false"),
        ("[[client]]\nid = 'dup'\n[[client]]\nid = 'dup'", "client #2 repeats the id of an earlier client"),
        ("client = 3", "expected at least one [[client]] table"),
        ("[[client]]\nid = 'x'\npublish_allow = 'a.>'", "'publish_allow' must be an array of strings"),
        ("[[client]]\nid = 'x'\nsubscribe_deny = ['a', 5]", "'subscribe_deny' must be an array of strings"),
        (
            "[[client]]\nid = 'x'\nsubscribe_allow = ['a.>.b']",
            """'subscribe_allow': Invalid pattern "a.>.b": ">" must be the last segment.""",
        ),
        (
            "[[client]]\nid_sha256 = '" + "ab" * 32 + "'\npublish_deny = ['x*']",
            """client #1: 'publish_deny': Invalid pattern "x*": "*" and ">" must be whole segments.""",
        ),
    ],
)
def test_each_mistake_names_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ClientsFileError) as caught:
        load_clients(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_errors_never_contain_a_client_id(tmp_path: Path) -> None:
    path = write(tmp_path, "[[client]]\nid = 's3cret-value'\n[[client]]\nid = 's3cret-value'")
    with pytest.raises(ClientsFileError) as caught:
        load_clients(path, environ={})
    assert "s3cret-value" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ClientsFileError, match="no such file"):
        load_clients(tmp_path / "absent.toml")


def test_loads_allow_and_deny_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[client]]
id = "alpha"
publish_allow = ["orders.>", "user::*"]
publish_deny = ["orders.secret"]
subscribe_allow = []
subscribe_deny = ["admin.>"]

[[client]]
id_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
subscribe_deny = ["admin.>"]
""",
    )
    alpha, hashed = load_clients(path, environ={})
    assert alpha == ClientInfo(
        "alpha",
        publish_allow=("orders.>", "user::*"),
        publish_deny=("orders.secret",),
        subscribe_allow=(),
        subscribe_deny=("admin.>",),
    )
    assert alpha.rules is not None and alpha.rules.subscribe is not None
    assert not alpha.rules.subscribe.permits_name("anything")  # an empty allow list permits nothing
    assert hashed.subscribe_deny == ("admin.>",) and hashed.publish_allow is None
    assert hashed.rules is not None and hashed.rules.publish is None
