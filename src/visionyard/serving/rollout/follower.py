"""The server follows the registry's rollouts and takes part in their decisions.

A rollout is registry state (:mod:`visionyard.monitor.rollout`), not server memory. For each
model served by its production alias (``NAME=REG@production``), :class:`RolloutFollower`:

- every poll interval reads the registered model's rollout (one registry call, which also
  completes an interrupted transition). While one runs,
  it loads the candidate version beside production (verified, warmed and monitored like every
  load, :meth:`~visionyard.serving.pool.ModelPool.open_version`) and installs a
  :class:`~.routing.Route` in the data plane; a new step installs a new route
  with fresh figures. When the rollout ends the route goes and the candidate is unloaded, or,
  when it was promoted, adopted as the production version without loading it again.
- every decision interval judges the live figures of each running step
  (:class:`~visionyard.serving.rollout.stats.StepStats`) with the core's pure rules against the
  rollout as last read (no registry call). A breach removes the route at once (traffic is back
  on production within one decision interval) and then lets the core decide and record
  (exactly once across replicas) on the same snapshot of the figures: a request finishing in
  between cannot turn the core's decision into another one. An advance or a promotion is
  recorded the same way. At each poll the same judgment runs on the state just read; a held
  step costs no registry call beyond the read. Recorded decisions are logged and counted.

The core is reached through :class:`RolloutPort` (tests give a fake; the server gives
:class:`~visionyard.serving.rollout.port.RegistryRollouts`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from visionyard.serving.metrics import RolloutMetrics
from visionyard.serving.model import LoadedModel
from visionyard.serving.pool import ModelPool
from visionyard.serving.rollout.routing import Route, route_fields
from visionyard.serving.rollout.shadow import ShadowConfig
from visionyard.serving.rollout.stats import CANARY, StepStats
from visionyard.serving.sources import ModelSource

log = logging.getLogger("visionyard.serving")
ENDING = ("rollback", "rolled_back", "abort", "aborted")
#: longest wait, after a promotion is read, for the alias to be seen on the candidate
PROMOTION_WAIT_S = 30.0


class RolloutView(Protocol):
    """What the server reads of a rollout (:class:`visionyard.monitor.rollout.state.Rollout`)."""

    @property
    def rollout_id(self) -> str: ...
    @property
    def candidate(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def step(self) -> int: ...
    @property
    def share(self) -> float: ...
    @property
    def status(self) -> str: ...
    @property
    def sticky_header(self) -> str | None: ...


class RolloutPort(Protocol):
    """The rollout core, as the server uses it (blocking calls: run off the event loop)."""

    def read(self, registered: str) -> RolloutView | None:
        """The registered model's rollout (any status), or None; completes an interrupted
        transition first (a decision's effects half written by a killed process)."""
        ...

    def figures(self, route: Route) -> Any:
        """A snapshot of the route's step figures (``route.stats``; cheap, no registry call)."""
        ...

    def judge(self, rollout: RolloutView, figures: Any) -> str:
        """The action the core would decide on ``figures`` now (pure and cheap: no registry
        call), so that a breach stops traffic before anything is written."""
        ...

    def step(self, registered: str, figures: Any) -> Any | None:
        """Decide on the step's ``figures`` and record the decision exactly once; the decision
        (with ``action`` and ``rule``), or None when there was nothing to decide."""
        ...


#: Makes the source of a registered version (registered name, version) for the candidate.
CandidateSource = Callable[[str, str], ModelSource]


@dataclass(frozen=True)
class RolloutConfig:
    poll_interval_s: float = 5.0
    decide_interval_s: float = 0.5
    shadow: ShadowConfig = field(default_factory=ShadowConfig)


class RolloutFollower:
    """Follows rollouts of ``followed`` (served name -> registered name); see the module doc."""

    def __init__(
        self,
        pool: ModelPool,
        routes: dict[str, Route],
        followed: dict[str, str],
        port: RolloutPort,
        sources: CandidateSource,
        metrics: RolloutMetrics,
    ) -> None:
        self.pool, self.routes, self.followed = pool, routes, followed
        self.port, self.sources, self.metrics = port, sources, metrics
        self._lock = asyncio.Lock()
        self._ended: set[str] = set()  # rollouts decided here to end: never routed again
        self._failed: set[tuple[str, str]] = set()  # (rollout id, candidate) that failed to load
        self._retiring: set[asyncio.Task[None]] = set()
        self._warned: set[str] = set()
        self._states: dict[str, RolloutView] = {}  # the running rollouts as last read
        self._promoting: dict[str, float] = {}  # promoted, alias not yet seen: since when
        # off by a breach judged here, not yet recorded: the route and the figures judged
        self._breached: dict[str, tuple[Route, Any]] = {}

    async def poll_all(self) -> None:
        for name in self.followed:
            await self.poll(name)

    async def poll(self, name: str) -> None:
        """Read ``name``'s rollout and follow it (route, candidate) now."""
        async with self._lock:
            try:
                rollout = await asyncio.to_thread(self.port.read, self.followed[name])
            except Exception as exc:  # an unreachable registry: keep routing as we were
                self._warn(name, "cannot read the rollout; routing stays as it was", exc)
                return
            self._warned.discard(name)
            await self._follow(name, rollout)

    def _warn(self, name: str, message: str, exc: Exception) -> None:
        """Log a failure once per streak (polls repeat every few seconds)."""
        if name not in self._warned:
            self._warned.add(name)
            log.warning(message, extra={"fields": _error(name, exc)})

    async def decide_all(self) -> None:
        """At a poll, on the rollouts just read: judge every route here and record what is
        not a hold (:meth:`check_all`: a held step costs no registry call), and try again to
        record a breach whose recording failed before."""
        retry = list(self._breached.items())
        await self.check_all()
        for name, (route, judged) in retry:
            if self._breached.get(name, (None,))[0] is route:
                await self.decide(name, route, judged)

    async def check_all(self) -> None:
        """Judge every route's live figures here (no registry call); record what is not a
        hold. A breach removes the route first: traffic is back on production before the
        decision is written (if another replica's decision wins instead, the next read
        routes again)."""
        for name, route in list(self.routes.items()):
            state = self._states.get(name)
            if state is None or state.rollout_id != route.rollout_id:
                continue
            try:
                judged = self.port.figures(route)
                action = self.port.judge(state, judged)
            except Exception as exc:  # a bug in a rule: the registry's decision still runs
                self._warn(name, "rollout figures could not be judged", exc)
                continue
            if action == "hold":
                continue
            if action in ENDING and self._unroute(name, f"breach: {action}") is route:
                self._retire(route.candidate)
                self._breached[name] = (route, judged)  # routed again only if the registry says
            await self.decide(name, route, judged)

    async def decide(self, name: str, route: Route, judged: Any = None) -> Any | None:
        """Let the core decide on ``route``'s step (on the ``judged`` snapshot of its figures
        when given, else on its figures now); follow a decision at once."""
        began = time.monotonic()
        try:
            figures = self.port.figures(route) if judged is None else judged
            decision = await asyncio.to_thread(self.port.step, self.followed[name], figures)
        except Exception as exc:  # the registry or a policy: keep serving, try again later
            self._warn(name, "rollout decision failed; trying again", exc)
            return None
        self._warned.discard(name)
        if decision is None:  # no rollout running any more, or another replica's decision won
            self._breached.pop(name, None)
            await self.poll(name)
            return None
        action = str(getattr(decision, "action", "hold"))
        overruled = action not in ENDING and self._breached.pop(name, None) is not None
        if action == "hold":
            if overruled:  # the core held where the breach was judged here: route again
                await self.poll(name)
            return decision
        self.metrics.decisions.labels(name, action).inc()
        fields = {**route_fields(route), "action": action, "rule": getattr(decision, "rule", None),
                  "detail": getattr(decision, "detail", None),
                  "decision_s": round(time.monotonic() - began, 3),
                  "figures": route.stats.summary(route.mode)}  # fmt: skip
        log.info(f"rollout decision: {action}", extra={"fields": fields})
        if action in ENDING:
            self._ended.add(route.rollout_id)
            self._breached.pop(name, None)
            if self._unroute(name, f"decision: {action}") is route:  # back on production now
                self._retire(route.candidate)
        await self.poll(name)
        return decision

    async def watch(self, config: RolloutConfig) -> None:
        """Judge the figures every ``decide_interval_s``; read the rollouts and let the core
        decide (which also completes an interrupted transition) every ``poll_interval_s``."""
        last_poll = time.monotonic()
        while True:
            await asyncio.sleep(min(config.decide_interval_s, config.poll_interval_s))
            if time.monotonic() - last_poll >= config.poll_interval_s:
                last_poll = time.monotonic()
                await self.poll_all()
                await self.decide_all()
            else:
                await self.check_all()

    async def close(self) -> None:
        for name in list(self.routes):
            route = self._unroute(name, "server stopping")
            if route is not None:
                self._retire(route.candidate)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def _retire(self, candidate: LoadedModel) -> None:
        """Unload a candidate in the background (its requests in flight finish first)."""
        task = asyncio.create_task(self.pool.retire(candidate))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _follow(self, name: str, rollout: RolloutView | None) -> None:
        if self._pending_breach(name, rollout):
            return
        route = self.routes.get(name)
        if rollout is None or rollout.status != "running" or rollout.rollout_id in self._ended:
            self._states.pop(name, None)
            if route is not None:
                await self._end(name, route, rollout)
            return
        self._states[name] = rollout
        if route is not None and _same_candidate(route, rollout):
            if _moved(route, rollout):
                self._install(name, _next_route(route, rollout))
            return
        candidate = await self._candidate(name, rollout)
        if candidate is None:
            return
        self._install(name, _new_route(name, rollout, candidate))
        if route is not None:
            self._retire(route.candidate)

    def _pending_breach(self, name: str, rollout: RolloutView | None) -> bool:
        """A breach judged here whose decision is not recorded yet (the write failed or is
        not read back): while the registry still reads that rollout running at that step,
        traffic stays on production. True while it does."""
        if name not in self._breached:
            return False
        breached = self._breached[name][0]
        if (
            rollout is not None
            and rollout.status == "running"
            and (rollout.rollout_id, rollout.step) == (breached.rollout_id, breached.step)
        ):
            self._states[name] = rollout
            return True
        del self._breached[name]  # ended, or another replica's decision moved it on
        return False

    async def _candidate(self, name: str, rollout: RolloutView) -> LoadedModel | None:
        key = (rollout.rollout_id, rollout.candidate)
        current = self.pool.entry(name).current
        if key in self._failed or current is None or current.version == rollout.candidate:
            return None
        source = self.sources(self.followed[name], rollout.candidate)
        candidate = await self.pool.open_version(name, source)
        if candidate is None:
            self._failed.add(key)
            fields = {"model": name, "rollout_id": rollout.rollout_id,
                      "candidate": rollout.candidate}  # fmt: skip
            log.error("rollout candidate failed to load; production serves all traffic",
                      extra={"fields": fields})  # fmt: skip
        return candidate

    def _install(self, name: str, route: Route) -> None:
        self.routes[name] = route
        self.pool.preload(name, route.candidate)
        self.metrics.following(name, route.candidate.version, route.mode, route.step, route.share)
        log.info("rollout route", extra={"fields": route_fields(route)})

    def _unroute(self, name: str, why: str) -> Route | None:
        route = self.routes.pop(name, None)
        if route is not None:
            self.metrics.ended(name)
            fields = {**route_fields(route), "why": why, "figures": route.stats.summary(route.mode)}
            log.info("rollout route removed", extra={"fields": fields})
        return route

    def _await_alias(self, name: str, route: Route) -> bool:
        """A promotion read before the production alias is seen on the candidate (the
        decision's alias move not yet visible here): keep every request on the candidate and
        adopt it at a later poll, rather than flip back to the old version meanwhile; give up
        after ``PROMOTION_WAIT_S`` (the alias went elsewhere). True while waiting."""
        since = self._promoting.setdefault(name, time.monotonic())
        if time.monotonic() - since > PROMOTION_WAIT_S:
            fields = route_fields(route)
            message = "rollout promoted but the alias never reached the candidate"
            log.warning(message, extra={"fields": fields})
            return False
        if (route.mode, route.share) != (CANARY, 100.0):
            self._install(name, _all_on_candidate(route))
        return True

    async def _end(self, name: str, route: Route, rollout: RolloutView | None) -> None:
        """The rollout ended: a promoted candidate becomes production; else it is unloaded."""
        status = rollout.status if rollout is not None else "gone"
        promoted = status == "promoted"
        if (
            promoted
            and not await self.pool.adopt(name, route.candidate)
            and self._await_alias(name, route)
        ):
            return
        self._promoting.pop(name, None)
        self._unroute(name, f"rollout {status}")
        self._retire(route.candidate)  # not when it became production


def _all_on_candidate(route: Route) -> Route:
    return replace(route, mode=CANARY, share=100.0)


def _same_candidate(route: Route, rollout: RolloutView) -> bool:
    return route.rollout_id == rollout.rollout_id and route.candidate.version == rollout.candidate


def _moved(route: Route, rollout: RolloutView) -> bool:
    now = (rollout.mode, rollout.step, float(rollout.share), _header(rollout))
    return now != (route.mode, route.step, route.share, route.sticky_header)


def _header(rollout: RolloutView) -> str | None:
    return rollout.sticky_header.lower() if rollout.sticky_header else None


def _new_route(name: str, rollout: RolloutView, candidate: LoadedModel) -> Route:
    stats = StepStats(rollout.rollout_id, rollout.step)
    return Route(
        name, rollout.rollout_id, rollout.mode, float(rollout.share), rollout.step, candidate,
        stats, _header(rollout),
    )  # fmt: skip


def _next_route(route: Route, rollout: RolloutView) -> Route:
    """The route at the rollout's new step (fresh figures) or new share/header (same step)."""
    same_step = route.step == rollout.step and route.mode == rollout.mode
    stats = route.stats if same_step else StepStats(rollout.rollout_id, rollout.step)
    return Route(
        route.model, route.rollout_id, rollout.mode, float(rollout.share), rollout.step,
        route.candidate, stats, _header(rollout), route.draw,
    )  # fmt: skip


def _error(name: str, exc: Exception) -> dict[str, str]:
    return {"model": name, "error": f"{type(exc).__name__}: {exc}"}
