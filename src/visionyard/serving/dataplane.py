"""The protocol-agnostic data plane: health, metadata and inference, implemented once.

REST and gRPC adapters convert their wire types to :mod:`visionyard.serving.types` and call this;
errors are domain errors (:mod:`visionyard.errors`), mapped to status codes by each adapter.
Image decoding and preprocessing run on a thread pool of their own, so they overlap with
inference running on the batchers' threads.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from visionyard import __version__
from visionyard.errors import VisionyardError
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.model import IMAGE_INPUT, PLATFORM, LoadedModel, ModelBatch
from visionyard.serving.outputs import build_outputs
from visionyard.serving.pool import ModelPool
from visionyard.serving.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    Timings,
)

SERVER_NAME = "visionyard"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "vision_contract"]


class DataPlane:
    def __init__(self, pool: ModelPool, metrics: ServingMetrics, decode_workers: int = 2) -> None:
        self.pool = pool
        self.metrics = metrics
        self._decode = ThreadPoolExecutor(decode_workers, thread_name_prefix="vy-decode")

    def close(self) -> None:
        self._decode.shutdown(wait=False)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Every configured model has a version serving."""
        return all(self.pool.entry(name).current is not None for name in self.pool.names)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        entry = self.pool.entry(name)  # unknown model -> NotFoundError
        model = entry.current
        return model is not None and (not version or version == model.version)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, __version__, list(EXTENSIONS))

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        model = self.pool.current(name, version)
        entry = self.pool.entry(name)
        session = model.session
        parameters: dict[str, Any] = {
            "contract": session.contract.model_dump(mode="json"),
            "contract_digest": session.contract.digest(),
            "variant": session.variant,
            "reference": entry.source.reference,
            "state": entry.state,
            "last_error": entry.last_error,
            "image_input": IMAGE_INPUT,
        }
        return ModelMetadata(
            name, [model.version], PLATFORM, model.inputs, model.outputs, parameters
        )

    async def infer(self, request: InferRequest, protocol: str) -> InferResponse:
        started = time.perf_counter()
        version = request.model_version or ""
        try:
            model = self.pool.acquire(request.model_name, request.model_version)
        except VisionyardError as exc:
            self.metrics.observe(request.model_name, version, protocol, exc.code)
            raise
        try:
            response, timings = await self._infer(model, request)
        except VisionyardError as exc:
            self.metrics.observe(model.name, model.version, protocol, exc.code)
            raise
        finally:
            self.pool.release(model)
        self.metrics.observe(model.name, model.version, protocol, "ok")
        self.metrics.observe_timings(model.name, protocol, timings, time.perf_counter() - started)
        return response

    async def _infer(
        self, model: LoadedModel, request: InferRequest
    ) -> tuple[InferResponse, Timings]:
        timings = Timings()
        began = time.perf_counter()
        batch = await self._prepare(model, request)
        timings.preprocess = time.perf_counter() - began
        result = await model.batcher.submit(batch.tensor)
        timings.queue, timings.inference = result.queue_s, result.inference_s
        timings.batch_size = result.batch_size
        outputs = build_outputs(
            model.session, model.outputs, result.outputs, batch.metas, request.outputs
        )
        response = InferResponse(model.name, model.version, outputs, request.id)
        return response, timings

    async def _prepare(self, model: LoadedModel, request: InferRequest) -> ModelBatch:
        tensor = model.pick_input(request.inputs)
        if tensor.name != IMAGE_INPUT:
            return model.tensor_input(tensor)
        loop = asyncio.get_running_loop()
        limits = self.pool.config.limits
        return await loop.run_in_executor(self._decode, model.image_input, tensor, limits)
