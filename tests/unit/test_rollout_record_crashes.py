"""Recording rollout transitions under races and crashes (two deciders reading one head, a
decider killed before or after its event, a late append, a lost projection write), on the
in-memory registry of :mod:`tests.unit.test_rollout_record`."""

from __future__ import annotations

import threading

import pytest

from tests.unit.test_rollout_record import (
    BAD,
    GOOD,
    Died,
    FakeService,
    decisions,
    production_events,
    start,
    step,
)
from visionyard.errors import RegistryError, TrackingError
from visionyard.monitor.rollout.decide import Decision
from visionyard.monitor.rollout.events import EVENT_PREFIX, all_events
from visionyard.monitor.rollout.lifecycle import abort_rollout
from visionyard.monitor.rollout.state import ROLLOUT_TAG, Rollout, read_rollout


def test_two_deciders_reading_the_same_head_record_one_decision() -> None:
    """Both compare before either appends; the barrier releases them together, so the second
    append lands within the first one's settle time."""
    service = FakeService()
    start(service)
    both_read = threading.Barrier(2, timeout=5)

    def before(op: str, key: str) -> None:
        if op == "tag" and key.startswith(EVENT_PREFIX):
            both_read.wait()  # neither appends before the other has compared

    service.client.before = before
    results: list[Decision | None] = []
    figures = [GOOD, BAD]

    def decider(i: int) -> None:
        results.append(step(service, figures[i], settle_s=0.2))

    threads = [threading.Thread(target=decider, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    service.client.before = None
    events = all_events("m", service.client.tags)
    assert len(events) == 3  # start + two appended decisions ...
    assert decisions(service) == ["start", decisions(service)[1]]  # ... one on the chain
    assert sum(r is not None for r in results) == 1, results
    state = read_rollout(service.client, "m")
    won = next(r for r in results if r is not None)
    assert state is not None
    assert state.rule == won.rule
    assert Rollout.from_json(service.client.tags[ROLLOUT_TAG]) == state


def test_a_promotion_killed_after_its_event_is_completed_once_by_the_retry() -> None:
    service = FakeService()
    start(service, steps=(100,))

    def die(op: str, key: str) -> None:
        if op == "tag" and key.startswith(EVENT_PREFIX):
            raise Died

    service.client.after = die
    with pytest.raises(Died):
        step(service)
    service.client.after = None
    assert service.client.aliases["production"] == "1"  # the decision is recorded, not applied
    assert read_rollout(service.client, "m").status == "promoted"  # type: ignore[union-attr]
    assert step(service, grace_s=3600) is None  # too young: its writer may still be at it
    assert service.client.aliases["production"] == "1"
    assert step(service, grace_s=0) is None  # the retry completes it
    assert service.client.aliases["production"] == "2"
    assert step(service, grace_s=0) is None
    assert production_events(service) == [("1", "2", "promote")]
    assert decisions(service) == ["start", "promote"]
    assert Rollout.from_json(service.client.tags[ROLLOUT_TAG]).status == "promoted"


def test_a_decider_killed_before_its_event_recorded_nothing() -> None:
    service = FakeService()
    start(service, steps=(100,))

    def die(op: str, key: str) -> None:
        if op == "tag" and key.startswith(EVENT_PREFIX):
            raise Died

    service.client.before = die
    with pytest.raises(Died):
        step(service)
    service.client.before = None
    assert decisions(service) == ["start"]
    assert (step(service) or Decision("hold", "", {}, 0)).action == "promote"
    assert decisions(service) == ["start", "promote"]


def test_a_late_append_with_a_smaller_key_still_converges_to_one_decision() -> None:
    """Outside the timing assumption (a decider stalled between its compare and its append
    for longer than the settle time), both report winning, but every reader, the projection
    and production all end on the chain's one decision."""
    service = FakeService()
    start(service, steps=(100,))
    a_done = threading.Event()
    b_compared = threading.Event()

    def before(op: str, key: str) -> None:
        if op == "tag" and key.startswith(EVENT_PREFIX) and threading.current_thread().name == "b":
            b_compared.set()
            a_done.wait(5)  # B's key is older, but B writes after A finished

    service.client.before = before
    b = threading.Thread(target=lambda: step(service, BAD), name="b")
    b.start()
    assert b_compared.wait(5)
    assert (step(service) or Decision("hold", "", {}, 0)).action == "promote"
    assert service.client.aliases["production"] == "2"
    a_done.set()
    b.join(5)
    state = read_rollout(service.client, "m")
    assert state is not None
    assert state.status == "rolled_back"
    assert Rollout.from_json(service.client.tags[ROLLOUT_TAG]) == state
    assert service.client.aliases["production"] == "1"
    assert decisions(service) == ["start", "rollback"]


def test_a_manual_command_after_a_killed_promotion_completes_it_first() -> None:
    service = FakeService()
    start(service, steps=(100,))

    def die(op: str, key: str) -> None:
        if op == "tag" and key.startswith(EVENT_PREFIX):
            raise Died

    service.client.after = die
    with pytest.raises(Died):
        step(service)
    service.client.after = None
    with pytest.raises(RegistryError, match="its last one is promoted"):
        abort_rollout(service, "m", settle_s=0)  # type: ignore[arg-type]
    assert service.client.aliases["production"] == "2"
    assert production_events(service) == [("1", "2", "promote")]


def test_a_recorded_decision_whose_completion_fails_is_not_reported_stale() -> None:
    service = FakeService()
    start(service, steps=(100,))

    def refuse(op: str, key: str) -> None:
        if op == "tag" and key == ROLLOUT_TAG:
            raise RegistryError("the store refused the projection")

    service.client.before = refuse
    with pytest.raises(RegistryError, match="store refused"):
        step(service)
    service.client.before = None
    assert read_rollout(service.client, "m").status == "promoted"  # type: ignore[union-attr]
    assert step(service, grace_s=0) is None  # the next poll completes it
    assert Rollout.from_json(service.client.tags[ROLLOUT_TAG]).status == "promoted"


def test_a_lost_first_write_of_the_projection_is_read_again() -> None:
    service = FakeService()
    lost: list[str] = []

    def race(op: str, key: str) -> None:
        if op == "tag" and key == ROLLOUT_TAG and not lost:
            lost.append(key)
            raise TrackingError("UNIQUE constraint failed: registered_model_tags.key")

    service.client.before = race
    started = start(service)
    assert lost == [ROLLOUT_TAG]
    assert Rollout.from_json(service.client.tags[ROLLOUT_TAG]) == started
