"""The protocol-agnostic data plane: health, metadata and inference, implemented once.

REST and gRPC adapters convert their wire types to :mod:`visionyard.serving.types` and call this;
errors are domain errors (:mod:`visionyard.errors`), mapped to status codes by each adapter.
Requests are checked on the event loop; image decoding, preprocessing, inference and output
decoding run on the model's batcher threads (:mod:`visionyard.serving.batching`).

Shutdown (:meth:`DataPlane.drain`): the server reports not ready at once and refuses new
inference with ``serving.unavailable`` (REST 503 with ``Connection: close``, gRPC UNAVAILABLE:
retryable, so a load balancer sends it to another replica), while the requests already admitted
finish (:meth:`DataPlane.wait_idle`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from visionyard import __version__
from visionyard.contract.postprocess import ImageResult
from visionyard.contract.preprocess import ImageMeta
from visionyard.errors import VisionyardError
from visionyard.serving.errors import ModelUnavailableError, redact_paths
from visionyard.serving.metrics import INTERNAL, ServingMetrics
from visionyard.serving.model import IMAGE_INPUT, PLATFORM, LoadedModel
from visionyard.serving.outputs import (
    check_outputs,
    classification_probabilities,
    decode_once,
)
from visionyard.serving.pool import ModelPool
from visionyard.serving.rollout.routing import Headers, Route, route_fields
from visionyard.serving.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    Timings,
)

if TYPE_CHECKING:
    from visionyard.serving.rollout.routed import Router

SERVER_NAME = "visionyard"
UNKNOWN = "_unknown"  # the model label of requests naming a model that is not served
DRAINING = "draining"  # the state a request refused during shutdown names
#: What the server implements, in Triton's extension names (and ours, ``vision_contract``);
#: ``model_repository`` only while admin calls are on (:attr:`DataPlane.extensions`).
EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "vision_contract",
]
REPOSITORY = "model_repository"


class DataPlane:
    def __init__(self, pool: ModelPool, metrics: ServingMetrics) -> None:
        self.pool = pool
        self.metrics = metrics
        #: models in a rollout (set by :mod:`visionyard.serving.rollout.follower`); empty otherwise
        self.routes: dict[str, Route] = {}
        self.router: Router | None = None
        #: set by :meth:`drain` (shutdown): not ready, new inference refused
        self.draining = False
        self.in_flight = 0  # inference requests admitted and not finished
        #: the extensions that work here: the server drops ``model_repository`` when admin
        #: calls are off (no admin token)
        self.extensions = list(EXTENSIONS)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Every configured model has a version serving, and the server is not draining."""
        serving = (self.pool.entry(name).current is not None for name in self.pool.names)
        return not self.draining and all(serving)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        entry = self.pool.entry(name)  # unknown model -> NotFoundError
        model = entry.current
        return model is not None and (not version or version == model.version)

    def drain(self) -> None:
        """Shutdown begins: report not ready and refuse new inference from now on."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no inference request is in flight (True) or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.in_flight

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, __version__, list(self.extensions))

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """The serving version's tensors and contract; with no version serving (unloaded,
        failed, loading) and none asked for: no versions, no tensors, and the state."""
        entry = self.pool.entry(name)
        state: dict[str, Any] = {
            "reference": redact_paths(entry.source.reference),
            "state": entry.state,
            "last_error": entry.last_error,
        }
        if entry.current is None and not version:
            return ModelMetadata(name, [], PLATFORM, [], [], {**state, "contract": None})
        model = self.pool.current(name, version)
        parameters: dict[str, Any] = {
            "contract": model.contract.model_dump(mode="json"),
            "contract_digest": model.contract.digest(),
            "variant": model.variant,
            **state,
            "image_input": IMAGE_INPUT,
            **model.parameters,
        }
        route = self.routes.get(name)
        if route is not None:
            figures = route.stats.summary(route.mode)
            parameters["rollout"] = {**route_fields(route), "figures": figures}
        return ModelMetadata(
            name, [model.version], PLATFORM, model.inputs, model.outputs, parameters
        )

    def refused(self, name: str, version: str | None, protocol: str, exc: VisionyardError) -> None:
        """Count a request an adapter refused before it reached :meth:`infer` (bad body)."""
        self.metrics.observe(*self._labels(name, version), protocol, exc.code)

    def failed_on_bug(self, name: str, version: str | None, protocol: str) -> None:
        """Count a request that failed on a server bug (REST 500, gRPC INTERNAL) as
        ``status="internal"``: the adapters catch those exceptions, :meth:`infer` never sees
        them end."""
        self.metrics.observe(*self._labels(name, version or None), protocol, INTERNAL)

    def _labels(self, name: str, version: str | None) -> tuple[str, str]:
        """Metric labels for a request's model and version: names and versions that are not
        served become ``_unknown``/``""``, so that clients cannot grow the label set."""
        if name not in self.pool.names:
            return UNKNOWN, ""
        current = self.pool.entry(name).current
        return name, version if current is not None and version == current.version else ""

    async def infer(
        self, request: InferRequest, protocol: str, headers: Headers | None = None
    ) -> InferResponse:
        """Serve one request; ``headers`` (REST headers or gRPC metadata, lower-case names)
        are read only by a sticky canary (:mod:`visionyard.serving.rollout.routing`)."""
        if self.draining:
            exc = ModelUnavailableError(request.model_name, DRAINING, "the server is stopping")
            self.refused(request.model_name, request.model_version, protocol, exc)
            raise exc
        self.in_flight += 1
        try:
            return await self._route(request, protocol, headers)
        finally:
            self.in_flight -= 1

    async def _route(
        self, request: InferRequest, protocol: str, headers: Headers | None
    ) -> InferResponse:
        if self.routes and not request.model_version and self.router is not None:
            route = self.routes.get(request.model_name)
            if route is not None:
                return await self.router.infer(route, request, protocol, headers)
        started = time.perf_counter()
        try:
            model = self.pool.acquire(request.model_name, request.model_version)
        except VisionyardError as exc:
            self.refused(request.model_name, request.model_version, protocol, exc)
            raise
        response, _ = await self.serve(model, request, protocol, started)
        return response

    async def serve(
        self,
        model: LoadedModel,
        request: InferRequest,
        protocol: str,
        started: float,
        *,
        decoded: bool = False,
    ) -> tuple[InferResponse, list[ImageResult] | None]:
        """Run an admitted request on ``model`` and release it; with ``decoded``, also the
        contract's decoding of its images (what a shadow compares with). Counted in the
        version's metrics and Triton statistics (:mod:`visionyard.serving.statistics`)."""
        try:
            response, timings, results = await self._infer(model, request, decoded)
        except BaseException as exc:
            if isinstance(exc, VisionyardError):
                self.metrics.observe(model.name, model.version, protocol, exc.code)
            model.stats.failed(time.perf_counter() - started)
            raise
        finally:
            self.pool.release(model)
        total = time.perf_counter() - started
        self.metrics.observe(model.name, model.version, protocol, "ok")
        self.metrics.observe_timings(model.name, model.version, protocol, timings, total)
        model.stats.succeeded(timings.rows, timings, total)
        return response, results

    async def _infer(
        self, model: LoadedModel, request: InferRequest, decoded: bool
    ) -> tuple[InferResponse, Timings, list[ImageResult] | None]:
        check_outputs(model.outputs, request.outputs)
        probabilities = classification_probabilities(request.parameters)

        finish = model.finisher(request.outputs, probabilities)

        def both(raw: dict[str, np.ndarray], metas: list[ImageMeta]) -> Any:
            return finish(raw, metas), decode_once(model.session, raw, metas)

        tensor = model.pick_input(request.inputs)
        work = model.work(tensor, self.pool.config.limits, both if decoded else finish)
        result = await model.batcher.submit(work)
        timings = Timings(
            result.preprocess_s,
            result.queue_s,
            result.inference_s,
            result.batch_size,
            output=result.output_s,
            rows=work.count,
        )
        outputs, results = result.value if decoded else (result.value, None)
        response = InferResponse(
            model.name, model.version, outputs, request.id, dict(model.parameters)
        )
        return response, timings, results
