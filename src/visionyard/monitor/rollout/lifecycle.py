"""Starting a rollout and the manual decisions (promote, abort) the CLI makes.

A start is a transition like any other (:mod:`~visionyard.monitor.rollout.record`): two starts
racing on one model record one rollout, and the loser is told which rollout won.

A person's command (and ``rollout status``) completes an interrupted transition at once
(:data:`HUMAN_GRACE_S`): it runs after the interrupted one, typically as its retry, and must
not act on a decision whose move is still pending.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from visionyard.errors import ConfigError, RegistryError
from visionyard.monitor.rollout.decide import Action, Decision
from visionyard.monitor.rollout.events import head_of, new_event
from visionyard.monitor.rollout.policy import Policy, check_steps
from visionyard.monitor.rollout.record import (
    DEFAULT_SETTLE_S,
    Recorded,
    apply_decision,
    reconcile_rollout,
    record_event,
)
from visionyard.monitor.rollout.state import PRODUCTION_ALIAS, Mode, Rollout
from visionyard.registry.history import check_alias
from visionyard.registry.promote import incompatibilities

if TYPE_CHECKING:
    from visionyard.registry.service import Registry

HUMAN_GRACE_S = 0.0


@dataclass(frozen=True)
class StartRequest:
    """``steps``: traffic percentages (canary) or the one sampled share (shadow)."""

    name: str
    version: str
    mode: Mode
    steps: tuple[int, ...]
    policy: Policy
    sticky_header: str | None = None
    actor: str | None = None


def plan_steps(mode: Mode, share: int, steps: tuple[int, ...] | None) -> tuple[int, ...]:
    """A canary starts at ``share`` and continues with the larger of ``steps`` (default
    :data:`~visionyard.monitor.rollout.policy.DEFAULT_STEPS`); a shadow has one step."""
    from visionyard.monitor.rollout.policy import DEFAULT_STEPS

    if not 1 <= share <= 100:
        raise ConfigError(f"the {mode} share must be between 1 and 100 % (got {share})")
    if mode == "shadow":
        return (share,)
    later = steps if steps is not None else DEFAULT_STEPS
    try:
        return check_steps((share, *(s for s in check_steps(later) if s > share)))
    except ValueError as exc:
        raise ConfigError(f"canary steps: {exc}; e.g. --steps 5,25,50,100") from exc


def start_rollout(
    service: Registry, request: StartRequest, *, settle_s: float = DEFAULT_SETTLE_S
) -> Rollout:
    """Record a new rollout of ``request.version``; refuses while one is running, for an
    unknown version, without a production alias, or for a version production cannot take."""
    name, client = request.name, service.client
    check_alias(PRODUCTION_ALIAS, service.aliases)
    current = reconcile_rollout(service, name, grace_s=HUMAN_GRACE_S)
    candidate = client.get_version(name, request.version)
    if current is not None and current.running:
        raise RegistryError(
            f"rollout {current.rollout_id} of {name!r} is running (version {current.candidate} "
            f"at {current.share} %); finish it or run `visionyard rollout abort {name}` first"
        )
    holder = client.get_model(name).aliases.get(PRODUCTION_ALIAS)
    if holder is None:
        raise RegistryError(
            f"{name!r} has no {PRODUCTION_ALIAS!r} alias to roll out against; promote a "
            f"version first: `visionyard promote {name} VERSION`"
        )
    if holder == candidate.version:
        raise RegistryError(f"version {holder} of {name!r} already is {PRODUCTION_ALIAS!r}")
    problems = incompatibilities(client.get_version(name, holder), candidate)
    if problems:
        raise RegistryError(f"version {candidate.version} cannot replace {holder}: {problems}")
    rollout = _new_rollout(request, candidate.version, holder)
    head = head_of(name, client.get_model(name).tags)
    event = new_event(head.key if head else None, "start", rollout, _actor(request))
    won, head = record_event(service, name, event, settle_s)
    if not won:
        raise RegistryError(
            f"a concurrent `rollout start` won: rollout {head.state.rollout_id} of version "
            f"{head.state.candidate}; this one was not started"
        )
    return event.state


def promote_rollout(
    service: Registry, name: str, actor: str | None = None, settle_s: float = DEFAULT_SETTLE_S
) -> Recorded:
    """Promote the running rollout's candidate now, through the promotion gate."""
    return _manual(service, name, "promote", actor, settle_s)


def abort_rollout(
    service: Registry, name: str, actor: str | None = None, settle_s: float = DEFAULT_SETTLE_S
) -> Recorded:
    """Stop the running rollout; production stays on the baseline."""
    return _manual(service, name, "abort", actor, settle_s)


def _manual(
    service: Registry, name: str, action: Action, actor: str | None, settle_s: float
) -> Recorded:
    rollout = reconcile_rollout(service, name, grace_s=HUMAN_GRACE_S)
    if rollout is None or not rollout.running:
        what = "no rollout yet" if rollout is None else f"its last one is {rollout.status}"
        raise RegistryError(f"{name!r} has no running rollout ({what})")
    who = actor or _actor(None)
    decision = Decision(action, "manual", {}, rollout.step, f"{action} by {who}")
    done = apply_decision(
        service, name, rollout.rollout_id, decision, actor=who, settle_s=settle_s,
        on_gate_failure="raise",
    )  # fmt: skip
    if not done.applied:
        now = done.rollout
        raise RegistryError(
            f"the rollout of {name!r} changed while this command ran (now "
            f"{now.status if now else 'gone'}, step {now.step if now else '-'}); nothing "
            "was recorded: check `visionyard rollout status` and run the command again"
        )
    return done


def _new_rollout(request: StartRequest, candidate: str, baseline: str) -> Rollout:
    now = time.time()
    return Rollout(
        model=request.name, rollout_id=f"r{int(now)}-{secrets.token_hex(3)}",
        candidate=candidate, baseline=baseline, mode=request.mode, steps=request.steps,
        step=0, step_started_at=now, sticky_header=request.sticky_header,
        policy=request.policy, status="running", started_at=now,
    )  # fmt: skip


def _actor(request: StartRequest | None) -> str:
    from visionyard.registry.service import default_actor

    return (request.actor if request else None) or default_actor()
