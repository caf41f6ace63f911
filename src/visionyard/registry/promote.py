"""Promote and roll back: the checks before an alias move, then the move itself.

A promotion refuses, unless ``force`` (which needs a reason and is recorded as a ``force``
event): a version of another task than the holder, a version whose labels differ from the
holder's, and a failed gate. The gate report is stored on the candidate version (also when it
fails) and referenced by the event. The move goes through :mod:`visionyard.registry.aliases`.
A ``dry_run`` runs every check and the gate against the alias's holder, stores the report and
moves nothing (a release pipeline gates against production before a person approves).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionyard.errors import GateFailedError, NotFoundError, RegistryError
from visionyard.registry import tags as T
from visionyard.registry.aliases import AliasState, MoveResult, move_alias, reconcile
from visionyard.registry.gates import GateReport
from visionyard.registry.history import (
    AliasEvent,
    EventKind,
    new_event,
    new_event_key,
    rollback_target,
)
from visionyard.tracking.mlflow_model import scratch_dir
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

GateRunner = Callable[[VersionInfo, VersionInfo | None, str], GateReport]
ReportHook = Callable[[GateReport, str], None]


@dataclass(frozen=True)
class PromoteRequest:
    name: str
    version: str
    alias: str
    actor: str
    gate: Path | None = None
    force: bool = False
    reason: str = ""
    #: Run the checks and the gate (report stored), move nothing.
    dry_run: bool = False


@dataclass(frozen=True)
class MoveOutcome:
    """What a promote or rollback did; ``result`` is None when nothing had to move."""

    alias: str
    previous: str | None
    target: str
    result: MoveResult | None
    report: GateReport | None = None
    report_ref: str | None = None
    completed_pending: bool = False


def promote(
    client: RegistryClient,
    request: PromoteRequest,
    gate_runner: GateRunner | None,
    on_report: ReportHook | None = None,
) -> MoveOutcome:
    """Move ``request.alias`` to ``request.version`` after the compatibility and gate checks."""
    if request.force and not request.reason.strip():
        raise RegistryError("--force needs --reason: the override is recorded in the history")
    candidate = client.get_version(request.name, request.version)
    state, pending = reconcile(client, request.name, request.alias)
    if state.holder == candidate.version:
        return MoveOutcome(
            request.alias, state.holder, candidate.version, None, None, None, pending
        )
    holder = client.get_version(request.name, state.holder) if state.holder else None
    problems = incompatibilities(holder, candidate)
    if problems and not request.force:
        raise RegistryError(
            f"version {candidate.version} cannot replace version {_v(holder)} on "
            f"{request.alias!r}: {'; '.join(problems)}; pass --force --reason to override"
        )
    report = gate_runner(candidate, holder, request.alias) if gate_runner else None
    ref = store_report(client, candidate, report) if report else None
    if report is not None and ref is not None and on_report is not None:
        on_report(report, ref)
    if report is not None and not report.passed and not request.force:
        failed = ", ".join(c.name for c in report.failures())
        raise GateFailedError(
            f"gate failed for version {candidate.version} of {request.name!r} ({failed}); "
            f"report: {ref}; {request.alias!r} stays at {_v(holder)}"
        )
    if request.dry_run:
        return MoveOutcome(
            request.alias, state.holder, candidate.version, None, report, ref, pending
        )
    kind: EventKind = "force" if request.force else "promote"
    result = _move(client, request, state, candidate.version, kind, report, ref)
    return MoveOutcome(request.alias, state.holder, candidate.version, result, report, ref, pending)


def rollback(
    client: RegistryClient, name: str, alias: str, actor: str, reason: str = ""
) -> MoveOutcome:
    """Move ``alias`` back to its previous holder in the history (further back when repeated).

    When the alias has an interrupted rollback pending (a rollback killed after recording its
    event), completing it IS this rollback: that move starts from the holder the user still
    sees, so it does what was asked, and rolling back again on top would go back two steps.
    """
    client.get_model(name)
    state, pending = reconcile(client, name, alias)
    if pending and (done := _completed_rollback(state)) is not None:
        result = MoveResult(done, done.to_version, done)
        return MoveOutcome(
            alias, done.from_version, done.to_version, result, completed_pending=True
        )
    _, target = rollback_target(state.history, alias, lambda v: _exists(client, name, v))
    request = PromoteRequest(name, target, alias, actor, reason=reason)
    result = _move(client, request, state, target, "rollback", None, None)
    return MoveOutcome(alias, state.holder, target, result, None, None, pending)


def incompatibilities(holder: VersionInfo | None, candidate: VersionInfo) -> list[str]:
    """Why ``candidate`` cannot silently replace ``holder`` (empty when it can)."""
    if holder is None:
        return []
    problems = []
    old_task, new_task = holder.tags.get(T.TASK), candidate.tags.get(T.TASK)
    if old_task != new_task:
        problems.append(f"task {new_task} differs from the holder's {old_task}")
    if holder.tags.get(T.LABELS_DIGEST) != candidate.tags.get(T.LABELS_DIGEST):
        problems.append("its labels differ from the holder's (names or order)")
    return problems


def store_report(client: RegistryClient, version: VersionInfo, report: GateReport) -> str:
    """Store the gate report on ``version``; returns a ``models:/`` reference to it."""
    file_name = new_event_key().removeprefix("vy.event.") + ".json"
    with scratch_dir() as tmp:
        path = tmp / file_name
        path.write_text(json.dumps(json.loads(report.to_json()), indent=2), encoding="utf-8")
        rel = client.upload_version_artifact(version, path, T.GATE_REPORTS)
    return f"models:/{version.name}/{version.version}/{rel}"


def _move(
    client: RegistryClient,
    request: PromoteRequest,
    state: AliasState,
    target: str,
    kind: EventKind,
    report: GateReport | None,
    ref: str | None,
) -> MoveResult:
    event = new_event(
        request.alias, state.holder, target, actor=request.actor, kind=kind,
        reason=request.reason, gate_report=ref, gate_passed=report.passed if report else None,
    )  # fmt: skip
    expected = state.last.key if state.last else None
    result = move_alias(client, request.name, event, expected)
    if not result.applied:
        winner = result.winner
        raise RegistryError(
            f"a concurrent move of {request.alias!r} won: it now points at version "
            f"{winner.to_version} ({winner.kind} by {winner.actor}); this move to {target} is "
            "kept in the history but superseded"
        )
    return result


def _completed_rollback(state: AliasState) -> AliasEvent | None:
    """The rollback that :func:`reconcile` just completed, if that is what the alias shows."""
    last = state.last
    if last is not None and last.kind == "rollback" and state.sync == "in-sync":
        return last
    return None


def _exists(client: RegistryClient, name: str, version: str) -> bool:
    try:
        client.get_version(name, version)
    except NotFoundError:
        return False
    return True


def _v(version: VersionInfo | None) -> str:
    return "no version" if version is None else version.version
