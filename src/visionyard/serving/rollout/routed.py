"""Inference for a model in a rollout: the canary split and the shadow's sample, once for REST
and gRPC (the data plane calls :meth:`Router.infer` only while the model has a
:class:`~visionyard.serving.rollout.routing.Route`).

- Canary: the request goes to production or to the candidate (``route.chosen``); the response
  names the version that answered (``model_version``), and the client sees the candidate's
  errors (that is what a canary measures).
- Shadow: the request is served by production; when sampled, production's answer is also
  decoded and, once the response is made, a job is offered to the
  :class:`~visionyard.serving.rollout.shadow.ShadowRunner` (a non-blocking put).

Each request counts in the step's figures (:class:`~visionyard.serving.rollout.stats.StepStats`)
and in ``visionyard_rollout_requests_total{model,version,role,status}``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from visionyard.errors import VisionyardError
from visionyard.serving.logs import current_request_id
from visionyard.serving.metrics import RolloutMetrics
from visionyard.serving.model import LoadedModel
from visionyard.serving.rollout.routing import Headers, Route
from visionyard.serving.rollout.shadow import ShadowJob, ShadowRunner
from visionyard.serving.rollout.stats import CANARY, PRODUCTION, SHADOW, is_version_error
from visionyard.serving.types import InferRequest, InferResponse

if TYPE_CHECKING:
    from visionyard.serving.dataplane import DataPlane


class Router:
    """Serves the requests of models in a rollout (see the module docstring)."""

    def __init__(self, plane: DataPlane, shadow: ShadowRunner, metrics: RolloutMetrics) -> None:
        self.plane = plane
        self.shadow = shadow
        self.metrics = metrics

    async def infer(
        self, route: Route, request: InferRequest, protocol: str, headers: Headers | None
    ) -> InferResponse:
        started = time.perf_counter()
        model, role, mirrored = self._pick(route, request, protocol, headers)
        code = "internal"
        try:
            response, decoded = await self.plane.serve(
                model, request, protocol, started, decoded=mirrored
            )
            code = "ok"
        except VisionyardError as exc:
            code = exc.code
            raise
        finally:
            self._count(route, model, role, code, time.perf_counter() - started)
        if mirrored and decoded is not None:
            job = ShadowJob(route, request, decoded, model.version, current_request_id())
            self.shadow.offer(job)
        return response

    def _pick(
        self, route: Route, request: InferRequest, protocol: str, headers: Headers | None
    ) -> tuple[LoadedModel, str, bool]:
        """The admitted version, its role, and whether the request is mirrored to a shadow."""
        pool = self.plane.pool
        try:
            production = pool.current(request.model_name)
            chosen = route.chosen(headers) and route.accepts(request, production)
            canary = chosen and route.mode == CANARY
            model = route.candidate if canary else production
            pool.admit(model)
        except VisionyardError as exc:
            self.plane.refused(request.model_name, None, protocol, exc)
            raise
        return model, (CANARY if canary else PRODUCTION), chosen and route.mode == SHADOW

    def _count(
        self, route: Route, model: LoadedModel, role: str, code: str, seconds: float
    ) -> None:
        route.stats.add(role, code, seconds)
        status = "ok" if code == "ok" else "error" if is_version_error(code) else "client_error"
        self.metrics.observe(route.model, model.version, role, status, seconds)
