"""The alias-move protocol on an in-memory store: conflicts, convergence, races, recovery.

The fake store makes each operation atomic (as MLflow's are) and can run a hook before any
operation, which lets the tests force the interleavings that matter; a randomised test runs
many threads with random delays and checks the invariant: alias == last event, no event lost.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from visionyard.errors import RegistryError
from visionyard.registry.aliases import converge, move_alias, read_state, reconcile, sync_state
from visionyard.registry.history import AliasEvent, new_event, parse_history
from visionyard.tracking.registry_client import ModelInfo

Hook = Callable[[str], None]


class FakeStore:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self.lock = threading.Lock()
        self.hook: Hook | None = None
        self.alias_writes = 0

    def _enter(self, op: str) -> None:
        if self.hook is not None:
            self.hook(op)

    def get_model(self, name: str) -> ModelInfo:
        self._enter("read")
        with self.lock:
            return ModelInfo(name, 0, 0, "", None, dict(self.tags), dict(self.aliases))

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._enter("tag")
        with self.lock:
            assert key not in self.tags, "an event key was reused"
            self.tags[key] = value

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._enter("alias")
        with self.lock:
            self.aliases[alias] = version
            self.alias_writes += 1


def promote(store: FakeStore, version: str, actor: str = "ann") -> AliasEvent:
    """Plan and move, as promote() does."""
    state = read_state(store, "m", "production")
    event = new_event("production", state.holder, version, actor=actor, kind="promote")
    move_alias(store, "m", event, state.last.key if state.last else None)
    return event


def invariant(store: FakeStore) -> AliasEvent:
    history = parse_history(store.tags)
    assert history, "no events"
    last = [e for e in history if e.alias == "production"][-1]
    assert store.aliases["production"] == last.to_version
    return last


def test_a_move_appends_one_event_and_sets_the_alias() -> None:
    store = FakeStore()
    first = promote(store, "1")
    second = promote(store, "2")
    assert invariant(store) == second
    assert parse_history(store.tags) == [first, second]
    assert (second.from_version, first.from_version) == ("1", None)


def test_a_move_planned_on_a_stale_state_changes_nothing() -> None:
    store = FakeStore()
    promote(store, "1")
    stale = read_state(store, "m", "production")
    promote(store, "2")
    event = new_event("production", stale.holder, "3", actor="bob", kind="promote")
    with pytest.raises(RegistryError, match="moved while this command ran"):
        move_alias(store, "m", event, stale.last.key if stale.last else None)
    assert len(store.tags) == 2
    assert store.aliases["production"] == "2"


def test_two_moves_passing_the_compare_together_settle_on_the_greater_key() -> None:
    """A and B both pass step 2; A appends first (smaller key); A's stale alias write lands
    after B finished. A's convergence must repair it, and A must learn it lost."""
    store = FakeStore()
    promote(store, "1")
    state = read_state(store, "m", "production")
    base = state.last.key if state.last else None
    a = new_event("production", "1", "2", actor="a", kind="promote")
    b = new_event("production", "1", "3", actor="b", kind="promote")
    store.set_model_tag("m", *a.to_tag())  # A: step 3
    result_b = _steps_4_5(store, b)  # B: step 3 + converge (sees its own, greater key)
    assert result_b == ("3", b.key)
    store.set_alias("m", "production", "2")  # A's late, stale write of its own target
    holder, winner = converge(store, "m", "production")
    assert (holder, winner.key) == ("3", b.key)
    assert invariant(store) == b
    assert {e.key for e in parse_history(store.tags)} >= {a.key, b.key}
    assert base is not None


def _steps_4_5(store: FakeStore, event: AliasEvent) -> tuple[str, str]:
    store.set_model_tag("m", *event.to_tag())
    holder, winner = converge(store, "m", "production")
    return holder, winner.key


@pytest.mark.parametrize("seed", range(8))
def test_random_concurrent_moves_keep_the_invariant(seed: int) -> None:
    store = FakeStore()
    promote(store, "0")
    rng = random.Random(seed)
    lock = threading.Lock()

    def jitter(_op: str) -> None:
        with lock:
            delay = rng.random() * 0.002
        time.sleep(delay)

    store.hook = jitter
    recorded: list[str] = []
    errors: list[str] = []

    def worker(index: int) -> None:
        for round_ in range(4):
            try:
                recorded.append(promote(store, f"{index}{round_}", actor=f"w{index}").key)
            except RegistryError as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.hook = None
    invariant(store)
    keys = {e.key for e in parse_history(store.tags)}
    assert set(recorded) <= keys
    assert len(keys) == 1 + len(recorded)
    assert all("moved while this command ran" in e for e in errors)


def test_superseded_move_is_reported_but_kept() -> None:
    store = FakeStore()
    promote(store, "1")
    state = read_state(store, "m", "production")
    mine = new_event("production", "1", "2", actor="a", kind="promote")
    theirs = new_event("production", "1", "3", actor="b", kind="promote")

    def sneak_in(op: str) -> None:
        if op == "tag" and store.hook is not None:
            store.hook = None
            store.set_model_tag("m", *theirs.to_tag())

    store.hook = sneak_in
    result = move_alias(store, "m", mine, state.last.key if state.last else None)
    assert not result.applied
    assert result.winner == theirs
    assert result.holder == "3"
    assert invariant(store) == theirs
    assert mine.key in store.tags


def test_interrupted_move_is_pending_then_completed_by_reconcile() -> None:
    store = FakeStore()
    promote(store, "1")

    def server_gone(op: str) -> None:
        if op == "alias":
            raise ConnectionError("server went away")

    store.hook = server_gone
    with pytest.raises(ConnectionError):
        promote(store, "2")
    store.hook = None
    assert store.aliases["production"] == "1"  # never a half-moved value
    assert read_state(store, "m", "production").sync == "pending"
    state, completed = reconcile(store, "m", "production")
    assert completed
    assert state.holder == "2"
    assert state.sync == "in-sync"


def test_reconcile_leaves_drift_and_in_sync_alone() -> None:
    store = FakeStore()
    promote(store, "1")
    promote(store, "2")
    _, completed = reconcile(store, "m", "production")
    assert not completed
    store.aliases["production"] = "7"  # moved with a stock MLflow client
    state, completed = reconcile(store, "m", "production")
    assert (state.sync, completed, store.aliases["production"]) == ("drift", False, "7")


def test_sync_states() -> None:
    event = new_event("production", "1", "2", actor="a", kind="promote")
    assert sync_state("2", event) == "in-sync"
    assert sync_state("1", event) == "pending"
    assert sync_state("5", event) == "drift"
    assert sync_state("5", None) == "no-history"


def test_converge_gives_up_when_the_alias_never_settles() -> None:
    store = FakeStore()
    promote(store, "1")
    promote(store, "2")

    def saboteur(op: str) -> None:
        if op == "read":
            store.aliases["production"] = "9"

    store.hook = saboteur
    with pytest.raises(RegistryError, match="kept changing"):
        converge(store, "m", "production")
