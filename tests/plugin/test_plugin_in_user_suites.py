"""The pytest plugin as users meet it: small test suites of theirs, run by pytest itself (``pytester``).

Each case writes a user's test file (and configuration) into a fresh
directory with no conftest, so the fixtures come from the installed entry
point alone, runs pytest on it and checks the outcome counts, including that
tests meant to fail do fail.  Waits inside the user tests are bounded with
``trio.fail_after``, since these runs are outside this suite's guard.
"""

from __future__ import annotations

import pytest

TRIO_MODE = "[pytest]\ntrio_mode = true\nfilterwarnings = error\naddopts = --strict-markers\n"
MARKED = "[pytest]\nfilterwarnings = error\naddopts = --strict-markers\n"

TWO_LINES = """
import pytest
import trio

TRANSPORTS = ["inprocess", "tcp", "unix"]

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_lines_and_go(pubsub_connect, transport):
    a = await pubsub_connect(transport=transport)
    b = await pubsub_connect()
    async with await a.subscribe("user::logged_in") as logins:
        assert await b.publish("user::logged_in", {"user": "ada"}) == 1
        with trio.fail_after(10):
            assert await anext(logins) == {"user": "ada"}

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_meant_to_fail(pubsub_connect, transport):
    a, b = await pubsub_connect(transport=transport), await pubsub_connect(transport=transport)
    await a.subscribe("news")
    assert await b.publish("news", 1) == 2, "deliberate: only one subscriber"
"""


def test_two_line_tests_pass_and_a_wrong_expectation_fails_in_trio_mode(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE)
    pytester.makepyfile(test_user=TWO_LINES)
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(["*deliberate: only one subscriber*"])
    # The failures are the user's assertion, not the fixtures' teardown.
    assert "misbehaved" not in result.stdout.str()


def test_without_trio_mode_tests_marked_trio_work(pytester: pytest.Pytester) -> None:
    pytester.makeini(MARKED)
    pytester.makepyfile(test_user="import pytest\npytestmark = pytest.mark.trio\n" + TWO_LINES)
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=3)


def test_an_unmarked_test_without_trio_mode_is_an_error_not_a_silent_pass(pytester: pytest.Pytester) -> None:
    pytester.makeini(MARKED)
    pytester.makepyfile(test_user="def test_sync(pubsub_connect):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*requested an async fixture*"])


def test_a_fresh_pytest_process_finds_the_fixtures_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE)
    pytester.makepyfile(test_user=TWO_LINES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3, failed=3)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE)
    pytester.makepyfile(test_user=TWO_LINES)
    result = pytester.runpytest("-p", "no:pubsub_rpc")
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(["*fixture 'pubsub_connect' not found*"])


CLIENTS_CONFTEST = """
import pytest
from pubsub_rpc import ClientInfo

@pytest.fixture
def pubsub_clients():
    return [ClientInfo("watch-s3cret", can_publish=False), ClientInfo("pub-s3cret", can_subscribe=False)]
"""

CLIENTS_TESTS = """
import pytest
import trio
from pubsub_rpc import ClientInfo, ErrorCode, RequestError

@pytest.mark.parametrize("transport", ["inprocess", "tcp"])
async def test_registered_rights_apply(pubsub_connect, transport):
    watcher = await pubsub_connect("watch-s3cret", transport=transport)
    publisher = await pubsub_connect("pub-s3cret", transport=transport)
    async with await watcher.subscribe("news") as news:
        assert await publisher.publish("news", "hi") == 1
        with trio.fail_after(10):
            assert await anext(news) == "hi"
    with pytest.raises(RequestError) as refused:
        await watcher.publish("news", "mine")
    assert refused.value.code == ErrorCode.PUBLISH_FORBIDDEN

@pytest.mark.parametrize("transport", ["inprocess", "tcp"])
async def test_meant_to_fail_the_watcher_may_not_publish(pubsub_connect, transport):
    watcher = await pubsub_connect("watch-s3cret", transport=transport)
    await watcher.publish("news", "mine")

@pytest.mark.parametrize("pubsub_clients", [[ClientInfo("other-s3cret")]])
async def test_one_test_registers_its_own_clients(pubsub_connect):
    other = await pubsub_connect("other-s3cret", transport="tcp")
    assert await other.publish("news", 1) == 0
    stale = await pubsub_connect("watch-s3cret", transport="tcp")
    with pytest.raises(RequestError) as refused:
        await stale.subscribe("news")
    assert refused.value.code == ErrorCode.UNKNOWN_CLIENT
"""


def test_users_register_clients_with_rights_by_overriding_pubsub_clients(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE)
    pytester.makeconftest(CLIENTS_CONFTEST)
    pytester.makepyfile(test_user=CLIENTS_TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["*RequestError*not allowed to publish*"])


TEARDOWN_TESTS = """
import os
import pytest
import trio

SEEN = {}

@pytest.mark.parametrize("transport", ["inprocess", "tcp", "unix"])
async def test_leave_things_open(pubsub_server, pubsub_connect, transport):
    client = await pubsub_connect(transport=transport)
    await client.subscribe("left-open")
    SEEN[transport] = (pubsub_server, client)

def test_everything_was_closed_after_each_test():
    assert sorted(SEEN) == ["inprocess", "tcp", "unix"]
    for running, client in SEEN.values():
        assert client.closed
        assert running.server.connection_count == 0
        assert running.server.broker.subscription_count == 0
        assert not os.path.exists(running.unix.path)
"""


def test_clients_and_server_are_closed_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE)
    pytester.makepyfile(test_user=TEARDOWN_TESTS)
    result = pytester.runpytest("-p", "no:randomly")  # the last test checks what the others left
    result.assert_outcomes(passed=4)


MISBEHAVING_SERVER = """
import pytest
from pubsub_rpc import ConnectionClosedError, InProcessConnection, RequestError

def broken(*args):
    raise KeyError("a bug in the server")

async def test_a_request_fault_fails_the_test(monkeypatch, pubsub_server, pubsub_connect):
    client = await pubsub_connect(transport="tcp")
    monkeypatch.setattr(pubsub_server.server.broker, "publish", broken)
    with pytest.raises(RequestError):
        await client.publish("x", 1)

async def test_a_failed_connection_fails_the_test(monkeypatch, pubsub_server, pubsub_connect):
    # A request's fault is answered; a fault outside any one request ends the connection.
    client = await pubsub_connect()
    monkeypatch.setattr(InProcessConnection, "receive_data", broken)
    with pytest.raises(ConnectionClosedError):
        await client.publish("x", 1)

async def test_inconsistent_broker_state_fails_the_test(pubsub_server):
    pubsub_server.server.broker._by_event["ghost"] = {}

async def test_a_well_behaved_server_passes(pubsub_server, pubsub_connect):
    client = await pubsub_connect()
    assert await client.publish("x", 1) == 0
"""


def test_teardown_fails_the_test_when_the_server_misbehaved(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE)
    pytester.makepyfile(test_user=MISBEHAVING_SERVER)
    recorder = pytester.inline_run()
    recorder.assertoutcome(passed=1, failed=3)
    failures = {
        report.nodeid.rpartition("::")[2]: report.longreprtext
        for report in recorder.getreports("pytest_runtest_logreport")
        if report.failed
    }
    assert failures.keys() == {
        "test_a_request_fault_fails_the_test",
        "test_a_failed_connection_fails_the_test",
        "test_inconsistent_broker_state_fails_the_test",
    }
    prefix = "The pub/sub test server misbehaved: "
    assert (
        prefix + "0 connection(s) and 1 request(s) failed" in failures["test_a_request_fault_fails_the_test"]
    )
    assert (
        prefix + "1 connection(s) and 0 request(s) failed"
        in failures["test_a_failed_connection_fails_the_test"]
    )
    assert (
        prefix + "broker indexes disagreed while connections were open (empty index entries); "
        "broker indexes disagreed after shutdown (empty index entries)"
    ) in failures["test_inconsistent_broker_state_fails_the_test"]
