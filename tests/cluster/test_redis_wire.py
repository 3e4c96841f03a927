"""The bridge's bytes and bookkeeping, without Redis: payloads, digests, counts, expiry."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from transports._redis_counts import LocalInterest, RemoteCounts
from transports._redis_options import bridge_from_args
from transports._redis_wire import (
    COUNT,
    STATE,
    Channels,
    MalformedMessageError,
    decode_control,
    decode_event,
    encode_count,
    encode_event,
    encode_state,
    publisher_digest,
)
from transports._urls import BadURLError


def test_redis_sees_a_digest_never_the_client_id() -> None:
    digest = publisher_digest("p:", "alice-s3cret")
    assert digest == publisher_digest("p:", "alice-s3cret") and len(digest) == 32
    assert "alice" not in digest
    # Domain-separated: neither the clients file's id_sha256 nor another cluster's digest.
    assert not hashlib.sha256(b"alice-s3cret").hexdigest().startswith(digest)
    assert publisher_digest("q:", "alice-s3cret") != digest
    payload = encode_event("node1", 7, digest, orjson.dumps({"v": 1}))
    assert b"alice" not in payload
    event = decode_event(payload)
    assert (event.node, event.seq, event.publisher, event.value) == ("node1", 7, digest, {"v": 1})


def test_a_value_as_deep_as_a_publish_allows_still_crosses() -> None:
    deep: object = 1
    for _ in range(254):
        deep = [deep]
    assert decode_event(encode_event("n", 1, None, orjson.dumps(deep))).value == deep


@pytest.mark.parametrize(
    "payload",
    [b"", b"no header", b'["n",1,null]', b'["n","1",null]\n1', b'{"n":1}\n1', b'["n",1,null]\n{bad'],
)
def test_malformed_event_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        decode_event(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'{"k":"count","n":"x"}',
        b'{"k":"count","n":"x","e":"news","t":1,"d":{"a":2}}',
        b'{"k":"state","n":"x","c":{"news":[1]}}',
        b'{"k":"nope","n":"x"}',
        b"not json",
    ],
)
def test_malformed_control_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        decode_control(payload)


def test_control_messages_round_trip() -> None:
    count = decode_control(encode_count("x", "news", (3, {"a": 2, "b": 1})))
    assert (count.kind, count.node, count.event_name, count.counts) == (
        COUNT,
        "x",
        "news",
        {"news": (3, {"a": 2, "b": 1})},
    )
    state = decode_control(encode_state("x", {"news": (1, {"a": 1}), "sport": (2, {"b": 2})}))
    assert state.kind == STATE and state.counts == {"news": (1, {"a": 1}), "sport": (2, {"b": 2})}


def test_channels() -> None:
    channels = Channels("p:")
    assert channels.for_event("user::in") == b"p:e:user::in"
    assert channels.event_name(b"p:e:user::in") == "user::in"
    assert channels.event_name(b"p:ctl") is None and channels.control == b"p:ctl"


def test_local_interest_counts_names_and_maps_digests_back() -> None:
    interest = LocalInterest("p:")
    assert interest.add("news", "alice") is True
    assert interest.add("news", "bob") is False
    assert interest.add("news", "bob") is False
    alice, bob = publisher_digest("p:", "alice"), publisher_digest("p:", "bob")
    assert interest.counts("news") == (3, {alice: 1, bob: 2})
    assert interest.client_for(bob) == "bob" and interest.client_for(None) is None
    assert interest.remove("news", "alice") is False
    assert interest.client_for(alice) is None  # no subscription of alice left here
    assert interest.remove("news", "bob") is False
    assert interest.remove("news", "bob") is True
    assert interest.names() == set() and interest.counts("news") == (0, {})


def test_remote_counts_leave_out_the_publisher_and_expire() -> None:
    remote = RemoteCounts()
    remote.replace("b", {"news": (3, {"alice": 1, "bob": 2})}, now=0.0)
    remote.update("c", "news", (1, {"alice": 1}), now=0.0)
    assert remote.listeners("news", None) == 4
    assert remote.listeners("news", "alice") == 2
    assert remote.listeners("news", "bob") == 2
    assert remote.listeners("sport", None) == 0
    remote.seen("b", now=3.0)
    assert remote.expire(now=4.0, expiry=3.5) == ["c"]
    assert remote.listeners("news", "alice") == 2 and remote.subscriptions() == 3
    remote.update("b", "news", (0, {}), now=4.0)
    assert remote.listeners("news", None) == 0 and remote.nodes == 1
    remote.forget("b")
    assert remote.nodes == 0


class _Args:
    def __init__(self, redis: str | None, redis_prefix: str = "pubsub-rpc:") -> None:
        self.redis = redis
        self.redis_prefix = redis_prefix


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("http://h:1/0", "p:"),
        ("redis://:pw-s3cret@:6379/0", "p:"),
        ("redis://h:0/0", "p:"),
        ("redis://h:1/0", ""),
    ],
)
def test_bad_redis_options_are_refused_without_repeating_the_url(url: str, prefix: str) -> None:
    with pytest.raises(BadURLError) as refused:
        bridge_from_args(_Args(url, prefix), broker=None)  # type: ignore[arg-type]
    assert "s3cret" not in str(refused.value)
    with pytest.raises(BadURLError):
        bridge_from_args(_Args(None, "other:"), broker=None)  # type: ignore[arg-type]
