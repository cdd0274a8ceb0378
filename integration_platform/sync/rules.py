"""User-registered conflict rules: a small registry of named functions.

A rule decides one conflict. It gets a :class:`ConflictCase` and returns the value to keep, or
:data:`UNRESOLVED` to send the conflict to the manual queue. Register it before the sync spec
is validated (a rule named in a spec but not registered is a spec error)::

    from integration_platform.sync import UNRESOLVED, register_rule

    @register_rule("longest_description")
    def longest(case):
        left, right = case.left or "", case.right or ""
        return left if len(left) >= len(right) else right
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class _Unresolved:
    def __repr__(self) -> str:
        return "UNRESOLVED"


UNRESOLVED: Any = _Unresolved()
"""Returned by a rule that cannot decide: the conflict waits for a person."""


@dataclass(frozen=True)
class ConflictCase:
    """Everything a rule may look at: the field, the base and both new values, when each side
    last changed, and the two systems."""

    sync_name: str
    platform_id: str
    field: str
    base: Any
    left: Any
    right: Any
    left_modified: datetime | None
    right_modified: datetime | None
    left_system: str
    right_system: str


Rule = Callable[[ConflictCase], Any]
_RULES: dict[str, Rule] = {}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    """Decorator registering ``fn`` as the conflict rule ``name`` (re-registering replaces)."""
    if not name or not isinstance(name, str):
        raise ValueError("a conflict rule needs a non-empty name")

    def decorate(fn: Rule) -> Rule:
        _RULES[name] = fn
        return fn

    return decorate


def registered_rules() -> dict[str, Rule]:
    """The registered rules by name (a copy)."""
    return dict(_RULES)


def get_rule(name: str) -> Rule:
    try:
        return _RULES[name]
    except KeyError:
        known = ", ".join(sorted(_RULES)) or "none"
        raise KeyError(
            f"no conflict rule named {name!r} is registered (registered: {known}); "
            "register it with @register_rule before running the sync"
        ) from None
