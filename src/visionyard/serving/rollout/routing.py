"""Where a request goes while its model is in a rollout: the traffic split of a canary, the
sample of a shadow.

A :class:`Route` is an immutable snapshot of one model's running rollout as this server follows
it (:mod:`.follower` replaces it whole when the registry's rollout moves), so
the request path reads it without a lock. The data plane consults routes only while one exists:
with no rollout running, a request pays one truthiness check of an empty dict.

The split draws a point in [0, 100) per request and compares it with the step's share:

- without a sticky header (or when a request lacks it) the point is random, so about ``share``
  percent of requests go to the candidate;
- with a sticky header the point is a hash of the rollout id and the header's value (BLAKE2b,
  not Python's salted ``hash``), so one key always lands on the same side, on every replica,
  and a key on the candidate stays there when a later step raises the share.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from visionyard.serving.model import IMAGE_INPUT, LoadedModel
from visionyard.serving.rollout.stats import CANARY, SHADOW, StepStats
from visionyard.serving.types import InferRequest

Headers = Mapping[str, str]
Draw = Callable[[], float]


def bucket(rollout_id: str, key: str) -> float:
    """The sticky point of ``key`` in [0, 100): the same on every process and every step."""
    digest = hashlib.blake2b(f"{rollout_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


@dataclass(frozen=True)
class Route:
    """One model's running rollout as served here: the loaded candidate, mode and share, and
    the live figures of the step (:class:`~visionyard.serving.rollout.stats.StepStats`)."""

    model: str
    rollout_id: str
    mode: str
    share: float
    step: int
    candidate: LoadedModel
    stats: StepStats
    sticky_header: str | None = None
    draw: Draw = random.random

    @property
    def role(self) -> str:
        """The candidate's role: ``canary`` or ``shadow``."""
        return CANARY if self.mode == CANARY else SHADOW

    def point(self, headers: Headers | None) -> float:
        """The request's point in [0, 100): sticky on the header's value when it has one."""
        if self.sticky_header and headers:
            key = headers.get(self.sticky_header)
            if key:
                return bucket(self.rollout_id, key)
        return self.draw() * 100.0

    def chosen(self, headers: Headers | None) -> bool:
        """Whether this request goes to the candidate (canary) or is also sent to it (shadow)."""
        if self.share <= 0:
            return False
        return self.share >= 100 or self.point(headers) < self.share

    def accepts(self, request: InferRequest, production: LoadedModel) -> bool:
        """Whether the candidate can take ``request``: encoded images always; a preprocessed
        tensor only when both versions take the same tensor."""
        inputs = request.inputs
        if len(inputs) == 1 and inputs[0].name == IMAGE_INPUT:
            return True
        return self.candidate.inputs == production.inputs


def route_fields(route: Route) -> dict[str, object]:
    """A route's fields for the structured log."""
    return {
        "model": route.model,
        "rollout_id": route.rollout_id,
        "mode": route.mode,
        "share": route.share,
        "step": route.step,
        "candidate": route.candidate.version,
        "sticky_header": route.sticky_header,
    }
