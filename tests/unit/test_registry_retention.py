"""Retention policy: newest kept, live and recently live versions never deleted."""

from __future__ import annotations

import pytest

from visionyard.errors import RegistryError
from visionyard.registry.history import AliasEvent, new_event_key
from visionyard.registry.retention import plan_retention


def ev(n: int, frm: str | None, to: str, alias: str = "production") -> AliasEvent:
    return AliasEvent(new_event_key(n, "00"), alias, frm, to, "ann", 0, "promote")


VERSIONS = [str(v) for v in range(1, 11)]


def test_keeps_the_newest_and_deletes_the_rest_oldest_first() -> None:
    plan = plan_retention(VERSIONS, {}, [], keep_last=3, protect_events=5)
    assert plan.delete == tuple(str(v) for v in range(1, 8))
    assert list(plan.keep) == ["10", "9", "8"]


def test_never_deletes_a_version_held_by_an_alias() -> None:
    plan = plan_retention(VERSIONS, {"production": "2", "staging": "2"}, [], keep_last=0,
                          protect_events=0)  # fmt: skip
    assert "2" not in plan.delete
    assert plan.keep == {"2": "held by alias 'production'"}
    assert len(plan.delete) == 9


def test_protects_versions_named_in_the_last_k_events() -> None:
    history = [ev(1, None, "1"), ev(2, "1", "3"), ev(3, "3", "5")]
    plan = plan_retention(VERSIONS, {"production": "5"}, history, keep_last=1, protect_events=1)
    assert set(plan.keep) == {"10", "5", "3"}
    plan = plan_retention(VERSIONS, {"production": "5"}, history, keep_last=1, protect_events=3)
    assert set(plan.keep) == {"10", "5", "3", "1"}


def test_orders_versions_numerically() -> None:
    plan = plan_retention(["9", "10", "100"], {}, [], keep_last=1, protect_events=0)
    assert plan.delete == ("9", "10")


def test_negative_counts_are_refused() -> None:
    with pytest.raises(RegistryError):
        plan_retention(VERSIONS, {}, [], keep_last=-1, protect_events=0)
