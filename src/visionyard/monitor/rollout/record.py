"""Recording a rollout decision exactly once, with two replicas racing or a decider killed.

MLflow has no compare-and-set, so this is the registry's alias-move protocol
(:mod:`visionyard.registry.aliases`) applied to rollout transitions, with the chain of
:mod:`visionyard.monitor.rollout.events` in place of "the greatest key wins":

1. *Read* the head of the chain (the rollout state the decider judged).
2. *Compare*: read again; the decision lands only if the head still has the rollout id, step
   and ``running`` status the decider read (else: ``stale``, nothing written). A promotion runs
   the promotion gate first (:func:`~visionyard.monitor.rollout.effects.preflight`) and compares
   after it.
3. *Append* the transition as a new event (``prev`` = that head): ONE tag insert holding the
   decision, its rule, its figures and the whole next state. This write IS the record: killed
   before it, nothing happened; killed after it, the decision is made.
4. *Settle* for ``settle_s``, then read the chain: if our event is on it we won, else another
   decider that read the same head appended first (``superseded``: our event stays off the
   chain and is never applied, like a superseded alias move).
5. *Complete* (the winner): move ``production`` if the decision says so
   (:func:`~visionyard.monitor.rollout.effects.complete`), then write the ``vy.rollout``
   projection, verified by a read after the write as in the alias protocol's converge step.

**Timing.** MLflow's tags and aliases are plain registers, so no protocol on them can decide
between two writers without a timing assumption; this one's is: a decider that appends after the
winner's verifying read has a greater key. That holds when ``settle_s`` (default 0.2 s) exceeds
the clock skew between hosts plus the time from a decider's compare to its append (one store
call). Outside it (a decider stalled between the two for longer), both deciders may report
winning, but every reader, the projection and ``production`` still converge on the chain's one
decision: completion always follows the head, e.g. a rollback that turns out to be first moves
production back to the baseline.

**Crash after step 3.** :func:`reconcile_rollout`, run first by every decision, start and
status, completes the head's effects and projection when the head is older than ``grace_s``
(its writer is presumably gone; a younger head is left to the writer still completing it, so
two processes do not both move the alias). Effects find their own earlier moves (the alias
event's reason names the rollout event), so a retry never records a second move.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from visionyard.errors import GateFailedError, RegistryError, TrackingError
from visionyard.monitor.rollout.decide import Decision, RolloutFigures, decide
from visionyard.monitor.rollout.effects import complete, preflight
from visionyard.monitor.rollout.events import (
    EventKind,
    RolloutEvent,
    all_events,
    chain,
    head_of,
    new_event,
)
from visionyard.monitor.rollout.state import (
    ROLLOUT_TAG,
    Rollout,
    RolloutStateError,
    Status,
    projection,
)

if TYPE_CHECKING:
    from visionyard.registry.service import Registry

log = logging.getLogger("visionyard.rollout")
DUPLICATE_KEY_MARKERS = ("duplicate key", "unique constraint", "uniqueviolation", "integrityerror")
DEFAULT_SETTLE_S = 0.2
DEFAULT_GRACE_S = 10.0
CONVERGE_ROUNDS = 25
Outcome = Literal["applied", "held", "stale", "superseded"]
GateFailure = Literal["rollback", "raise"]
_FINAL: dict[str, Status] = {"promote": "promoted", "rollback": "rolled_back", "abort": "aborted"}


class RolloutChangedError(RegistryError):
    """The compare step failed: another transition landed since the decider read (nothing
    was written)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"the rollout of {model!r} changed while this command ran; nothing was recorded: "
            "run the command again"
        )


@dataclass(frozen=True)
class Recorded:
    """What :func:`apply_decision` did: ``decision`` is what was (or would have been) recorded
    (a promotion whose gate failed becomes a rollback with rule ``gate``); ``rollout`` is the
    state now; ``event`` our event when applied."""

    outcome: Outcome
    decision: Decision
    rollout: Rollout | None
    event: RolloutEvent | None = None

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


def step_rollout(
    service: Registry,
    name: str,
    figures: RolloutFigures,
    now: float,
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    grace_s: float = DEFAULT_GRACE_S,
) -> Decision | None:
    """Read, decide and record (exactly once) for the model's running rollout. Returns the
    decision this call made or recorded (a hold too), None when no rollout is running or
    another replica's decision on the same step won."""
    rollout = reconcile_rollout(service, name, grace_s=grace_s)
    if rollout is None or not rollout.running:
        return None
    decision = decide(rollout, figures, now)
    if not decision.records:
        return decision
    done = apply_decision(service, name, rollout.rollout_id, decision, settle_s=settle_s, now=now)
    return done.decision if done.applied else None


def apply_decision(
    service: Registry,
    model: str,
    rollout_id: str,
    decision: Decision,
    *,
    actor: str | None = None,
    settle_s: float = DEFAULT_SETTLE_S,
    on_gate_failure: GateFailure = "rollback",
    now: float | None = None,
) -> Recorded:
    """Record ``decision`` for rollout ``rollout_id`` at ``decision.step``, once (see the module
    docstring); a hold records nothing."""
    if not decision.records:
        return Recorded("held", decision, None)
    head = _head(service, model)
    if not _matches(head, rollout_id, decision.step):
        return Recorded("stale", decision, head.state if head else None)
    assert head is not None
    gate_ref = None
    if decision.action == "promote":
        decision, gate_ref = _gate(service, head.state, decision, on_gate_failure)
        head = _head(service, model)
        if not _matches(head, rollout_id, decision.step):
            return Recorded("stale", decision, head.state if head else None)
        assert head is not None
    state = next_state(head.state, decision, time.time() if now is None else now)
    event = new_event(head.key, _kind(decision), state, actor or _actor(), gate_ref)
    return _record(service, model, event, decision, settle_s)


def record_event(
    service: Registry, model: str, event: RolloutEvent, settle_s: float = DEFAULT_SETTLE_S
) -> tuple[bool, RolloutEvent]:
    """Steps 2-5 for a planned ``event``: (won, head now). Raises :class:`RolloutChangedError`
    when the head moved since ``event`` was planned (nothing written)."""
    head = _head(service, model)
    if (head.key if head else None) != event.prev:
        raise RolloutChangedError(model)
    service.client.set_model_tag(model, *event.to_tag())
    if settle_s > 0:
        time.sleep(settle_s)
    won_chain = chain(all_events(model, service.client.get_model(model).tags))
    won = any(e.key == event.key for e in won_chain)
    _log(event, "recorded" if won else "superseded")
    if won:
        converge(service, model, mine=event.key)
    return won, won_chain[-1]


def reconcile_rollout(
    service: Registry, name: str, *, grace_s: float = DEFAULT_GRACE_S
) -> Rollout | None:
    """The current rollout, after completing an interrupted transition older than ``grace_s``.
    One ``get_model`` while nothing is pending (the server calls this every poll)."""
    tags = service.client.get_model(name).tags
    head = head_of(name, tags)
    if head is None:
        return projection(name, tags)
    pending = _projected(name, tags) != head.key
    if pending and time.time() * 1000 - head.time_ms >= grace_s * 1000:
        converge(service, name)
    return head.state


def converge(service: Registry, name: str, mine: str | None = None) -> Rollout | None:
    """Complete the head's effects and make ``vy.rollout`` equal the head's state, verified by
    a read after every write (``mine``: the key of the event this process just won with)."""
    for _ in range(CONVERGE_ROUNDS):
        tags = service.client.get_model(name).tags
        head = head_of(name, tags)
        if head is None:
            return None
        if _projected(name, tags) == head.key:
            return head.state
        if mine is not None and head.key != mine:
            return head.state  # a newer transition than ours: its writer completes it
        complete(service, head)
        if not _write_projection(service, name, head.state):
            continue
        if mine is None:
            _log(head, "completed")
    raise RegistryError(f"the rollout of {name!r} kept changing; run the command again")


def _write_projection(service: Registry, name: str, state: Rollout) -> bool:
    """Write ``vy.rollout``; False when a concurrent FIRST write of it won the insert (MLflow's
    SQL store upserts with select-then-insert: the loser gets a unique-key violation, and the
    row exists after that, as for aliases in ``RegistryClient.set_alias``)."""
    try:
        service.client.set_model_tag(name, ROLLOUT_TAG, state.to_json())
    except TrackingError as exc:
        if any(marker in str(exc).lower() for marker in DUPLICATE_KEY_MARKERS):
            return False
        raise
    return True


def next_state(rollout: Rollout, decision: Decision, now: float) -> Rollout:
    """The rollout after ``decision`` (advance: next step from ``now``; else a final status)."""
    changes = {
        "decided_at": now, "rule": decision.rule, "reason": decision.detail,
        "figures": dict(decision.figures),
    }  # fmt: skip
    if decision.action == "advance":
        return rollout.evolve(step=rollout.step + 1, step_started_at=now, **changes)
    return rollout.evolve(status=_FINAL[decision.action], **changes)


def _record(
    service: Registry, model: str, event: RolloutEvent, decision: Decision, settle_s: float
) -> Recorded:
    try:
        won, head = record_event(service, model, event, settle_s)
    except RolloutChangedError:
        return Recorded("stale", decision, _state(service, model))
    if won:
        return Recorded("applied", decision, event.state, event)
    return Recorded("superseded", decision, head.state)


def _gate(
    service: Registry, rollout: Rollout, decision: Decision, on_failure: GateFailure
) -> tuple[Decision, str | None]:
    result = preflight(service, rollout)
    if result.passed:
        return decision, result.report_ref
    detail = f"promotion gate: {result.failure}"
    if on_failure == "raise":
        raise GateFailedError(f"{detail}; rollout {rollout.rollout_id} keeps running")
    failed = Decision("rollback", "gate", decision.figures, decision.step, detail)
    return failed, result.report_ref


def _matches(head: RolloutEvent | None, rollout_id: str, step: int) -> bool:
    if head is None:
        return False
    state = head.state
    return state.rollout_id == rollout_id and state.step == step and state.running


def _kind(decision: Decision) -> EventKind:
    if decision.action == "hold":
        raise ValueError("a hold is not recorded")
    return decision.action


def _head(service: Registry, name: str) -> RolloutEvent | None:
    return head_of(name, service.client.get_model(name).tags)


def _state(service: Registry, name: str) -> Rollout | None:
    head = _head(service, name)
    return head.state if head else None


def _projected(name: str, tags: dict[str, str]) -> str | None:
    """The event key the projection was written from (None: absent or unreadable, rewrite)."""
    try:
        found = projection(name, tags)
    except RolloutStateError:
        return None
    return found.basis if found else None


def _log(event: RolloutEvent, what: str) -> None:
    """One structured log line per transition (the server's JSON logs carry ``fields``)."""
    state = event.state
    fields = {
        "model": state.model, "rollout_id": state.rollout_id, "event": event.key,
        "kind": event.kind, "status": state.status, "step": state.step, "share": state.share,
        "candidate": state.candidate, "baseline": state.baseline, "rule": state.rule,
        "detail": state.reason, "figures": state.figures, "actor": event.actor,
    }  # fmt: skip
    log.info("rollout %s %s", event.kind, what, extra={"fields": {"outcome": what, **fields}})


def _actor() -> str:
    from visionyard.registry.service import default_actor

    return default_actor()
