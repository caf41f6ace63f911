"""A gate on a pipeline version: both sides scored by their END result (COCO mAP of the boxes
labelled by the classifier), each on its PINNED stages.

A pipeline version's bundle (:mod:`visionyard.pipeline.registry`) has no model of its own; its
stages are other versions, materialized and verified here like any version a gate loads. The
gate's dataset must be a COCO folder whose categories are the classifier's labels. The latency
a ``latency_p50_ms`` budget checks is the whole pipeline's on one image of the dataset (decode,
detect, crop, classify). Variant agreement does not apply (each stage has its own exports).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from visionyard.bundle.store import Bundle
from visionyard.data.coco import CocoDataset
from visionyard.errors import DatasetError
from visionyard.evaluate.detection import evaluate_detection
from visionyard.pipeline.runner import PipelineRunner
from visionyard.pipeline.spec import ROLES, SPEC_FILE, load_pinned
from visionyard.registry.gates import EvalSummary
from visionyard.registry.trust import materialize
from visionyard.runtime.session import InferenceSession
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

Progress = Callable[[int, int], None]
LATENCY_RUNS = 10


def is_pipeline_bundle(bundle: Bundle) -> bool:
    return not bundle.variants and SPEC_FILE in bundle.files


def pinned_runner(
    client: RegistryClient, bundle: Bundle, dst: Path, key: str | None
) -> PipelineRunner:
    """The pipeline of ``bundle`` on its pinned stages, each verified against the registry."""
    spec = load_pinned(bundle.path / SPEC_FILE)
    sessions, versions = {}, {}
    for role in ROLES:
        stage = spec.pinned_stage(role)
        info = client.get_version(stage.name, str(stage.version))
        sessions[role] = InferenceSession.from_bundle(materialize(client, info, dst / role, key))
        versions[role] = stage.reference
    return PipelineRunner(spec, sessions["detector"], sessions["classifier"], versions)


def pipeline_summary(
    version: VersionInfo,
    runner: PipelineRunner,
    data: CocoDataset | object,
    digest: str,
    *,
    timed: bool = False,
    progress: Progress | None = None,
) -> EvalSummary:
    """COCO mAP of the end result, per-class AP, and (``timed``) the p50 latency."""
    if not isinstance(data, CocoDataset):
        raise DatasetError(
            f"pipeline {version.name}/{version.version} is gated on a COCO folder "
            "(annotations.json with the classifier's labels), not an ImageFolder"
        )
    report = evaluate_detection(runner, data, dataset_digest=digest, progress=progress)
    latency = _latency_ms(runner, data.images[0].path) if timed and data.images else None
    return EvalSummary(
        version=version.version, metric_name="map_50_95", metric=report.map_50_95,
        per_class={c.label: c.ap for c in report.per_class if c.support},
        samples=report.image_count, variant=runner.variant, latency_p50_ms=latency,
    )  # fmt: skip


def _latency_ms(runner: PipelineRunner, image: Path) -> float:
    runner.detect([image])  # warm-up
    runs = []
    for _ in range(LATENCY_RUNS):
        began = time.perf_counter()
        runner.detect([image])
        runs.append((time.perf_counter() - began) * 1000)
    return statistics.median(runs)
