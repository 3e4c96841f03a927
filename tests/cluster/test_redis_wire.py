"""The bridge's bytes and bookkeeping, without Redis: payloads, digests, counts, expiry."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from pubsub_rpc import Pattern, PatternError
from pubsub_rpc._rules import Rule
from transports._redis_counts import LocalInterest, RemoteCounts
from transports._redis_options import bridge_from_args
from transports._redis_patterns import redis_glob
from transports._redis_wire import (
    COUNT,
    STATE,
    Channels,
    MalformedMessageError,
    decode_control,
    decode_event,
    encode_count,
    encode_event,
    encode_pattern_count,
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
    def __init__(
        self, redis: str | None, redis_prefix: str = "pubsub-rpc:", redis_ca: str | None = None
    ) -> None:
        self.redis = redis
        self.redis_prefix = redis_prefix
        self.redis_ca = redis_ca


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
    # --redis-ca: only with --redis, only for rediss://, and a file that exists.
    for redis in (None, "redis://h:1/0", "rediss://:pw-s3cret@h:1/0"):
        with pytest.raises(BadURLError) as refused:
            bridge_from_args(_Args(redis, redis_ca="/nonexistent/ca.pem"), broker=None)  # type: ignore[arg-type]
        assert "s3cret" not in str(refused.value)


def test_pattern_counts_and_filters_round_trip() -> None:
    rule = Rule((Pattern.parse("orders.>"),), (Pattern.parse("orders.secret"),))
    counts = (3, {"a": 2, "b": 1}, {"b": rule})
    count = decode_control(encode_pattern_count("x", "orders.*", counts))
    assert (count.kind, count.event_name, count.counts) == (COUNT, "orders.*", None)
    assert count.patterns == {"orders.*": counts}
    state = decode_control(encode_state("x", {"news": (1, {"a": 1})}, {"a.>": (1, {"a": 1}, {})}))
    assert state.counts == {"news": (1, {"a": 1})} and state.patterns == {"a.>": (1, {"a": 1}, {})}
    assert decode_control(encode_state("x", {})).patterns == {}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"k":"count","n":"x","p":"a*","t":1,"d":{"a":1}}',
        b'{"k":"count","n":"x","p":"a.*","e":"a","t":1,"d":{"a":1}}',
        b'{"k":"count","n":"x","p":"a.*","t":1,"d":{"a":1},"f":{"b":[null,[]]}}',
        b'{"k":"count","n":"x","p":"a.*","t":1,"d":{"a":1},"f":{"a":[null,["x>"]]}}',
        b'{"k":"state","n":"x","c":{},"p":{"a.*":[1,{"a":1}]}}',
    ],
)
def test_malformed_pattern_announcements_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        decode_control(payload)


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [
        ("user.*", b"p:e:user*"),
        ("*", b"p:e:*"),
        (">", b"p:e:*"),
        ("a.*.b", b"p:e:a*b"),
        ("orders::eu", b"p:e:orders*eu"),
        ("a[1]\\?.*", b"p:e:a\\[1\\]\\\\\\?*"),
        ("x*y", None),
    ],
)
def test_redis_globs_escape_literals_and_cover_separators(pattern: str, glob: bytes | None) -> None:
    if glob is None:
        with pytest.raises(PatternError):
            Pattern.parse(pattern)
        return
    assert redis_glob(b"p:e:", Pattern.parse(pattern)) == glob
    assert redis_glob(b"[p]:e:", Pattern.parse(pattern)).startswith(b"\\[p\\]:e:")


def test_remote_patterns_count_matches_less_publisher_and_filtered() -> None:
    remote = RemoteCounts()
    rule = Rule(None, (Pattern.parse("orders.secret"),))
    remote.replace(
        "b", {"orders.eu": (1, {"bob": 1})}, 0.0, {"orders.*": (3, {"bob": 2, "dave": 1}, {"dave": rule})}
    )
    remote.update_pattern("c", ">", (1, {"alice": 1}, {}), now=0.0)
    assert remote.listeners("orders.eu", None) == 5
    assert remote.listeners("orders.eu", "bob") == 2
    assert remote.listeners("orders.secret", None) == 3  # dave's filter denies it
    assert remote.listeners("orders.secret", "dave") == 3
    assert remote.listeners("other", "alice") == 0
    assert remote.subscriptions() == 5
    remote.update_pattern("b", "orders.*", (1, {"bob": 1}, {}), now=1.0)
    assert remote.listeners("orders.secret", None) == 2
    assert remote.expire(now=4.0, expiry=3.5) == ["c"]
    assert remote.listeners("x", None) == 0 and remote.subscriptions() == 2
    remote.forget("b")
    assert remote.listeners("orders.eu", None) == 0 and remote.subscriptions() == 0


def test_local_pattern_interest_keeps_filters_while_their_client_subscribes() -> None:
    interest = LocalInterest("p:")
    rule = Rule(None, (Pattern.parse("a.b"),))
    dave = publisher_digest("p:", "dave")
    interest.add("a.*", "dave", rule)
    interest.add("a.*", "dave", rule)
    interest.add("a.*", "bob")
    assert interest.pattern_counts("a.*") == (3, {dave: 2, publisher_digest("p:", "bob"): 1}, {dave: rule})
    interest.remove("a.*", "dave")
    assert interest.pattern_counts("a.*")[2] == {dave: rule}
    interest.remove("a.*", "dave")
    assert interest.pattern_counts("a.*")[2] == {}
