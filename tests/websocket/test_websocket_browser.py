"""End to end in a real browser: headless Chromium, driven by Selenium, using client.js.

Chromium and ChromeDriver are Debian's (packages chromium and chromium-driver,
installed by .ci/run when missing).  Outside CI the tests skip when they are
not found; under CI (``CI=true``) they fail instead, so a broken install
cannot pass unnoticed.  Selenium is synchronous: every call to the browser
runs in a worker thread, so the server in this test's trio loop keeps serving.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from transport_helpers import collect, running, wait_until

from pubsub_rpc import ADHOC_PREFIX, ClientInfo, ErrorCode
from transports import Server, tcp, websocket

HERE = Path(__file__).resolve().parent
#: Flags for Chromium as root on a machine whose network is closed.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
#: Seconds a page gets to reach a state before the test reports what it shows.
PAGE_WAIT = 20
_PAGE_STATE = """
const text = (id) => document.getElementById(id)?.textContent ?? null;
return {status: text("status"), error: text("error"), received: text("received"),
        published: text("published"), results: text("results")};
"""


def _find_browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    return (chromium, chromedriver) if chromium and chromedriver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for this module, with a fresh profile."""
    found = _find_browser()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "chromium and chromedriver are missing; .ci/run installs Debian's chromium and chromium-driver"
            )
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    chromium, chromedriver = found
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    service = Service(executable_path=chromedriver, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(partial(function, *args), abandon_on_cancel=True)


def _console(driver: WebDriver) -> str:
    try:
        entries = driver.get_log("browser")
    except Exception as exc:  # diagnostics only: never hide the real failure
        return f"(no console log: {exc})"
    return "\n".join(f"{entry['level']}: {entry['message']}" for entry in entries) or "(empty)"


async def wait_for_status(driver: WebDriver, wanted: str) -> dict[str, Any]:
    """Poll the page until its status shows ``wanted``; fail with what it shows on an error or timeout."""
    state: dict[str, Any] = {}
    with trio.move_on_after(PAGE_WAIT):
        while True:
            state = await _in_thread(driver.execute_script, _PAGE_STATE)
            if state["error"]:
                break
            if state["status"] == wanted:
                return state
            await trio.sleep(0.05)
    console = await _in_thread(_console, driver)
    raise AssertionError(f"the page did not reach {wanted!r}: {state}\nconsole:\n{console}")


def _page(name: str) -> bytes:
    return (HERE / name).read_bytes()


async def test_browser_subscribes_receives_and_publishes_back(browser: WebDriver) -> None:
    """A page from the server subscribes through client.js; events go both ways with a TCP client."""
    adapter = websocket.Adapter("127.0.0.1", 0, files={"/round_trip.html": _page("round_trip.html")})
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter, tcp_adapter])
    server.register_client(ClientInfo("browser"))
    server.register_client(ClientInfo("python"))
    async with running(server), tcp.connect("127.0.0.1", tcp_adapter.port, client_id="python") as python:
        # Only pages from the server itself may connect: the check is live for this test.
        adapter.allowed_origins = [f"http://127.0.0.1:{adapter.port}"]
        replies = await python.subscribe("from-browser")
        await _in_thread(browser.get, f"{adapter.http_url}round_trip.html")
        await wait_for_status(browser, "subscribed")

        assert await python.publish("to-browser", {"hello": "browser", "n": 1}) == 1
        assert await collect(replies, 1) == [{"reply_to": {"hello": "browser", "n": 1}}]

        state = await wait_for_status(browser, "done")
        assert state["received"] == '{"hello":"browser","n":1}'
        assert state["published"] == "1 listener(s)"
        assert state["error"] == ""
        # The page unsubscribed and closed: nothing of it is left on the server.
        assert await python.publish("to-browser", "anyone?") == 0


async def test_client_js_api_in_the_browser(browser: WebDriver) -> None:
    """client.js: refusals, ad-hoc identity, iteration, unsubscribe, overflow, close, unreachable."""
    adapter = websocket.Adapter("127.0.0.1", 0, files={"/client_api.html": _page("client_api.html")})
    trusted = websocket.Adapter("127.0.0.1", 0, trusted=True)
    server = Server([adapter, trusted])
    for name in ("browser", "browser2"):
        server.register_client(ClientInfo(name))
    server.register_client(ClientInfo("no-publish", can_publish=False))
    async with running(server):
        await _in_thread(browser.get, f"{adapter.http_url}client_api.html?trusted={trusted.url}")
        state = await wait_for_status(browser, "done")
    results = orjson.loads(state["results"])
    assert results.pop("adhocAfter").startswith(ADHOC_PREFIX)
    assert results == {
        "refused": {
            "name": "PubSubError",
            "code": ErrorCode.PUBLISH_FORBIDDEN,
            "message": "You are not allowed to publish events.",
        },
        "unknown": {
            "name": "PubSubError",
            "code": ErrorCode.UNKNOWN_CLIENT,
            "message": 'Unrecognized client ID "nobody".',
        },
        "adhocBefore": None,
        "adhocListeners": 0,
        "listeners": [1, 0],
        "received": {"n": 1},
        "activeAfterBreak": False,
        "afterUnsubscribe": [],
        "flood": [1, 2],
        "floodError": {
            "name": "PubSubError",
            "code": ErrorCode.SLOW_CONSUMER,
            "message": 'The subscription to "flood" was ended: more than 2 values were waiting to be read.',
        },
        "floodListenersAfter": 0,
        "closed": True,
        "afterClose": {
            "name": "PubSubError",
            "code": None,
            "message": "The client was closed before the server responded to this request.",
        },
        "unreachable": {
            "name": "PubSubError",
            "code": None,
            "message": "Connecting to ws://127.0.0.1:9/ failed: the connection closed (WebSocket code 1006).",
        },
        "isPubSubError": True,
    }


async def test_the_readme_browser_example(browser: WebDriver) -> None:
    """README.md's five-line example, run as written (on this test's port) in the browser."""
    readme = (HERE.parents[1] / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```html\n(.*?)```", readme, flags=re.DOTALL)
    assert len(example.splitlines()) == 5
    adapter = websocket.Adapter("127.0.0.1", 0)
    tcp_adapter = tcp.Adapter("127.0.0.1", 0)
    server = Server([adapter, tcp_adapter])
    server.register_client(ClientInfo("watch-s3cret", can_publish=False))
    server.register_client(ClientInfo("pub-s3cret", can_subscribe=False))
    async with (
        running(server),
        tcp.connect("127.0.0.1", tcp_adapter.port, client_id="pub-s3cret") as publisher,
    ):
        page = example.replace("127.0.0.1:7701", f"127.0.0.1:{adapter.port}")
        adapter.files["/readme.html"] = f"<!doctype html>\n{page}".encode()
        await _in_thread(browser.get_log, "browser")  # start from an empty console
        await _in_thread(browser.get, f"{adapter.http_url}readme.html")
        await wait_until(lambda: server.broker.subscription_count == 1)
        assert await publisher.publish("user::logged_in", "ada") == 1
        logged: list[str] = []
        while not any('"logged in:" "ada"' in line for line in logged):
            logged += [entry["message"] for entry in await _in_thread(browser.get_log, "browser")]
            await trio.sleep(0.05)
