"""Framing interop over TCP: raw sockets that frame the way other peers do are served correctly.

* the original Dart pub_sub client: bare concatenated JSON documents, no newline;
* a peer whose writes split the documents at every byte;
* an LSP-style peer (vscode-jsonrpc) using ``Content-Length`` headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trio
from transport_helpers import running

from pubsub_rpc import ClientInfo, FrameDecoder
from transports import Server, tcp


@pytest.fixture
async def port() -> AsyncIterator[int]:
    adapter = tcp.Adapter("127.0.0.1", 0, trusted=True)
    server = Server([adapter])
    server.register_client(ClientInfo("raw::secret"))
    server.register_client(ClientInfo("raw::secret2"))
    async with running(server):
        yield adapter.port


def pub_sub_request(method: str, request_id: str, **params: Any) -> bytes:
    """A request as the original client wrote it: a notification carrying request_id."""
    body = {"request_id": request_id, **params}
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": body})


async def read_messages(stream: trio.abc.Stream, decoder: FrameDecoder, count: int) -> list[Any]:
    messages: list[Any] = []
    while len(messages) < count:
        data = await stream.receive_some(65536)
        assert data, "the server closed the connection early"
        messages.extend(decoder.feed(data))
    return messages


async def test_bare_concatenated_documents(port: int) -> None:
    subscriber = await trio.open_tcp_stream("127.0.0.1", port)
    publisher = await trio.open_tcp_stream("127.0.0.1", port)
    async with subscriber, publisher:
        await subscriber.send_all(
            pub_sub_request("subscribe", "r1", client_id="raw::secret2", event_name="foo")
            + pub_sub_request("subscribe", "r2", client_id="raw::secret2", event_name="bar")
        )
        sub_decoder = FrameDecoder()
        answers = await read_messages(subscriber, sub_decoder, 2)
        assert [answer["method"] for answer in answers] == ["r1", "r2"]
        assert all(answer["params"]["status"] is True for answer in answers)
        # The flat fields the original client reads are there too.
        subscription_id = answers[0]["params"]["subscription_id"]
        assert answers[0]["params"]["result"]["subscription_id"] == subscription_id

        await publisher.send_all(
            pub_sub_request("publish", "p1", client_id="raw::secret", event_name="foo", value="bar")
            + pub_sub_request("publish", "p2", client_id="raw::secret", event_name="nobody", value=1)
        )
        published = await read_messages(publisher, FrameDecoder(), 2)
        assert [(m["method"], m["params"]["result"]["listeners"]) for m in published] == [
            ("p1", 1),
            ("p2", 0),
        ]
        [event] = await read_messages(subscriber, sub_decoder, 1)
        assert event["method"] == "event"
        assert event["params"] == {"event_name": "foo", "value": "bar", "subscription_id": subscription_id}


async def test_documents_split_at_every_byte(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = pub_sub_request(
            "publish", "r1", client_id="raw::secret", event_name="foo", value={"a": [1, "é"]}
        )
        request += orjson.dumps({"jsonrpc": "2.0", "method": "ping", "id": 7}) + b"\n"
        for index in range(len(request)):
            await stream.send_all(request[index : index + 1])
        answers = await read_messages(stream, FrameDecoder(), 2)
        assert answers[0]["method"] == "r1"
        assert answers[0]["params"]["result"] == {"listeners": 0, "client_id": "raw::secret"}
        assert answers[1] == {"jsonrpc": "2.0", "result": {}, "id": 7}


async def test_content_length_framing(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        frames = b""
        for request_id, method, params in [
            (1, "subscribe", {"client_id": "raw::secret2", "event_name": "foo"}),
            (2, "publish", {"client_id": "raw::secret", "event_name": "nobody", "value": None}),
        ]:
            body = orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id})
            frames += b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        await stream.send_all(frames)
        raw = b""
        decoder = FrameDecoder()
        answers: list[Any] = []
        while len(answers) < 2:
            data = await stream.receive_some(65536)
            assert data
            raw += data
            answers.extend(decoder.feed(data))
        assert raw.startswith(b"Content-Length: ")  # answers use the peer's framing
        assert answers[0]["id"] == 1 and "subscription_id" in answers[0]["result"]
        assert answers[1] == {
            "jsonrpc": "2.0",
            "result": {"listeners": 0, "client_id": "raw::secret"},
            "id": 2,
        }
