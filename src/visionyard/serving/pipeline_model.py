"""A served pipeline (detect -> crop -> classify) as one OIP model, with stage hot swap.

A registry reference whose version is a pipeline (:mod:`visionyard.pipeline.registry`)
resolves to a :class:`PipelineResolved`, which opens a :class:`PipelineModel` itself
(:class:`~visionyard.serving.sources.OpensItself`); the pool swaps it like any version.

- Input: the ``image`` BYTES tensor (encoded images) only: a crop needs the decoded image, which a
  preprocessed tensor no longer is. Output: ``detections`` (BYTES ``[N]``, a JSON array per image
  with a detector's keys, the end result's label being the classifier's, plus each stage's own
  answer; see :func:`visionyard.pipeline.runner.detection_json`).
- Batching: the detector's batches are the pool's dynamic batches; each request's crops are then
  classified in one batch on the same worker (``finish``), so the two stages overlap across
  workers the way decoding and inference do for a single model.
- Every response's parameters name each stage's version: ``detector``/``classifier``
  (``NAME/VERSION``) and ``detector_version``/``classifier_version``; ``model_version`` is the
  pipeline's own version.
- Stage hot swap: the pool's poll compares a pipeline's *revision* (its version and the version
  each stage resolves to now; a stage written ``REG@alias`` follows that alias). When only the
  classifier moved, the new :class:`PipelineModel` keeps the detector's open, warm session (the
  same object) and opens the new classifier; requests admitted before the switch finish on the
  old composition. Stages run on their default serving variant (``serving.variant`` pins
  single models only) and are not monitored (no reference profile of an end result yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionyard.bundle.store import load_bundle
from visionyard.contract.schema import VisionContract
from visionyard.errors import InvalidInputError
from visionyard.pipeline.registry import ResolvedPipeline
from visionyard.pipeline.runner import Decoded, PipelineRunner, detection_json
from visionyard.runtime.session import InferenceSession
from visionyard.serving.batching import Batcher, Work
from visionyard.serving.codec import object_array
from visionyard.serving.model import IMAGE_INPUT, Finish, Limits, LoadedModel, _decode, image_items
from visionyard.serving.sources import Resolved
from visionyard.serving.statistics import ModelStats
from visionyard.serving.types import RequestedOutput, Tensor, TensorSpec

DETECTIONS = "detections"
MakeBatcher = Callable[[InferenceSession], Batcher]


@dataclass(frozen=True)
class PipelineResolved(Resolved):
    """A pipeline version with the stage versions to serve now."""

    pipeline: ResolvedPipeline | None = None

    def open_model(
        self, name: str, options: Any, batcher: MakeBatcher, current: LoadedModel | None,
        stats: ModelStats,
    ) -> LoadedModel:  # fmt: skip
        assert self.pipeline is not None
        threads = int(getattr(options, "intra_op_threads", 1))
        runner = open_runner(self.pipeline, threads, current)
        made = batcher(runner.detector)
        return PipelineModel(name, self.version, runner, made, stats, self.key)


def resolved_pipeline(pipeline: ResolvedPipeline) -> PipelineResolved:
    return PipelineResolved(pipeline.version, pipeline.path, pipeline.revision, pipeline)


def open_runner(
    pipeline: ResolvedPipeline, threads: int, current: LoadedModel | None
) -> PipelineRunner:
    """The stages' sessions: a stage whose version is the one serving keeps its session."""
    old = current.runner if isinstance(current, PipelineModel) else None
    sessions: dict[str, InferenceSession] = {}
    for role, stage in pipeline.stages.items():
        if old is not None and old.versions.get(role) == stage.reference:
            sessions[role] = getattr(old, role)
            continue
        session = InferenceSession.from_bundle(load_bundle(stage.path), intra_op_threads=threads)
        session.run(session.dummy_input(1))  # warm-up
        sessions[role] = session
    versions = {role: stage.reference for role, stage in pipeline.stages.items()}
    return PipelineRunner(pipeline.spec, sessions["detector"], sessions["classifier"], versions)


def stage_parameters(versions: dict[str, str]) -> dict[str, Any]:
    """Each stage's ``NAME/VERSION`` and version number (strings: OIP and gRPC carry them)."""
    parameters: dict[str, Any] = {}
    for role, reference in sorted(versions.items()):
        parameters[role] = reference
        parameters[f"{role}_version"] = reference.rsplit("/", 1)[1]
    return parameters


class PipelineModel(LoadedModel):
    """A pipeline version being served (see the module docstring)."""

    def __init__(
        self, name: str, version: str, runner: PipelineRunner, batcher: Batcher,
        stats: ModelStats, revision: str,
    ) -> None:  # fmt: skip
        super().__init__(name, version, runner.detector, batcher, stats)
        self.runner = runner
        self.revision = revision
        self.inputs = [TensorSpec(IMAGE_INPUT, "BYTES", (-1,))]
        self.outputs = [TensorSpec(DETECTIONS, "BYTES", (-1,))]
        self.parameters = stage_parameters(runner.versions)

    @property
    def contract(self) -> VisionContract:
        """The end result's: the detector's input, the classifier's labels (as registered)."""
        return self.runner.contract

    @property
    def variant(self) -> str:
        return self.runner.variant

    def work(self, tensor: Tensor, limits: Limits, finish: Finish) -> Work:
        if tensor.name != IMAGE_INPUT:
            raise InvalidInputError(
                f"pipeline {self.name!r} takes encoded images as input {IMAGE_INPUT!r} (BYTES)"
            )
        items = image_items(tensor, limits)
        return Work(len(items), lambda: self._decoded(items, limits), finish)

    def finisher(self, requested: list[RequestedOutput], probabilities: bool) -> Finish:
        def finish(raw: dict[str, np.ndarray], decoded: Any) -> list[Tensor]:
            assert isinstance(decoded, Decoded)  # what _decoded made for this request
            results = self.runner.finish(raw, decoded.metas, decoded.images)
            rows = [json.dumps([detection_json(d) for d in row]).encode() for row in results]
            return [Tensor(DETECTIONS, "BYTES", (len(rows),), object_array(rows))]

        return finish

    def _decoded(self, items: list[bytes], limits: Limits) -> tuple[np.ndarray, Decoded]:
        contract = self.runner.detector.contract
        images = [_decode(index, data, contract, limits) for index, data in enumerate(items)]
        decoded = self.runner.decode(images)
        return decoded.tensor, decoded
