"""Recording rollout transitions on an in-memory registry: once under races, once after a crash.

The fake client makes each operation atomic (as MLflow's are) and runs a hook before and after
each one, which lets the tests force the interleavings that matter (two deciders reading the same
head before either appends; a decider dying right after its event is written).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from visionyard.errors import (
    BundleIntegrityError,
    ConfigError,
    GateFailedError,
    NotFoundError,
    RegistryError,
)
from visionyard.monitor.rollout.decide import Decision, RoleFigures, RolloutFigures
from visionyard.monitor.rollout.events import all_events, chain
from visionyard.monitor.rollout.lifecycle import (
    StartRequest,
    abort_rollout,
    plan_steps,
    promote_rollout,
    start_rollout,
)
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.record import apply_decision, step_rollout
from visionyard.monitor.rollout.state import ROLLOUT_TAG, Rollout, read_rollout
from visionyard.registry.history import parse_history
from visionyard.tracking.registry_client import ModelInfo, VersionInfo

Hook = Callable[[str, str], None]
POLICY = Policy(min_requests=10, min_step_seconds=0)
GOOD = RolloutFigures(RoleFigures(100, 0, 0.01), RoleFigures(100, 0, 0.01))
BAD = RolloutFigures(RoleFigures(100, 0, 0.01), RoleFigures(100, 50, 0.01))


class Died(BaseException):
    """Stands for SIGKILL: nothing after it runs (not caught by ``except Exception``)."""


class FakeClient:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.aliases: dict[str, str] = {"production": "1"}
        self.lock = threading.Lock()
        self.before: Hook | None = None
        self.after: Hook | None = None

    def _run(self, op: str, key: str, action: Callable[[], object]) -> object:
        if self.before:
            self.before(op, key)
        with self.lock:
            result = action()
        if self.after:
            self.after(op, key)
        return result

    def get_model(self, name: str) -> ModelInfo:
        def read() -> ModelInfo:
            return ModelInfo(name, 0, 0, "", "3", dict(self.tags), dict(self.aliases))

        found = self._run("read", "", read)
        assert isinstance(found, ModelInfo)
        return found

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._run("tag", key, lambda: self.tags.__setitem__(key, value))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._run("alias", alias, lambda: self.aliases.__setitem__(alias, version))

    def get_version(self, name: str, version: str) -> VersionInfo:
        if version not in ("1", "2", "3"):
            raise NotFoundError("version", f"{name}/{version}")
        tags = {"vy.task": "classification", "vy.labels_digest": "abc"}
        return VersionInfo(name, version, None, "", None, 0, "READY", "", None, tags)


class FakeService:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.aliases = ["candidate", "staging", "production"]
        self.signing_key = None
        self.broken: set[str] = set()

    def check(self, reference: str) -> VersionInfo:
        if reference in self.broken:
            raise BundleIntegrityError(reference, "model.onnx failed verification")
        name, version = reference.split("/")
        return self.client.get_version(name, version)


def start(
    service: FakeService, mode: str = "canary", steps: tuple[int, ...] = (10, 100)
) -> Rollout:
    request = StartRequest("m", "2", mode, steps, POLICY)  # type: ignore[arg-type]
    return start_rollout(service, request, settle_s=0)  # type: ignore[arg-type]


def step(
    service: FakeService, figures: RolloutFigures = GOOD, settle_s: float = 0, grace_s: float = 10
) -> Decision | None:
    return step_rollout(service, "m", figures, 1e12, settle_s=settle_s, grace_s=grace_s)  # type: ignore[arg-type]


def decisions(service: FakeService) -> list[str]:
    return [e.kind for e in chain(all_events("m", service.client.tags))]


def production_events(service: FakeService) -> list[tuple[str | None, str, str]]:
    return [(e.from_version, e.to_version, e.kind) for e in parse_history(service.client.tags)]


def test_a_start_records_the_rollout_and_its_projection() -> None:
    service = FakeService()
    started = start(service)
    found = read_rollout(service.client, "m")
    assert found == started
    assert (found.baseline, found.share, found.mode) == ("1", 10, "canary")
    assert Rollout.from_json(service.client.tags[ROLLOUT_TAG]) == started


def test_a_start_is_refused_while_running_without_production_or_version() -> None:
    service = FakeService()
    start(service)
    with pytest.raises(RegistryError, match="rollout abort m"):
        start(service)
    empty = FakeService()
    empty.client.aliases.clear()
    with pytest.raises(RegistryError, match="no 'production' alias"):
        start(empty)
    with pytest.raises(NotFoundError):
        start_rollout(FakeService(), StartRequest("m", "9", "canary", (5,), POLICY), settle_s=0)  # type: ignore[arg-type]


def test_a_hold_writes_nothing() -> None:
    service = FakeService()
    start(service)
    before = dict(service.client.tags)
    held = step(service, RolloutFigures(candidate=RoleFigures(3, 3, 9.0)))
    assert held is not None
    assert (held.action, held.rule) == ("hold", "min_requests")
    assert service.client.tags == before


def test_steps_advance_then_promote_moves_production_once() -> None:
    service = FakeService()
    start(service)
    assert (step(service) or Decision("hold", "", {}, 0)).action == "advance"
    assert read_rollout(service.client, "m").share == 100  # type: ignore[union-attr]
    promoted = step(service)
    assert promoted is not None
    assert promoted.action == "promote"
    assert service.client.aliases["production"] == "2"
    assert production_events(service) == [("1", "2", "promote")]
    event = parse_history(service.client.tags)[0]
    head = chain(all_events("m", service.client.tags))[-1]
    assert head.key in event.reason
    assert "steps_passed" in event.reason
    assert decisions(service) == ["start", "advance", "promote"]
    assert step(service) is None  # over


def test_a_breach_rolls_back_and_production_stays_on_the_baseline() -> None:
    service = FakeService()
    start(service)
    got = step(service, BAD)
    assert got is not None
    assert (got.action, got.rule) == ("rollback", "max_error_rate")
    state = read_rollout(service.client, "m")
    assert state is not None
    assert state.status == "rolled_back"
    assert state.figures["candidate_error_rate"] == 0.5
    assert state.rule == "max_error_rate"
    assert service.client.aliases["production"] == "1"
    assert production_events(service) == []


def test_a_rollback_returns_production_to_the_baseline_when_it_moved() -> None:
    service = FakeService()
    start(service)
    service.client.aliases["production"] = "3"  # moved by hand meanwhile
    step(service, BAD)
    assert service.client.aliases["production"] == "1"
    assert production_events(service) == [("3", "1", "rollback")]


def test_a_decision_for_an_old_step_is_stale_and_writes_nothing() -> None:
    service = FakeService()
    started = start(service)
    step(service)
    before = dict(service.client.tags)
    old = Decision("rollback", "max_error_rate", {}, 0)
    done = apply_decision(service, "m", started.rollout_id, old, settle_s=0)  # type: ignore[arg-type]
    assert done.outcome == "stale"
    assert service.client.tags == before


def test_a_failed_gate_turns_an_automatic_promotion_into_a_rollback() -> None:
    service = FakeService()
    service.broken.add("m/2")
    start(service, steps=(100,))
    got = step(service)
    assert got is not None
    assert (got.action, got.rule) == ("rollback", "gate")
    assert service.client.aliases["production"] == "1"


def test_a_manual_promotion_with_a_failed_gate_keeps_the_rollout_running() -> None:
    service = FakeService()
    service.broken.add("m/2")
    start(service)
    with pytest.raises(GateFailedError, match="keeps running"):
        promote_rollout(service, "m", settle_s=0)  # type: ignore[arg-type]
    assert read_rollout(service.client, "m").running  # type: ignore[union-attr]


def test_manual_promote_and_abort() -> None:
    service = FakeService()
    start(service)
    done = promote_rollout(service, "m", actor="ann", settle_s=0)  # type: ignore[arg-type]
    assert (done.decision.rule, service.client.aliases["production"]) == ("manual", "2")
    with pytest.raises(RegistryError, match="no running rollout"):
        abort_rollout(service, "m", settle_s=0)  # type: ignore[arg-type]
    other = FakeService()
    start(other)
    abort_rollout(other, "m", settle_s=0)  # type: ignore[arg-type]
    state = read_rollout(other.client, "m")
    assert state is not None
    assert state.status == "aborted"
    assert other.client.aliases["production"] == "1"


def test_plan_steps() -> None:
    assert plan_steps("canary", 10, None) == (10, 25, 50, 100)
    assert plan_steps("canary", 5, (5, 50, 100)) == (5, 50, 100)
    assert plan_steps("shadow", 20, (5, 50)) == (20,)
    with pytest.raises(ConfigError):
        plan_steps("canary", 0, None)
    with pytest.raises(ConfigError, match="increase"):
        plan_steps("canary", 10, (50, 25))


def test_every_recorded_decision_is_one_structured_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = FakeService()
    start(service)
    with caplog.at_level("INFO", logger="visionyard.rollout"):
        step(service, BAD)
    lines = [r for r in caplog.records if r.name == "visionyard.rollout"]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert (fields["kind"], fields["outcome"], fields["rule"]) == (
        "rollback",
        "recorded",
        "max_error_rate",
    )
    assert fields["figures"]["candidate_error_rate"] == 0.5


def test_a_poll_with_nothing_pending_is_one_read() -> None:
    service = FakeService()
    start(service)
    reads = []
    service.client.before = lambda op, key: reads.append(op)
    held = step(service, RolloutFigures(candidate=RoleFigures(3, 0, 0.01)), grace_s=0)
    assert held is not None
    assert reads == ["read"]
