"""What a recorded rollout decision does outside the rollout state: production's alias.

- Before a promotion is recorded, :func:`preflight` runs the promotion gate of the registry:
  the compatibility checks of ``visionyard promote`` (task, labels), then the policy's gate
  file when it has one (evaluated like ``promote --gate``, the report stored on the candidate),
  else the candidate's pieces are verified against the registry's digests. Nothing is recorded
  while it runs.
- After a promotion is recorded, :func:`complete` moves ``production`` to the candidate; after a
  rollback it returns ``production`` to the baseline when it is elsewhere (a canary or shadow
  never moves it, so usually nothing moves). Both go through the registry's alias-move protocol
  (:mod:`visionyard.registry.aliases`): one alias history event whose reason names the rollout
  event key, which is also how a retry after a crash knows the move was already made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visionyard.errors import BundleIntegrityError, RegistryError
from visionyard.monitor.rollout.events import RolloutEvent
from visionyard.monitor.rollout.state import PRODUCTION_ALIAS, Rollout
from visionyard.registry.aliases import move_alias, reconcile
from visionyard.registry.history import EventKind, events_for, new_event
from visionyard.registry.promote import incompatibilities, store_report
from visionyard.tracking.registry_client import VersionInfo

if TYPE_CHECKING:
    from visionyard.registry.service import Registry

MOVE_ROUNDS = 5


@dataclass(frozen=True)
class GateResult:
    """The promotion gate's verdict: ``failure`` is None when it passed."""

    report_ref: str | None
    failure: str | None

    @property
    def passed(self) -> bool:
        return self.failure is None


def preflight(service: Registry, rollout: Rollout) -> GateResult:
    """Run the promotion gate for ``rollout``'s candidate against production's holder."""
    client, name = service.client, rollout.model
    candidate = client.get_version(name, rollout.candidate)
    holder_number = client.get_model(name).aliases.get(PRODUCTION_ALIAS)
    holder = client.get_version(name, holder_number) if holder_number else None
    problems = incompatibilities(holder, candidate)
    if problems:
        return GateResult(None, "; ".join(problems))
    if rollout.policy.gate is None:
        try:
            service.check(f"{name}/{candidate.version}")
        except BundleIntegrityError as exc:
            return GateResult(None, str(exc))
        return GateResult(None, None)
    return _run_gate(service, rollout, candidate, holder)


def _run_gate(
    service: Registry, rollout: Rollout, candidate: VersionInfo, holder: VersionInfo | None
) -> GateResult:
    from visionyard.registry.evaluation import gate_runner  # onnxruntime: only when gating
    from visionyard.registry.gates import load_policy as load_gate

    gate = load_gate(Path(str(rollout.policy.gate)))
    runner = gate_runner(service.client, rollout.model, gate, None, service.signing_key)
    report = runner(candidate, holder, PRODUCTION_ALIAS)
    ref = store_report(service.client, candidate, report)
    if report.passed:
        return GateResult(ref, None)
    failed = ", ".join(c.name for c in report.failures())
    return GateResult(ref, f"gate failed ({failed}); report: {ref}")


def complete(service: Registry, event: RolloutEvent) -> None:
    """Make production reflect ``event`` (idempotent: a retry finds the move it made)."""
    state = event.state
    if event.kind == "promote":
        _ensure(service, event, state.candidate, "promote")
    elif event.kind == "rollback":
        _ensure(service, event, state.baseline, "rollback")


def _ensure(service: Registry, event: RolloutEvent, target: str, kind: EventKind) -> None:
    client, name = service.client, event.state.model
    for _ in range(MOVE_ROUNDS):
        alias, _pending = reconcile(client, name, PRODUCTION_ALIAS)
        made = [e for e in events_for(alias.history, PRODUCTION_ALIAS) if event.key in e.reason]
        if made or alias.holder == target:
            return
        move = new_event(
            PRODUCTION_ALIAS, alias.holder, target, actor=event.actor, kind=kind,
            reason=move_reason(event), gate_report=event.gate_report,
            gate_passed=True if event.gate_report else None,
        )  # fmt: skip
        try:
            move_alias(client, name, move, alias.last.key if alias.last else None)
        except RegistryError:
            continue  # the alias moved meanwhile: read again (maybe it was our own move)
        return
    raise RegistryError(
        f"{PRODUCTION_ALIAS!r} of {name!r} kept moving; the rollout's {event.kind} is recorded "
        f"and the next `visionyard rollout status {name}` or decision completes it"
    )


def move_reason(event: RolloutEvent) -> str:
    """The alias event's reason: the rollout, the rule and its figures, and the event key."""
    state = event.state
    figures = ", ".join(f"{k}={v:g}" for k, v in sorted(state.figures.items()))
    return (
        f"rollout {state.rollout_id} {event.kind}: {state.rule} ({state.reason}); "
        f"figures: {figures or 'none'} [{event.key}]"
    )
