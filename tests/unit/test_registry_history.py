"""Alias history: event encoding, ordering, holder replay, rollback targets, recent versions."""

from __future__ import annotations

import pytest

from visionyard.errors import RegistryError
from visionyard.registry.history import (
    EVENT_PREFIX,
    AliasEvent,
    EventKind,
    decode_event,
    holder_stack,
    last_event,
    new_event,
    new_event_key,
    parse_history,
    recent_versions,
    rollback_target,
    superseded,
)


def ev(
    n: int, to: str, frm: str | None, kind: EventKind = "promote", alias: str = "production"
) -> AliasEvent:
    return AliasEvent(new_event_key(n, "0000000a"), alias, frm, to, "ann", n // 1_000_000, kind)


def test_event_round_trips_through_a_tag() -> None:
    event = new_event(
        "staging",
        "3",
        "4",
        actor="bob",
        kind="force",
        reason="hotfix",
        gate_report="r",
        gate_passed=False,
    )
    key, value = event.to_tag()
    assert key.startswith(EVENT_PREFIX)
    assert decode_event(key, value) == event


def test_keys_sort_in_time_order_and_are_unique() -> None:
    keys = [new_event_key() for _ in range(200)]
    assert len(set(keys)) == 200
    assert new_event_key(5, "ff") < new_event_key(40, "00") < new_event_key(10**18, "00")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vy.other", '{"alias":"a","to":"1","time_ms":1,"kind":"promote"}'),
        ("vy.event.1.a", "not json"),
        ("vy.event.1.a", '{"alias":"a","time_ms":1,"kind":"promote"}'),
        ("vy.event.1.a", '{"alias":"a","to":"1","time_ms":1,"kind":"teleport"}'),
        ("vy.event.1.a", '["a"]'),
    ],
)
def test_malformed_tags_are_not_events(key: str, value: str) -> None:
    assert decode_event(key, value) is None


def test_parse_history_orders_by_key_and_ignores_other_tags() -> None:
    later, earlier = ev(2_000_000, "2", "1"), ev(1_000_000, "1", None)
    tags = dict([later.to_tag(), earlier.to_tag(), ("vy.task", "classification")])
    assert parse_history(tags) == [earlier, later]
    assert last_event([earlier, later], "production") == later
    assert last_event([earlier, later], "staging") is None


def test_stack_pushes_promotions_and_rollbacks_truncate() -> None:
    events = [ev(1, "1", None), ev(2, "2", "1"), ev(3, "3", "2"), ev(4, "2", "3", "rollback")]
    assert holder_stack(events) == ["1", "2"]
    events.append(ev(5, "1", "2", "rollback"))
    assert holder_stack(events) == ["1"]
    events.append(ev(6, "4", "1"))
    assert holder_stack(events) == ["1", "4"]


def test_stack_drops_a_promotion_that_lost_a_race() -> None:
    # both planned against holder 1; the event with the greater key (to 3) won
    events = [ev(1, "1", None), ev(2, "2", "1"), ev(3, "3", "1")]
    assert holder_stack(events) == ["1", "3"]


def test_stack_ignores_repeats_and_unknown_bases() -> None:
    events = [ev(1, "1", None), ev(2, "1", "1"), ev(3, "5", "9")]
    assert holder_stack(events) == ["1", "5"]


def test_rollback_target_walks_back_and_skips_deleted_versions() -> None:
    events = [ev(1, "1", None), ev(2, "2", "1"), ev(3, "3", "2")]
    assert rollback_target(events, "production", lambda v: True) == ("3", "2")
    assert rollback_target(events, "production", lambda v: v != "2") == ("3", "1")


def test_rollback_target_refuses_without_an_earlier_holder() -> None:
    with pytest.raises(RegistryError, match="no history"):
        rollback_target([], "production", lambda v: True)
    with pytest.raises(RegistryError, match="no earlier holder"):
        rollback_target([ev(1, "1", None)], "production", lambda v: True)
    with pytest.raises(RegistryError, match="no earlier holder"):
        rollback_target([ev(1, "1", None), ev(2, "2", "1")], "production", lambda v: v == "2")


def test_recent_versions_covers_both_sides_of_the_last_k_events_per_alias() -> None:
    events = [ev(1, "1", None), ev(2, "2", "1"), ev(3, "3", "2"), ev(4, "7", None, alias="staging")]
    assert set(recent_versions(events, 1)) == {"3", "2", "7"}
    assert set(recent_versions(events, 3)) == {"1", "2", "3", "7"}
    assert recent_versions(events, 0) == {}


def test_superseded_marks_the_move_that_lost_a_race() -> None:
    lost, won = ev(2, "2", "1"), ev(3, "3", "1")
    events = [ev(1, "1", None), lost, won, ev(4, "2", "3", "rollback"), ev(5, "4", "2")]
    assert superseded(events) == {lost.key}
    assert superseded([ev(1, "1", None), ev(2, "2", "1", alias="staging")]) == set()
