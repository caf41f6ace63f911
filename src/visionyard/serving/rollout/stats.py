"""Live figures of one model's rollout step on this server: requests, errors and latency per role,
and the shadow's agreement.

A :class:`StepStats` lives as long as one step of one rollout (a new step starts from zero, so a
decision judges the traffic of the share it is about). Everything here runs on the event loop
(the data plane and the shadow worker), so nothing locks. Latencies are kept in a bounded ring
per role for the p99 (the most recent :data:`LATENCY_SAMPLES`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from visionyard.serving.rollout.agreement import Agreement

CANARY = "canary"
SHADOW = "shadow"
#: The roles a version plays in a rollout (the ``role`` label of the rollout metrics).
PRODUCTION = "production"
ROLES = (PRODUCTION, CANARY, SHADOW)
LATENCY_SAMPLES = 4096
#: Domain codes that are the client's fault: they do not count against a version.
CLIENT_ERRORS = frozenset(
    {
        "inference.invalid_input",
        "image.invalid",
        "image.too_large",
        "not_found",
        "serving.unauthorized",
        "serving.forbidden",
        "serving.body_too_large",
    }
)


def is_version_error(code: str) -> bool:
    """Whether an outcome counts as the version's error (``ok`` and client errors do not)."""
    return code != "ok" and code not in CLIENT_ERRORS


@dataclass
class RoleStats:
    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def add(self, error: bool, seconds: float) -> None:
        self.requests += 1
        self.errors += int(error)
        if not error:
            self.latencies.append(seconds)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def p99(self) -> float | None:
        if not self.latencies:
            return None
        return float(np.quantile(np.fromiter(self.latencies, float), 0.99))


@dataclass
class ShadowStats:
    """Images compared between production and the shadow candidate."""

    compared: int = 0
    agreed: int = 0
    score: float = 0.0
    deltas: int = 0
    delta: float = 0.0

    def add(self, found: list[Agreement]) -> None:
        for one in found:
            self.compared += 1
            self.agreed += int(one.agree)
            self.score += one.score
            if one.confidence_delta is not None:
                self.deltas += 1
                self.delta += one.confidence_delta

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def confidence_delta(self) -> float | None:
        return self.delta / self.deltas if self.deltas else None


@dataclass
class StepStats:
    """One step of one rollout: per role (production, canary, shadow) and the shadow's
    agreement; ``shed`` counts shadow requests shed under load."""

    rollout_id: str
    step: int
    started: float = field(default_factory=time.monotonic)
    roles: dict[str, RoleStats] = field(default_factory=lambda: {r: RoleStats() for r in ROLES})
    shadow: ShadowStats = field(default_factory=ShadowStats)
    shed: int = 0

    def add(self, role: str, code: str, seconds: float) -> None:
        self.roles[role].add(is_version_error(code), seconds)

    def candidate(self, mode: str) -> RoleStats:
        return self.roles[CANARY if mode == CANARY else SHADOW]

    def summary(self, mode: str) -> dict[str, object]:
        """The figures as plain values (logs, the decision's inputs)."""
        production, candidate = self.roles[PRODUCTION], self.candidate(mode)
        return {
            "rollout_id": self.rollout_id,
            "step": self.step,
            "seconds": round(time.monotonic() - self.started, 3),
            "production": _role(production),
            "candidate": _role(candidate),
            "shadow_compared": self.shadow.compared,
            "shadow_agreement": self.shadow.agreement,
            "shadow_confidence_delta": self.shadow.confidence_delta,
            "shadow_shed": self.shed,
        }


def _role(stats: RoleStats) -> dict[str, object]:
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": stats.error_rate,
        "p99_s": stats.p99(),
    }
