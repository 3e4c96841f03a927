"""Event-name patterns: the syntax, matching, a trie index, and set algebra on patterns.

A name is a sequence of *segments* separated by ``.`` or ``::``, split from
left to right (so ``a:::b`` is ``a`` then ``:b``); both separators count the
same, so ``user.logged_in`` and ``user::logged_in`` are the same segment
sequence for matching.  A segment may be empty (``a..b`` has three).

In a pattern, ``*`` as a whole segment matches exactly one segment, and ``>``
as the whole **last** segment matches one or more remaining segments.  Every
other segment matches only an equal segment.  ``*`` or ``>`` inside a longer
segment, ``>`` before the last segment, and the empty pattern are invalid.

Besides matching one name (``Pattern.matches``) and finding every pattern
that matches a name without looking at the others (``PatternIndex``), the
permission rules need two decisions about whole sets of names, both exact on
this syntax: ``intersect`` (the names two patterns both match, which is again
a pattern or nothing) and ``covered`` (whether a union of patterns matches
every name one pattern matches).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Generic, TypeVar

from ._errors import describe

__all__ = ["ONE", "REST", "Pattern", "PatternError", "PatternIndex", "covered", "intersect", "split_name"]

#: The wildcard for exactly one segment, and the one for the rest of the name.
ONE: Final = "*"
REST: Final = ">"
_SEPARATOR: Final = re.compile(r"\.|::")
_WILDCARD_CHARS: Final = frozenset("*>")
# Patterns up to this length are cached once parsed (clients resubscribe to
# the same few), and so are the matches of names up to this length; longer
# ones are rare and would let a peer pin memory.
_CACHE_MAX_LENGTH: Final = 256
_MATCH_CACHE_SIZE: Final = 10_000

T = TypeVar("T")


class PatternError(ValueError):
    """A pattern that does not follow the syntax; ``str()`` is the wire's error text."""


def split_name(name: str) -> list[str]:
    """The segments of an event name (``.`` and ``::`` separate, left to right)."""
    return _SEPARATOR.split(name)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern: literal and ``*`` segments, and whether ``>`` ends it.

    ``segments`` excludes a final ``>``; ``rest`` says it was there, so the
    pattern matches names with at least one segment beyond ``segments``.
    Build one with ``Pattern.parse``.
    """

    text: str
    segments: tuple[str, ...]
    rest: bool

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """Parse ``text``, or raise ``PatternError`` saying what is wrong with it."""
        return _parse_cached(text) if len(text) <= _CACHE_MAX_LENGTH else _parse(text)

    def matches(self, name: str) -> bool:
        """Whether the event name ``name`` matches this pattern."""
        return self.matches_segments(split_name(name))

    def matches_segments(self, names: Sequence[str]) -> bool:
        """Whether a name already split into segments matches this pattern."""
        own = self.segments
        if len(names) < len(own) or (len(names) > len(own)) != self.rest:
            return False
        return all(mine in (ONE, theirs) for mine, theirs in zip(own, names, strict=False))

    @property
    def literal(self) -> bool:
        """Whether the pattern has no wildcard (it matches one segment sequence only)."""
        return not self.rest and ONE not in self.segments

    def __str__(self) -> str:
        return self.text


def _invalid(text: str, reason: str) -> PatternError:
    # The pattern is shown like every other value in an error text: JSON, cut at 80.
    return PatternError(f"Invalid pattern {describe(text)}: {reason}.")


def _parse(text: str) -> Pattern:
    if not text:
        raise _invalid(text, "it is empty")
    parts = split_name(text)
    for position, part in enumerate(parts):
        if part in (ONE, REST) or not _WILDCARD_CHARS.intersection(part):
            if part == REST and position != len(parts) - 1:
                raise _invalid(text, '">" must be the last segment')
            continue
        raise _invalid(text, '"*" and ">" must be whole segments')
    if parts[-1] == REST:
        return Pattern(text, tuple(parts[:-1]), True)
    return Pattern(text, tuple(parts), False)


_parse_cached: Final = lru_cache(maxsize=4096)(_parse)


def _one(a: str, b: str) -> str | None:
    # The segments both of two pattern segments match, as a pattern segment.
    if a == ONE:
        return b
    if b == ONE or a == b:
        return a
    return None


def intersect(a: Pattern, b: Pattern) -> Pattern | None:
    """The pattern of the names both ``a`` and ``b`` match, or None if there are none."""
    if len(a.segments) > len(b.segments):
        a, b = b, a
    # Now a is the shorter (or equal) one; its extra reach comes only from ">".
    if len(a.segments) < len(b.segments) and not a.rest:
        return None
    if len(a.segments) == len(b.segments) and a.rest != b.rest:
        return None
    merged = []
    for left, right in zip(a.segments, b.segments, strict=False):
        segment = _one(left, right)
        if segment is None:
            return None
        merged.append(segment)
    merged.extend(b.segments[len(a.segments) :])
    rest = a.rest and b.rest
    text = ".".join(merged + ([REST] if rest else []))
    return Pattern(text, tuple(merged), rest)


def covered(target: Pattern, cover: Iterable[Pattern]) -> bool:
    """Whether every name ``target`` matches is matched by at least one pattern of ``cover``.

    Walks the target's segments, keeping the cover patterns that still agree
    with the name so far.  Where the target allows any segment (``*``, or
    past its ``>``), only the literals the cover spells there plus "any other
    segment" can make a difference, so those few classes are explored; the
    states are memoised, and past the longest cover pattern only its ``>``
    patterns are left, which match whatever follows: so the walk (and its
    recursion) is never deeper than the cover, however long the target.
    """
    patterns = tuple(p for p in cover if intersect(target, p) is not None)
    if not patterns:
        return False
    horizon = max(len(p.segments) for p in patterns) + 1
    memo: dict[tuple[int, frozenset[int]], bool] = {}

    def ends_ok(position: int, alive: frozenset[int]) -> bool:
        # Some live cover pattern matches a name that ends here.
        for index in alive:
            pattern = patterns[index]
            length = len(pattern.segments)
            if (length == position and not pattern.rest) or (pattern.rest and position > length):
                return True
        return False

    def walk(position: int, alive: frozenset[int]) -> bool:
        key = (position, alive)
        if key in memo:
            return memo[key]
        length = len(target.segments)
        can_end = (position == length and not target.rest) or (target.rest and position > length)
        can_go_on = position < length or target.rest
        result = True
        if position >= horizon:
            # Every cover pattern still alive is a ">" one past its own
            # segments (the others died on the way here): each matches every
            # name that ends here or goes on.
            assert all(patterns[i].rest for i in alive)
            result = bool(alive)
        elif can_end and not ends_ok(position, alive):
            result = False
        elif can_go_on:
            own = target.segments[position] if position < length else ONE
            choices: set[str | None] = {own} if own != ONE else {None}
            if own == ONE:
                for index in alive:
                    segments = patterns[index].segments
                    if position < len(segments) and segments[position] != ONE:
                        choices.add(segments[position])
            for choice in choices:
                # None stands for "a segment no cover pattern spells here".
                following = frozenset(i for i in alive if _admits(patterns[i], position, choice))
                if not following or not walk(position + 1, following):
                    result = False
                    break
        memo[key] = result
        return result

    return walk(0, frozenset(range(len(patterns))))


def _admits(pattern: Pattern, position: int, segment: str | None) -> bool:
    segments = pattern.segments
    if position < len(segments):
        return segments[position] == ONE or segments[position] == segment
    return pattern.rest


class _Node(Generic[T]):
    """One trie node: the patterns that end here, those whose ``>`` starts here, children."""

    __slots__ = ("here", "literal", "rest", "star")

    def __init__(self) -> None:
        self.literal: dict[str, _Node[T]] = {}
        self.star: _Node[T] | None = None
        self.here: dict[int, T] = {}
        self.rest: dict[int, T] = {}

    def empty(self) -> bool:
        return not (self.literal or self.star or self.here or self.rest)


class PatternIndex(Generic[T]):
    """Values stored under patterns, found by event name through a segment trie.

    Finding the matches of a name walks the trie once per segment, following
    the literal child and the ``*`` child of every node reached, and collects
    the ``>`` bucket of each node passed; the cost depends on the name and the
    trie's shape, not on how many patterns there are.  The result per name is
    cached until the next ``add`` or ``remove`` (the same few names recur), so
    a steady set of patterns costs one dict lookup per publish.
    """

    __slots__ = ("_matches", "_root", "count")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._matches: dict[str, list[T]] = {}
        #: Number of values stored (a plain attribute: the broker tests it per publish).
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, pattern: Pattern, key: int, value: T) -> None:
        """Store ``value`` under ``pattern``; ``key`` (unique) orders and removes it."""
        node = self._root
        for segment in pattern.segments:
            if segment == ONE:
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                node = node.literal.setdefault(segment, _Node())
        (node.rest if pattern.rest else node.here)[key] = value
        self.count += 1
        self._matches.clear()

    def remove(self, pattern: Pattern, key: int) -> None:
        """Remove what ``add(pattern, key, ...)`` stored, pruning emptied nodes."""
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for segment in pattern.segments:
            path.append((node, segment))
            child = node.star if segment == ONE else node.literal[segment]
            assert child is not None
            node = child
        del (node.rest if pattern.rest else node.here)[key]
        self.count -= 1
        self._matches.clear()
        for parent, segment in reversed(path):
            if not node.empty():
                break
            if segment == ONE:
                parent.star = None
            else:
                del parent.literal[segment]
            node = parent

    def get(self, pattern: Pattern, key: int) -> T | None:
        """The value stored under ``pattern`` and ``key``, if any."""
        node: _Node[T] | None = self._root
        for segment in pattern.segments:
            if node is None:
                return None
            node = node.star if segment == ONE else node.literal.get(segment)
        if node is None:
            return None
        return (node.rest if pattern.rest else node.here).get(key)

    def match(self, name: str) -> list[T]:
        """Every value whose pattern matches ``name``, in the order of their keys.

        The list may be shared with later calls: read it, never change it.
        """
        cached = self._matches.get(name)
        if cached is not None:
            return cached
        values = self._walk_name(name)
        if len(name) <= _CACHE_MAX_LENGTH and len(self._matches) < _MATCH_CACHE_SIZE:
            self._matches[name] = values
        return values

    def _walk_name(self, name: str) -> list[T]:
        found: dict[int, T] = {}
        frontier = [self._root]
        for segment in split_name(name):
            following = []
            for node in frontier:
                if node.rest:
                    # This segment and any after it are the one-or-more that ">" takes.
                    found.update(node.rest)
                child = node.literal.get(segment)
                if child is not None:
                    following.append(child)
                if node.star is not None:
                    following.append(node.star)
            if not following:
                break
            frontier = following
        else:
            for node in frontier:
                if node.here:
                    found.update(node.here)
        if len(found) > 1:
            return [found[key] for key in sorted(found)]
        return list(found.values())

    def walk(self) -> Iterable[T]:
        """Every stored value (for consistency checks)."""
        stack = [self._root]
        while stack:
            node = stack.pop()
            yield from node.here.values()
            yield from node.rest.values()
            stack.extend(node.literal.values())
            if node.star is not None:
                stack.append(node.star)
