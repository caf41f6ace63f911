"""The server's road to the rollout core (:mod:`visionyard.monitor.rollout`): read the state of a
registered model's rollout, and turn a route's live figures into the core's
:class:`~visionyard.monitor.rollout.decide.RolloutFigures` for a decision recorded exactly once
(:func:`~visionyard.monitor.rollout.record.step_rollout`).

The candidate's drift share is read from its monitor's last comparison (the share of features
flagged, as the policy's ``max_drift`` means it); None while the window has not enough data.
"""

from __future__ import annotations

import time
from typing import Any, cast

from visionyard.monitor.rollout.decide import Decision, RoleFigures, RolloutFigures, decide
from visionyard.monitor.rollout.record import reconcile_rollout, step_rollout
from visionyard.monitor.rollout.state import Rollout
from visionyard.registry.service import Registry
from visionyard.serving.rollout.follower import RolloutView
from visionyard.serving.rollout.routing import Route
from visionyard.serving.rollout.stats import PRODUCTION, RoleStats
from visionyard.settings import Settings


class RegistryRollouts:
    """:class:`~.follower.RolloutPort` over the registry (blocking calls)."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self._registry = registry

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return self._registry

    def read(self, registered: str) -> Rollout | None:
        """The rollout, after completing an interrupted transition (one ``get_model`` while
        nothing is pending)."""
        return reconcile_rollout(self.registry, registered)

    def figures(self, route: Route) -> RolloutFigures:
        return figures(route)

    def judge(self, rollout: RolloutView, figures: RolloutFigures) -> str:
        """(``rollout`` is what :meth:`read` returned.)"""
        return decide(cast(Rollout, rollout), figures, time.time()).action

    def step(self, registered: str, figures: RolloutFigures) -> Decision | None:
        return step_rollout(self.registry, registered, figures, time.time())


def figures(route: Route) -> RolloutFigures:
    """The route's step, as the core's figures."""
    stats = route.stats
    return RolloutFigures(
        production=_role(stats.roles[PRODUCTION]),
        candidate=_role(stats.candidate(route.mode)),
        shadow_agreement=stats.shadow.agreement,
        shadow_count=stats.shadow.compared,
        drift_share=drift_share(route),
        rollout_id=route.rollout_id,
        step=route.step,
        shadow_shed=stats.shed,
    )


def _role(stats: RoleStats) -> RoleFigures:
    return RoleFigures(stats.requests, stats.errors, stats.p99())


def drift_share(route: Route) -> float | None:
    """Share of drift features flagged on the candidate's window (None: no verdict yet)."""
    watcher = route.candidate.monitor
    report: dict[str, Any] | None = watcher.monitor.last if watcher is not None else None
    if not report or report.get("verdict") in (None, "not enough data"):
        return None
    tested = [f for f in report.get("features", []) if f.get("p_value") is not None]
    if not tested:
        return None
    return len(report.get("drifting", [])) / len(tested)
