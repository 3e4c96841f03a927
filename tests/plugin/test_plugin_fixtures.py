"""The pytest plugin's fixtures, used directly by this suite (which gets them from the entry point)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest
import trio

from pubsub_rpc import ClientInfo, Dialect, ErrorCode, RequestError
from transports import pytest_plugin, tcp, unix
from transports.pytest_plugin import Connect, RunningServer

TRANSPORTS = ["inprocess", "tcp", "unix"]

WATCHER = ClientInfo("watch-s3cret", can_publish=False)
PUBLISHER = ClientInfo("pub-s3cret", can_subscribe=False)


def test_the_entry_point_is_installed_and_loaded(pytestconfig: pytest.Config) -> None:
    (entry,) = [each for each in entry_points(group="pytest11") if each.name == "pubsub_rpc"]
    assert entry.value == "transports.pytest_plugin"
    # Loaded by the entry point, not by a conftest of this suite.
    assert pytestconfig.pluginmanager.get_plugin("pubsub_rpc") is pytest_plugin


def test_loading_the_plugin_warns_nothing_even_when_warnings_are_errors() -> None:
    # pytest loads it at every start-up of every project that has pubsub-rpc
    # installed: a warning here would break their filterwarnings = error.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import transports.pytest_plugin"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_subscriber_on_each_transport_gets_an_in_process_publish(
    pubsub_connect: Connect, transport: str
) -> None:
    watcher = await pubsub_connect(transport=transport)  # type: ignore[arg-type]
    publisher = await pubsub_connect()
    async with await watcher.subscribe("user::logged_in") as logins:
        assert await publisher.publish("user::logged_in", {"user": "ada"}) == 1
        assert await anext(logins) == {"user": "ada"}


async def test_one_publish_reaches_subscribers_on_every_transport(pubsub_connect: Connect) -> None:
    watchers = [await pubsub_connect(transport=each) for each in ("inprocess", "tcp", "unix")]
    publisher = await pubsub_connect(transport="tcp")
    subscriptions = [await each.subscribe("tick") for each in watchers]
    assert await publisher.publish("tick", 7) == 3
    assert [await anext(each) for each in subscriptions] == [7, 7, 7]


async def test_ad_hoc_clients_get_distinct_identities(pubsub_connect: Connect) -> None:
    first, second = await pubsub_connect(transport="tcp"), await pubsub_connect(transport="tcp")
    for client in (first, second):
        await client.publish("anything", None)  # the ad-hoc id comes with the answer
    assert first.client_id is not None and second.client_id is not None
    assert first.client_id != second.client_id


@pytest.mark.parametrize("pubsub_clients", [[WATCHER, PUBLISHER]])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_registered_rights_hold_on_every_transport(pubsub_connect: Connect, transport: Any) -> None:
    watcher = await pubsub_connect("watch-s3cret", transport=transport)
    publisher = await pubsub_connect("pub-s3cret", transport=transport)
    stranger = await pubsub_connect("nobody-s3cret", transport=transport)
    async with await watcher.subscribe("news") as news:
        assert await publisher.publish("news", "hello") == 1
        assert await anext(news) == "hello"
    with pytest.raises(RequestError) as refused:
        await watcher.publish("news", "mine")
    assert refused.value.code == ErrorCode.PUBLISH_FORBIDDEN
    with pytest.raises(RequestError) as refused:
        await publisher.subscribe("news")
    assert refused.value.code == ErrorCode.SUBSCRIBE_FORBIDDEN
    await stranger.ping()  # a ping names no client: anybody connected gets an answer
    with pytest.raises(RequestError) as refused:
        await stranger.publish("news", "x")
    assert refused.value.code == ErrorCode.UNKNOWN_CLIENT


async def test_the_server_is_reachable_at_its_urls_by_code_of_your_own(pubsub_server: RunningServer) -> None:
    assert pubsub_server.tcp.url == f"tcp://127.0.0.1:{pubsub_server.tcp.port}"
    assert pubsub_server.unix is not None and pubsub_server.unix.url.startswith("unix:///")
    host, port = pubsub_server.tcp.address
    async with (
        tcp.connect(host, port) as over_tcp,
        unix.connect(pubsub_server.unix.path) as over_unix,
        await over_unix.subscribe("mine") as values,
    ):
        assert await over_tcp.publish("mine", [1, 2]) == 1
        assert await anext(values) == [1, 2]
    assert pubsub_server.server.started


@pytest.mark.parametrize("pubsub_server_options", [{"max_subscriptions": 1}])
async def test_server_options_set_the_servers_limits(
    pubsub_server: RunningServer, pubsub_connect: Connect
) -> None:
    assert pubsub_server.server.max_subscriptions == 1
    client = await pubsub_connect(transport="tcp")
    await client.subscribe("one")
    with pytest.raises(RequestError) as refused:
        await client.subscribe("two")
    assert refused.value.code == ErrorCode.LIMIT_EXCEEDED


async def test_options_reach_the_transports_connect(pubsub_connect: Connect) -> None:
    over_tcp = await pubsub_connect(transport="tcp", request_timeout=2.5, keepalive=30.0)
    in_process = await pubsub_connect(request_timeout=3.5, subscription_buffer=4)
    assert (over_tcp.request_timeout, over_tcp.keepalive) == (2.5, 30.0)
    assert (in_process.request_timeout, in_process.subscription_buffer) == (3.5, 4)


async def test_bad_arguments_are_clear_errors_and_leave_the_fixture_usable(pubsub_connect: Connect) -> None:
    with pytest.raises(ValueError, match="Unknown transport 'carrier-pigeon'"):
        await pubsub_connect(transport="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dialect"):
        await pubsub_connect(dialect=Dialect.PUB_SUB)  # the in-process transport has no dialects
    client = await pubsub_connect()
    await client.ping()


async def test_clients_stay_open_for_the_test_and_may_be_closed_early(
    pubsub_server: RunningServer, pubsub_connect: Connect
) -> None:
    early, late = await pubsub_connect(transport="tcp"), await pubsub_connect(transport="unix")
    await early.ping()
    await late.ping()
    await early.aclose()
    assert early.closed and not late.closed
    with trio.fail_after(10):
        while pubsub_server.server.connection_count != 1:
            await trio.sleep(0.01)  # the server notices the close on its own time
    await late.ping()


OPERATOR = ClientInfo("ops-s3cret", can_inspect=True, can_subscribe=False)
RULED = ClientInfo("ruled-s3cret", can_publish=False, subscribe_deny=("secret.>",))


@pytest.mark.parametrize("pubsub_clients", [[OPERATOR, RULED, PUBLISHER]])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rules_can_inspect_psubscribe_and_stats_through_the_fixtures(
    pubsub_connect: Connect, transport: Any
) -> None:
    operator = await pubsub_connect("ops-s3cret", transport=transport)
    ruled = await pubsub_connect("ruled-s3cret", transport=transport)
    publisher = await pubsub_connect("pub-s3cret", transport=transport)
    with pytest.raises(RequestError) as refused:
        await ruled.psubscribe("secret.*")  # every name it could match is denied
    assert refused.value.code == ErrorCode.SUBSCRIBE_FORBIDDEN
    everything = await ruled.psubscribe(">")  # allowed, but secret names are filtered out
    users = await ruled.psubscribe("user.*")
    stats = await operator.stats()
    assert (stats["subscriptions"], stats["pattern_subscriptions"], stats["event_names"]) == (2, 2, 0)
    await publisher.publish("secret.plan", "hidden")
    report = await publisher.publish("user.login", "ada", report=True)
    assert (report.listeners, report.delivered, report.dropped) == (2, 2, 0)
    first = await anext(everything)
    assert (first.event_name, first.value) == ("user.login", "ada")  # the secret one never came
    assert (await anext(users)).event_name == "user.login"
    with pytest.raises(RequestError) as refused:
        await publisher.stats()  # registered without can_inspect
    assert refused.value.code == ErrorCode.INSPECT_FORBIDDEN
    stats = await operator.stats()
    assert (stats["events_published"], stats["events_delivered"]) == (2, 2)
    await everything.unsubscribe()
    assert (await operator.stats())["pattern_subscriptions"] == 1
    # An ad-hoc identity of the fixture's trusted listeners may do anything, stats included.
    assert (await (await pubsub_connect(transport=transport)).stats())["subscriptions"] == 1
