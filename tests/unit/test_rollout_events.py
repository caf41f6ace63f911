"""The chain of rollout events: the smallest key among an event's followers wins, and what
follows a loser never counts."""

from __future__ import annotations

from visionyard.monitor.rollout.events import (
    EVENT_PREFIX,
    RolloutEvent,
    chain,
    decode_event,
    new_key,
    superseded,
)
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.state import Rollout

STATE = Rollout(
    model="m", rollout_id="r1", candidate="2", baseline="1", mode="canary", steps=(5, 100),
    step=0, step_started_at=0.0, sticky_header=None, policy=Policy(), status="running",
    started_at=0.0,
)  # fmt: skip


def event(ns: int, prev: RolloutEvent | None, kind: str = "advance") -> RolloutEvent:
    key = new_key(ns)
    return RolloutEvent(key, prev.key if prev else None, kind, "ann", ns // 10**6,  # type: ignore[arg-type]
                        STATE.evolve(basis=key))  # fmt: skip


def test_keys_sort_in_time_order_and_are_unique() -> None:
    keys = [new_key(5), new_key(5), new_key(10**18)]
    assert len(set(keys)) == 3
    assert keys[2] > keys[0]
    assert all(k.startswith(EVENT_PREFIX) for k in keys)


def test_the_first_follower_wins_and_a_losers_followers_never_count() -> None:
    start = event(1, None, "start")
    first, late = event(2, start), event(3, start)
    after_late = event(4, late, "promote")
    after_first = event(5, first, "rollback")
    events = sorted([after_first, late, start, after_late, first], key=lambda e: e.key)
    assert chain(events) == [start, first, after_first]
    assert superseded(events) == [late, after_late]


def test_two_starts_from_nothing_keep_the_first() -> None:
    one, two = event(1, None, "start"), event(2, None, "start")
    assert chain([one, two]) == [one]
    assert chain([]) == []


def test_an_event_round_trips_through_its_tag() -> None:
    start = event(1, None, "start")
    assert decode_event("m", *start.to_tag()) == start
