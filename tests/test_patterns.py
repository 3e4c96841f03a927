"""Event-name patterns without I/O: syntax, matching, the trie index, intersection and coverage.

The index, ``intersect`` and ``covered`` are each checked against a brute-force
oracle: matching every pattern against every name of a small alphabet, long
enough that one more segment or one more letter cannot change the answer.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pubsub_rpc import Pattern, PatternError
from pubsub_rpc._patterns import PatternIndex, covered, intersect, split_name

SCHEMAS = Path(__file__).resolve().parent.parent / "spec" / "schemas"

# -- syntax ---------------------------------------------------------------------


def test_segments_split_at_dots_and_double_colons_left_to_right() -> None:
    assert split_name("user.logged_in") == ["user", "logged_in"]
    assert split_name("user::logged_in") == ["user", "logged_in"]
    assert split_name("a.b::c") == ["a", "b", "c"]
    assert split_name("a:::b") == ["a", ":b"]
    assert split_name("a:b") == ["a:b"]
    assert split_name("a..b") == ["a", "", "b"]
    assert split_name("") == [""]


def test_parse_keeps_the_text_and_separates_the_rest_wildcard() -> None:
    assert Pattern.parse("user.*") == Pattern("user.*", ("user", "*"), False)
    assert Pattern.parse("user::>") == Pattern("user::>", ("user",), True)
    assert Pattern.parse(">") == Pattern(">", (), True)
    assert Pattern.parse("a.b").literal and not Pattern.parse("a.*").literal
    assert str(Pattern.parse("x::*")) == "x::*"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("user*", '"*" and ">" must be whole segments'),
        ("user.a>", '"*" and ">" must be whole segments'),
        ("**", '"*" and ">" must be whole segments'),
        ("a:*", '"*" and ">" must be whole segments'),
        ("a:::*", '"*" and ">" must be whole segments'),
        ("a.>.b", '">" must be the last segment'),
        (">.>", '">" must be the last segment'),
    ],
)
def test_invalid_patterns_say_why(text: str, reason: str) -> None:
    with pytest.raises(PatternError) as info:
        Pattern.parse(text)
    assert str(info.value) == f"Invalid pattern {json.dumps(text)}: {reason}."
    assert isinstance(info.value, ValueError)


def test_an_invalid_pattern_is_shown_cut_short() -> None:
    with pytest.raises(PatternError, match=r'^Invalid pattern "x{76}\.\.\.: "\*" and'):
        Pattern.parse("x" * 200 + "*")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("user.*", "user.logged_in", True),
        ("user.*", "user::logged_in", True),
        ("user::*", "user.logged_in", True),
        ("user.*", "user", False),
        ("user.*", "user.a.b", False),
        ("user.>", "user.a", True),
        ("user.>", "user.a::b.c", True),
        ("user.>", "user", False),
        ("*.logged_in", "admin::logged_in", True),
        ("a.b", "a::b", True),
        ("a.b", "a.b.c", False),
        (">", "anything", True),
        (">", "", True),
        ("*", "a.b", False),
        ("a.*", "a.", True),
        ("*.*", "*.x", True),
        ("a:b.*", "a:b.c", True),
    ],
)
def test_matching(pattern: str, name: str, expected: bool) -> None:
    assert Pattern.parse(pattern).matches(name) is expected


# -- brute-force oracle ------------------------------------------------------------

LETTERS = ("a", "b")
SEGMENTS = st.sampled_from(["a", "b", "*"])


@st.composite
def patterns(draw: st.DrawFn, max_segments: int = 3) -> Pattern:
    segments = draw(st.lists(SEGMENTS, min_size=0, max_size=max_segments))
    rest = draw(st.booleans())
    if not segments and not rest:
        segments = [draw(SEGMENTS)]
    separators = draw(st.lists(st.sampled_from([".", "::"]), min_size=len(segments), max_size=len(segments)))
    parts = segments + ([">"] if rest else [])
    text = parts[0] + "".join(sep + part for sep, part in zip(separators, parts[1:], strict=False))
    return Pattern.parse(text)


def names(max_segments: int) -> list[str]:
    # "c" stands for every segment no pattern spells.
    out = []
    for length in range(1, max_segments + 1):
        out += [".".join(combo) for combo in itertools.product(("a", "b", "c"), repeat=length)]
    return out


NAMES = names(5)


@settings(max_examples=300, deadline=None)
@given(st.lists(patterns(), max_size=12), st.sampled_from(NAMES))
def test_index_finds_exactly_the_matching_patterns_in_order(stored: list[Pattern], name: str) -> None:
    index: PatternIndex[int] = PatternIndex()
    for key, pattern in enumerate(stored):
        index.add(pattern, key, key)
    assert len(index) == len(stored)
    assert index.match(name) == [key for key, p in enumerate(stored) if p.matches(name)]
    # Remove half and ask again: pruning must not lose the others.
    for key in range(0, len(stored), 2):
        index.remove(stored[key], key)
    expected = [key for key, p in enumerate(stored) if key % 2 and p.matches(name)]
    assert index.match(name) == expected
    assert sorted(index.walk()) == [key for key in range(len(stored)) if key % 2]
    for key in range(1, len(stored), 2):
        assert index.get(stored[key], key) == key
        index.remove(stored[key], key)
    assert len(index) == 0 and index._root.empty()


@settings(max_examples=400, deadline=None)
@given(patterns(), patterns())
def test_intersect_is_exactly_the_common_names(a: Pattern, b: Pattern) -> None:
    both = intersect(a, b)
    common = {n for n in NAMES if a.matches(n) and b.matches(n)}
    if both is None:
        assert not common
    else:
        assert {n for n in NAMES if both.matches(n)} == common
        assert common  # an intersection pattern always matches something


@settings(max_examples=400, deadline=None)
@given(patterns(), st.lists(patterns(), max_size=5))
def test_covered_agrees_with_enumeration(target: Pattern, cover: list[Pattern]) -> None:
    expected = all(any(p.matches(n) for p in cover) for n in NAMES if target.matches(n))
    assert covered(target, cover) is expected


def test_covered_examples() -> None:
    p = Pattern.parse
    assert covered(p("a.*"), [p("a.b"), p("a.*")])
    assert not covered(p("a.*"), [p("a.b")])
    assert covered(p("a.*"), [p("a.>")])
    assert not covered(p("a.>"), [p("a.*")])
    assert covered(p("a.>"), [p("a.*"), p("a.*.>")])
    assert covered(p("user.logged_in"), [p("user::*")])
    assert not covered(p(">"), [])
    # Many wildcards against many literals: memoised, so it stays quick.
    wide = p(".".join(["*"] * 12))
    assert not covered(wide, [p(".".join(["a"] * 12)), p(".".join(["b"] * 11) + ".*")])
    # A client's pattern may be far longer than any rule: no deeper walk (nor recursion) for that.
    huge = p(".".join(["*"] * 5000) + ".>")
    assert covered(huge, [p(">")]) and covered(huge, [p("*.*.>")])
    assert not covered(huge, [p("a.>"), p("*.b.>")])


def test_schema_regex_accepts_exactly_the_valid_patterns() -> None:
    regex = json.loads((SCHEMAS / "common.json").read_text(encoding="utf-8"))["$defs"]["pattern"]["pattern"]
    alphabet = ["a", ".", ":", "*", ">", "\n"]
    for length in range(1, 7):
        for combo in itertools.product(alphabet, repeat=length):
            text = "".join(combo)
            try:
                Pattern.parse(text)
                valid = True
            except PatternError:
                valid = False
            assert (re.search(regex, text) is not None) is valid, text
