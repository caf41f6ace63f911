"""The decision engine: a pure function from a rollout and its live figures to what to do.

Order of the rules (the first that fires is the decision's ``rule``):

1. ``not_running`` / ``stale_figures``: a finished rollout, or figures measured for another
   rollout or step -> hold.
2. ``min_requests``: fewer candidate requests in this step than the policy asks -> hold. Too
   little data NEVER rolls back.
3. breaches -> rollback: ``max_error_rate`` (candidate errors / requests), then
   ``max_p99_latency_ratio`` (candidate p99 / production p99; skipped when either side has no
   p99, e.g. a canary at 100 %), then ``min_agreement`` (shadow, once ``shadow_count`` reaches
   ``min_requests``), then ``max_drift`` (share of drift features flagged; skipped when the
   window had not enough data).
4. ``min_requests`` again for a shadow whose comparisons are still too few -> hold.
5. ``min_step_seconds``: the step is younger than the policy's minimum -> hold.
6. ``steps_passed``: advance to the next step, or promote after the last one.

A hold of rules 2, 4 or 5 on a rollout older than the policy's ``max_duration_seconds`` (from
``started_at``) becomes a rollback with rule ``max_duration``: a rollout that cannot gather its
figures (a shadow shed under sustained load) ends instead of holding for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from visionyard.monitor.rollout.state import Rollout

Action = Literal["hold", "advance", "promote", "rollback", "abort"]


@dataclass(frozen=True)
class RoleFigures:
    """One role's traffic in the current step: requests, version errors, p99 latency (s)."""

    requests: int = 0
    errors: int = 0
    p99_s: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class RolloutFigures:
    """Live figures of one rollout step as a server measured them.

    ``candidate`` counts canary requests, or shadow calls in shadow mode. ``shadow_agreement``
    is the top-1 agreement share over ``shadow_count`` compared images. ``drift_share`` is the
    share of drift features flagged on the candidate's traffic (None: not enough data).
    ``rollout_id`` / ``step``, when given, name what the figures were measured for.
    ``shadow_shed`` counts shadow requests shed (production busy, queue full) in the step.
    """

    production: RoleFigures = field(default_factory=RoleFigures)
    candidate: RoleFigures = field(default_factory=RoleFigures)
    shadow_agreement: float | None = None
    shadow_count: int = 0
    drift_share: float | None = None
    rollout_id: str | None = None
    step: int | None = None
    shadow_shed: int = 0

    def as_dict(self) -> dict[str, float]:
        """The figures behind a decision, as recorded (None values left out)."""
        values: dict[str, float | None] = {
            "production_requests": self.production.requests,
            "production_errors": self.production.errors,
            "production_p99_s": self.production.p99_s,
            "candidate_requests": self.candidate.requests,
            "candidate_errors": self.candidate.errors,
            "candidate_error_rate": self.candidate.error_rate,
            "candidate_p99_s": self.candidate.p99_s,
            "p99_ratio": self.p99_ratio,
            "shadow_count": self.shadow_count,
            "shadow_agreement": self.shadow_agreement,
            "shadow_shed": self.shadow_shed,
            "drift_share": self.drift_share,
        }
        return {k: float(v) for k, v in values.items() if v is not None}

    @property
    def p99_ratio(self) -> float | None:
        new, old = self.candidate.p99_s, self.production.p99_s
        return new / old if new is not None and old else None


@dataclass(frozen=True)
class Decision:
    """What to do with a rollout, which rule said so (``detail``: the rule in words), the
    figures it read, and the step of the state it was decided on (for the compare-and-set)."""

    action: Action
    rule: str
    figures: dict[str, float]
    step: int
    detail: str = ""

    @property
    def records(self) -> bool:
        """Whether the decision changes the rollout (everything but a hold)."""
        return self.action != "hold"


Check = Callable[[Rollout, RolloutFigures], str | None]


def decide(rollout: Rollout, figures: RolloutFigures, now: float) -> Decision:
    """Hold, advance, promote or roll back ``rollout`` given ``figures`` at time ``now``."""
    measured = figures.as_dict()
    measured["step_seconds"] = max(0.0, now - rollout.step_started_at)

    def made(action: Action, rule: str, detail: str) -> Decision:
        return Decision(action, rule, measured, rollout.step, detail)

    early = _hold_first(rollout, figures)
    if early is not None:
        return _overdue(rollout, figures, now, early) or made("hold", *early)
    for rule, check in BREACHES:
        detail = check(rollout, figures)
        if detail is not None:
            return made("rollback", rule, detail)
    late = _hold_late(rollout, figures, measured["step_seconds"])
    if late is not None:
        return _overdue(rollout, figures, now, late) or made("hold", *late)
    if rollout.last_step:
        return made("promote", "steps_passed", f"every step of {list(rollout.steps)} passed")
    after = rollout.steps[rollout.step + 1]
    return made("advance", "steps_passed", f"step {rollout.share} % passed; next {after} %")


def _hold_first(rollout: Rollout, figures: RolloutFigures) -> tuple[str, str] | None:
    if not rollout.running:
        return "not_running", f"the rollout is {rollout.status}"
    if figures.rollout_id not in (None, rollout.rollout_id) or figures.step not in (
        None,
        rollout.step,
    ):
        return "stale_figures", f"figures are for {figures.rollout_id} step {figures.step}"
    need = rollout.policy.min_requests
    if figures.candidate.requests < need:
        return "min_requests", f"{figures.candidate.requests} of {need} candidate requests"
    return None


def _overdue(
    rollout: Rollout, figures: RolloutFigures, now: float, hold: tuple[str, str]
) -> Decision | None:
    """The ``max_duration`` rollback of a rollout held past its policy's limit (never for a
    finished rollout or figures of another step)."""
    limit, age = rollout.policy.max_duration_seconds, now - rollout.started_at
    if limit is None or age <= limit or hold[0] in ("not_running", "stale_figures"):
        return None
    measured = {**figures.as_dict(), "step_seconds": max(0.0, now - rollout.step_started_at),
                "rollout_seconds": age}  # fmt: skip
    detail = f"still held by {hold[0]} ({hold[1]}) after {age:.0f}s (limit {limit:g}s)"
    if rollout.mode == "shadow":
        detail += f"; {figures.shadow_shed} shadow requests shed"
    return Decision("rollback", "max_duration", measured, rollout.step, detail)


def _hold_late(rollout: Rollout, figures: RolloutFigures, age: float) -> tuple[str, str] | None:
    need = rollout.policy.min_requests
    if rollout.mode == "shadow" and figures.shadow_count < need:
        return "min_requests", f"{figures.shadow_count} of {need} shadow comparisons"
    if age < rollout.policy.min_step_seconds:
        return "min_step_seconds", f"step is {age:.0f}s old of {rollout.policy.min_step_seconds:g}s"
    return None


def _error_rate(rollout: Rollout, figures: RolloutFigures) -> str | None:
    rate, limit = figures.candidate.error_rate or 0.0, rollout.policy.max_error_rate
    if rate <= limit:
        return None
    return f"candidate error rate {rate:.3f} > {limit:g} over {figures.candidate.requests} requests"


def _latency(rollout: Rollout, figures: RolloutFigures) -> str | None:
    ratio, limit = figures.p99_ratio, rollout.policy.max_p99_latency_ratio
    if ratio is None or ratio <= limit:
        return None
    return f"candidate p99 is {ratio:.2f}x production's (limit {limit:g}x)"


def _agreement(rollout: Rollout, figures: RolloutFigures) -> str | None:
    found, limit = figures.shadow_agreement, rollout.policy.min_agreement
    if found is None or figures.shadow_count < rollout.policy.min_requests or found >= limit:
        return None
    return f"agreement with production {found:.3f} < {limit:g} over {figures.shadow_count} images"


def _drift(rollout: Rollout, figures: RolloutFigures) -> str | None:
    share, limit = figures.drift_share, rollout.policy.max_drift
    if share is None or share <= limit:
        return None
    return f"{share:.0%} of drift features flagged (limit {limit:.0%})"


BREACHES: tuple[tuple[str, Check], ...] = (
    ("max_error_rate", _error_rate),
    ("max_p99_latency_ratio", _latency),
    ("min_agreement", _agreement),
    ("max_drift", _drift),
)
