"""Wiring of rollouts into a server: which models follow rollouts, how the core is reached, and
the task that follows and decides (:class:`ServerRollouts`).

A served model follows rollouts when it is served by a registry reference to its production
alias (``NAME=REG@production``): the registered model ``REG`` is the one whose rollout counts.
Models served from a bundle folder or a pinned version never change by a rollout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from visionyard.serving.rollout.follower import (
    CandidateSource,
    RolloutConfig,
    RolloutFollower,
    RolloutPort,
)
from visionyard.serving.rollout.routed import Router
from visionyard.serving.rollout.shadow import ShadowConfig, ShadowRunner
from visionyard.serving.sources import ModelSource
from visionyard.settings import Settings

if TYPE_CHECKING:
    from visionyard.serving.dataplane import DataPlane
    from visionyard.serving.monitoring import Monitoring

log = logging.getLogger("visionyard.serving")
PRODUCTION_ALIAS = "production"


@dataclass(frozen=True)
class RolloutWiring:
    """How a server reaches the rollout core; None fields take the registry's defaults."""

    port: RolloutPort | None = None
    sources: CandidateSource | None = None
    config: RolloutConfig | None = None
    alias: str = PRODUCTION_ALIAS
    #: served name -> registered name; None: every model served by ``REG@alias``
    followed: Mapping[str, str] | None = field(default=None)


class ServerRollouts:
    """The follower and the shadow runner of one server, and their task."""

    def __init__(
        self, follower: RolloutFollower, shadow: ShadowRunner, config: RolloutConfig
    ) -> None:
        self.follower, self.shadow, self.config = follower, shadow, config

    async def run(self) -> None:
        """Start the shadow workers, follow the rollouts now, then poll and decide forever."""
        self.shadow.start()
        await self.follower.poll_all()
        await self.follower.watch(self.config)

    async def close(self) -> None:
        await self.shadow.close()
        await self.follower.close()


def followed_models(sources: Mapping[str, ModelSource], alias: str) -> dict[str, str]:
    """Served name -> registered name, for the models served from the registry by
    ``REG@alias`` (other sources, e.g. tests' stand-ins, follow nothing unless named)."""
    from visionyard.serving.registry_source import RegistrySource

    found = {}
    for name, source in sources.items():
        if not isinstance(source, RegistrySource):
            continue
        registered, sep, points_at = source.reference.rpartition("@")
        if sep and registered and points_at == alias:
            found[name] = registered
    return found


def follow_rollouts(
    settings: Settings,
    sources: Mapping[str, ModelSource],
    plane: DataPlane,
    monitoring: Monitoring | None,
    wiring: RolloutWiring | None = None,
) -> ServerRollouts | None:
    """The server's rollouts, or None when no model follows one (or the core is missing)."""
    wiring = wiring or RolloutWiring()
    followed = dict(wiring.followed or followed_models(sources, wiring.alias))
    port = (wiring.port or registry_port(settings)) if followed else None
    if port is None:
        return None
    config = wiring.config or default_config(settings)
    metrics = plane.metrics.rollout
    writer = monitoring.writer if monitoring is not None else None
    shadow = ShadowRunner(plane.pool, metrics, config.shadow, writer)
    plane.router = Router(plane, shadow, metrics)
    candidates = wiring.sources or registry_sources(settings)
    follower = RolloutFollower(plane.pool, plane.routes, followed, port, candidates, metrics)
    return ServerRollouts(follower, shadow, config)


def default_config(settings: Settings) -> RolloutConfig:
    """Poll as often as the pool; shed shadows once production's workers are all busy."""
    serving = settings.serving
    shadow = ShadowConfig(serving.shadow_queue_size, busy_in_flight=serving.inference_workers)
    return RolloutConfig(serving.poll_interval_s, serving.rollout_decide_interval_s, shadow)


def registry_port(settings: Settings) -> RolloutPort | None:
    """The registry's rollout core (:mod:`visionyard.monitor.rollout`); None without it."""
    try:
        from visionyard.serving.rollout.port import RegistryRollouts
    except ImportError as exc:
        log.warning("rollouts are not followed: %s", exc)
        return None
    return RegistryRollouts(settings)


def registry_sources(settings: Settings) -> CandidateSource:
    """A candidate's source: the registered version ``REG/VERSION`` (verified on load)."""
    from visionyard.serving.registry_source import RegistrySource

    def source(registered: str, version: str) -> ModelSource:
        return RegistrySource(f"{registered}/{version}", settings)

    return source
