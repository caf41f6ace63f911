"""The decision engine: every rule fires, in order; too few requests never roll back."""

from __future__ import annotations

from visionyard.monitor.rollout.decide import RoleFigures, RolloutFigures, decide
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.state import Rollout

POLICY = Policy(
    min_requests=100, min_step_seconds=60, max_error_rate=0.05, max_p99_latency_ratio=1.5,
    min_agreement=0.9, max_drift=0.25,
)  # fmt: skip
T0 = 1000.0
LATER = T0 + 120


def rollout(mode: str = "canary", **changes: object) -> Rollout:
    steps = (5, 25, 100) if mode == "canary" else (20,)
    base = Rollout(
        model="m", rollout_id="r1", candidate="2", baseline="1", mode="canary",
        steps=steps, step=0, step_started_at=T0, sticky_header=None, policy=POLICY,
        status="running", started_at=T0,
    )  # fmt: skip
    return base.evolve(mode=mode, **changes)


def figures(
    requests: int = 200, errors: int = 0, p99: float = 0.010, **more: object
) -> RolloutFigures:
    prod = RoleFigures(1000, 0, 0.010)
    return RolloutFigures(production=prod, candidate=RoleFigures(requests, errors, p99), **more)  # type: ignore[arg-type]


def test_too_few_requests_hold_even_with_every_request_failing() -> None:
    got = decide(rollout(), figures(requests=99, errors=99, p99=10.0), LATER)
    assert (got.action, got.rule) == ("hold", "min_requests")


def test_a_high_error_rate_rolls_back_with_its_figures() -> None:
    got = decide(rollout(), figures(errors=40), LATER)
    assert (got.action, got.rule) == ("rollback", "max_error_rate")
    assert got.figures["candidate_error_rate"] == 0.2
    assert got.figures["candidate_requests"] == 200
    assert "0.200 > 0.05" in got.detail


def test_a_slow_candidate_rolls_back_on_the_p99_ratio() -> None:
    got = decide(rollout(), figures(p99=0.030), LATER)
    assert (got.action, got.rule) == ("rollback", "max_p99_latency_ratio")
    assert got.figures["p99_ratio"] == 3.0


def test_without_a_production_p99_the_latency_rule_is_skipped() -> None:
    no_prod = RolloutFigures(candidate=RoleFigures(200, 0, 5.0))
    assert decide(rollout(step=2), no_prod, LATER).action == "promote"


def test_a_breach_rolls_back_before_the_step_is_old_enough() -> None:
    got = decide(rollout(), figures(errors=100), T0 + 1)
    assert got.action == "rollback"


def test_a_young_step_holds() -> None:
    got = decide(rollout(), figures(), T0 + 10)
    assert (got.action, got.rule) == ("hold", "min_step_seconds")


def test_a_passing_step_advances_and_the_last_promotes() -> None:
    assert decide(rollout(), figures(), LATER).action == "advance"
    got = decide(rollout(step=2), figures(), LATER)
    assert (got.action, got.rule, got.step) == ("promote", "steps_passed", 2)


def test_shadow_needs_enough_comparisons_and_agreement() -> None:
    few = decide(rollout("shadow"), figures(shadow_agreement=0.1, shadow_count=50), LATER)
    assert (few.action, few.rule) == ("hold", "min_requests")
    low = decide(rollout("shadow"), figures(shadow_agreement=0.5, shadow_count=150), LATER)
    assert (low.action, low.rule) == ("rollback", "min_agreement")
    good = decide(rollout("shadow"), figures(shadow_agreement=0.95, shadow_count=150), LATER)
    assert good.action == "promote"


def test_drift_above_the_share_rolls_back_and_unknown_drift_does_not() -> None:
    assert decide(rollout(), figures(drift_share=0.5), LATER).rule == "max_drift"
    assert decide(rollout(), figures(drift_share=None), LATER).action == "advance"
    assert decide(rollout(), figures(drift_share=0.25), LATER).action == "advance"


def test_figures_for_another_step_or_a_finished_rollout_hold() -> None:
    assert decide(rollout(), figures(errors=100, step=1), LATER).rule == "stale_figures"
    assert decide(rollout(), figures(rollout_id="r0"), LATER).rule == "stale_figures"
    assert decide(rollout(status="aborted"), figures(errors=100), LATER).rule == "not_running"


def test_the_error_rule_fires_before_the_latency_rule() -> None:
    got = decide(rollout(), figures(errors=100, p99=1.0), LATER)
    assert got.rule == "max_error_rate"


def test_a_shadow_starved_past_its_max_duration_rolls_back_with_the_shed_count() -> None:
    policy = POLICY.model_copy(update={"max_duration_seconds": 600.0})
    starved = rollout("shadow", policy=policy)
    shed = figures(requests=3, shadow_count=3, shadow_shed=5000)
    assert decide(starved, shed, T0 + 599).rule == "min_requests"  # held while within the limit
    got = decide(starved, shed, T0 + 601)
    assert (got.action, got.rule) == ("rollback", "max_duration")
    assert got.figures["shadow_shed"] == 5000
    assert got.figures["rollout_seconds"] == 601
    assert "5000 shadow requests shed" in got.detail
    assert "min_requests" in got.detail


def test_max_duration_ends_a_held_step_but_not_stale_figures_or_without_a_limit() -> None:
    policy = POLICY.model_copy(update={"max_duration_seconds": 60.0})
    young_step = rollout(policy=policy, step_started_at=T0 + 100)
    assert decide(young_step, figures(), T0 + 110).rule == "max_duration"
    assert decide(rollout(policy=policy), figures(step=1), LATER).rule == "stale_figures"
    assert decide(rollout(), figures(requests=3), T0 + 10**6).rule == "min_requests"
    assert decide(rollout(policy=policy), figures(), LATER).action == "advance"  # not a hold
