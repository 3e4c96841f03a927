"""Per-client allow and deny rules for publishing and subscribing, by event-name pattern.

A client may carry, for each of publish and subscribe, an *allow* list (None:
every name) and a *deny* list of patterns (``_patterns`` syntax; a pattern
without wildcards names one segment sequence).  A name is permitted when no
deny pattern matches it and, if there is an allow list, one of its patterns
does: deny wins.

Exact names are decided once, when published or subscribed.  A pattern
subscription is refused unless it can match at least one permitted name
(decided exactly with ``intersect`` and ``covered``), and when it could also
match a name that is not permitted it carries the rule as a delivery filter,
so a wide pattern never receives a denied name.  Clients without rules have
no ``Rule`` at all, and their subscriptions no filter: they pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._errors import ErrorCode, RequestError, describe
from ._patterns import Pattern, covered, intersect, split_name

__all__ = ["ClientRules", "Rule", "parse_patterns"]


def parse_patterns(patterns: Iterable[str] | None) -> tuple[Pattern, ...] | None:
    """Parse a rule list (None stays None); raises ``PatternError`` on a bad one."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        # A bare string would otherwise become one pattern per character.
        raise TypeError("a rule is a sequence of patterns, not one string")
    return tuple(Pattern.parse(text) for text in patterns)


@dataclass(frozen=True, slots=True)
class Rule:
    """Which names one operation may use: ``allow`` (None: all), minus ``deny``."""

    allow: tuple[Pattern, ...] | None
    deny: tuple[Pattern, ...]

    def permits(self, segments: Sequence[str]) -> bool:
        """Whether a name, split into segments, is permitted (deny wins)."""
        for pattern in self.deny:
            if pattern.matches_segments(segments):
                return False
        if self.allow is None:
            return True
        return any(pattern.matches_segments(segments) for pattern in self.allow)

    def permits_name(self, name: str) -> bool:
        """Whether an event name is permitted (the delivery filter of a pattern subscription)."""
        return self.permits(split_name(name))

    def reaches(self, pattern: Pattern) -> bool:
        """Whether ``pattern`` matches at least one permitted name."""
        candidates = [pattern] if self.allow is None else [intersect(pattern, a) for a in self.allow]
        return any(c is not None and not covered(c, self.deny) for c in candidates)

    def contains(self, pattern: Pattern) -> bool:
        """Whether every name ``pattern`` matches is permitted (then no filter is needed)."""
        if any(intersect(pattern, d) is not None for d in self.deny):
            return False
        return self.allow is None or covered(pattern, self.allow)


def _rule(allow: tuple[Pattern, ...] | None, deny: tuple[Pattern, ...] | None) -> Rule | None:
    if allow is None and not deny:
        return None
    return Rule(allow, deny or ())


@dataclass(frozen=True, slots=True)
class ClientRules:
    """A client's compiled rules; ``None`` for an operation that is unrestricted."""

    publish: Rule | None
    subscribe: Rule | None

    @classmethod
    def build(
        cls,
        publish_allow: tuple[Pattern, ...] | None,
        publish_deny: tuple[Pattern, ...] | None,
        subscribe_allow: tuple[Pattern, ...] | None,
        subscribe_deny: tuple[Pattern, ...] | None,
    ) -> ClientRules | None:
        """The rules of these lists, or None if they restrict nothing."""
        publish = _rule(publish_allow, publish_deny)
        subscribe = _rule(subscribe_allow, subscribe_deny)
        if publish is None and subscribe is None:
            return None
        return cls(publish, subscribe)

    def check_publish(self, event_name: str) -> None:
        """Raise ``PUBLISH_FORBIDDEN`` if this client may not publish ``event_name``."""
        if self.publish is not None and not self.publish.permits_name(event_name):
            raise RequestError(
                f"You are not allowed to publish events named {describe(event_name)}.",
                code=ErrorCode.PUBLISH_FORBIDDEN,
            )

    def check_subscribe(self, event_name: str) -> None:
        """Raise ``SUBSCRIBE_FORBIDDEN`` if this client may not subscribe to ``event_name``."""
        if self.subscribe is not None and not self.subscribe.permits_name(event_name):
            raise RequestError(
                f"You are not allowed to subscribe to events named {describe(event_name)}.",
                code=ErrorCode.SUBSCRIBE_FORBIDDEN,
            )

    def pattern_filter(self, pattern: Pattern) -> Rule | None:
        """The delivery filter a pattern subscription needs (None: none), or raise if useless.

        Raises ``SUBSCRIBE_FORBIDDEN`` when the pattern cannot match a single
        permitted name.
        """
        rule = self.subscribe
        if rule is None or rule.contains(pattern):
            return None
        if not rule.reaches(pattern):
            raise RequestError(
                f"You are not allowed to subscribe to any event matching {describe(pattern.text)}.",
                code=ErrorCode.SUBSCRIBE_FORBIDDEN,
            )
        return rule
