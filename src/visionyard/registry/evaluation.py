"""Running a gate: the pinned evaluation dataset, and one model version's evaluation summary.

The dataset is read once and its manifest digest computed (and checked against the gate file's
pin). Labels are checked against each model's contract before any image is scored, so a dataset
labelled for another model fails fast with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from visionyard.bundle.store import Bundle
from visionyard.data.coco import CocoDataset
from visionyard.data.imagefolder import ImageFolderDataset, ImageSample
from visionyard.data.manifest import build_manifest, read_dataset
from visionyard.errors import DatasetError
from visionyard.evaluate.classification import check_labels, evaluate_classification
from visionyard.evaluate.compare import prediction_agreement
from visionyard.evaluate.detection import evaluate_detection
from visionyard.evaluate.latency import measure_latency
from visionyard.pipeline.runner import PipelineRunner
from visionyard.registry.gates import EvalSummary, GatePolicy, GateReport, build_report
from visionyard.registry.pipeline_gate import is_pipeline_bundle, pinned_runner, pipeline_summary
from visionyard.registry.trust import materialize
from visionyard.runtime.session import InferenceSession
from visionyard.runtime.variants import REFERENCE, choose_variant, precision_of, resolve_providers
from visionyard.tracking.mlflow_model import scratch_dir
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GateDataset:
    """The evaluation set of a gate, read and pinned."""

    root: Path
    digest: str
    labels: tuple[str, ...]
    data: ImageFolderDataset | CocoDataset
    samples: tuple[ImageSample, ...]

    @property
    def size(self) -> int:
        return len(self.samples) if isinstance(self.data, ImageFolderDataset) else len(self.data)


def load_gate_dataset(policy: GatePolicy) -> GateDataset:
    """Read the gate's dataset, verify every image, and check the pinned digest."""
    if not policy.dataset.exists():
        raise DatasetError(f"gate dataset {policy.dataset} does not exist")
    data = read_dataset(policy.dataset)
    digest = build_manifest(data).digest
    if policy.dataset_digest and policy.dataset_digest != digest:
        raise DatasetError(
            f"gate dataset {policy.dataset} has digest {digest}, but the gate pins "
            f"{policy.dataset_digest}: the evaluation set changed; restore it or update the pin"
        )
    if isinstance(data, CocoDataset):
        return GateDataset(policy.dataset, digest, tuple(data.labels), data, ())
    samples = tuple(s for s in data.samples if policy.split is None or s.split == policy.split)
    if not samples:
        raise DatasetError(f"gate dataset {policy.dataset} has no images in split {policy.split!r}")
    labels = tuple(sorted({s.class_name for s in samples}))
    return GateDataset(policy.dataset, digest, labels, data, samples)


def check_dataset_labels(dataset: GateDataset, model_labels: tuple[str, ...], who: str) -> None:
    """:class:`DatasetError` when the dataset has labels the model cannot predict."""
    try:
        check_labels(dataset.labels, model_labels, allow_subset=True)
    except DatasetError as exc:
        raise DatasetError(f"gate dataset {dataset.root} does not fit {who}: {exc}") from exc


def summarize(
    version: str,
    session: InferenceSession,
    dataset: GateDataset,
    *,
    latency: InferenceSession | None = None,
    progress: Progress | None = None,
) -> EvalSummary:
    """Evaluate one version: headline metric, per-class recall (AP), sample count, and the
    latency of ``latency`` (the variant that will serve) when given."""
    p50 = (
        measure_latency(latency, iterations=20, throughput_iterations=1).p50_ms
        if latency is not None
        else None
    )
    common = {"version": version, "variant": session.variant, "latency_p50_ms": p50}
    if isinstance(dataset.data, CocoDataset):
        det = evaluate_detection(
            session, dataset.data, dataset_digest=dataset.digest, progress=progress
        )
        per_class = {c.label: c.ap for c in det.per_class if c.support}
        return EvalSummary(
            metric_name="map_50_95", metric=det.map_50_95, per_class=per_class,
            samples=det.image_count, **common,
        )  # fmt: skip
    cls = evaluate_classification(
        session, dataset.samples, dataset_digest=dataset.digest, progress=progress
    )
    recalls = {c.label: c.recall for c in cls.per_class if c.support}
    return EvalSummary(
        metric_name="accuracy", metric=cls.accuracy, per_class=recalls,
        samples=cls.sample_count, **common,
    )  # fmt: skip


@dataclass(frozen=True)
class Pairing:
    """Which variant of each side a gate evaluates, and why (said in the report)."""

    candidate: str
    holder: str | None
    serving: str
    note: str


def like_for_like(candidate: Bundle, holder: Bundle | None) -> Pairing:
    """Each side's serving variant when their precisions match, else both FP32."""
    providers = resolve_providers(None, ort.get_available_providers())
    serving = choose_variant(candidate, providers)
    if holder is None:
        return Pairing(serving, None, serving, f"candidate's serving variant {serving}")
    held = choose_variant(holder, providers)
    if precision_of(serving) == precision_of(held):
        return Pairing(serving, held, serving, f"each side's serving variant ({held} vs {serving})")
    note = f"both fp32: the serving variants differ (holder {held}, candidate {serving})"
    return Pairing(REFERENCE, REFERENCE, serving, note)


def gate_runner(
    client: RegistryClient,
    name: str,
    policy: GatePolicy,
    progress: Progress | None = None,
    signing_key: str | None = None,
) -> Callable[[VersionInfo, VersionInfo | None, str], GateReport]:
    """A function evaluating candidate and holder, like for like, on the gate's dataset into
    a report. Both are checked against the registry's digests before anything runs."""
    dataset = load_gate_dataset(policy)

    def run(candidate: VersionInfo, holder: VersionInfo | None, alias: str) -> GateReport:
        with scratch_dir() as tmp:
            new = _verified(client, candidate, dataset, tmp / "candidate", signing_key)
            old = None
            if holder is not None:
                old = _verified(client, holder, dataset, tmp / "holder", signing_key)
            if is_pipeline_bundle(new):  # scored by its end result (registry.pipeline_gate)
                (version, runner), held = _pipelines(
                    client, (candidate, new), (holder, old), tmp, signing_key
                )
                after = pipeline_summary(version, runner, dataset.data, dataset.digest,
                                         timed=policy.latency_p50_ms is not None,
                                         progress=progress)  # fmt: skip
                before = None
                if held is not None:
                    before = pipeline_summary(*held, dataset.data, dataset.digest,
                                              progress=progress)  # fmt: skip
                context = _context(name, alias, dataset, "end results, stages pinned")
                return build_report(policy, context, before, after, None)
            pair = like_for_like(new, old)
            serving = InferenceSession.from_bundle(new, variant=pair.serving)
            timed = serving if policy.latency_p50_ms is not None else None
            evaluated = serving if pair.candidate == pair.serving else _session(new, pair.candidate)
            after = summarize(candidate.version, evaluated, dataset, latency=timed,
                              progress=progress)  # fmt: skip
            before = None
            if holder is not None and old is not None and pair.holder is not None:
                before = summarize(holder.version, _session(old, pair.holder), dataset,
                                   progress=progress)  # fmt: skip
            agreement = _variant_agreement(new, serving, dataset)
        context = {
            "model": name, "alias": alias, "dataset": str(dataset.root),
            "dataset_digest": dataset.digest, "comparison": pair.note,
        }  # fmt: skip
        return build_report(policy, context, before, after, agreement)

    return run


def _pipelines(
    client: RegistryClient,
    candidate: tuple[VersionInfo, Bundle],
    holder: tuple[VersionInfo | None, Bundle | None],
    tmp: Path,
    key: str | None,
) -> tuple[tuple[VersionInfo, PipelineRunner], tuple[VersionInfo, PipelineRunner] | None]:
    """Each side's pipeline on its pinned stages (a holder that is not a pipeline is refused
    by the promotion's task/labels checks, or scored as None here)."""
    new = (candidate[0], pinned_runner(client, candidate[1], tmp / "candidate-stages", key))
    version, bundle = holder
    if version is None or bundle is None or not is_pipeline_bundle(bundle):
        return new, None
    return new, (version, pinned_runner(client, bundle, tmp / "holder-stages", key))


def _context(name: str, alias: str, dataset: GateDataset, comparison: str) -> dict[str, str]:
    return {
        "model": name, "alias": alias, "dataset": str(dataset.root),
        "dataset_digest": dataset.digest, "comparison": comparison,
    }  # fmt: skip


def _verified(
    client: RegistryClient, version: VersionInfo, dataset: GateDataset, dst: Path, key: str | None
) -> Bundle:
    bundle = materialize(client, version, dst, key)
    check_dataset_labels(dataset, bundle.contract.labels, f"version {version.version}")
    return bundle


def _session(bundle: Bundle, variant: str) -> InferenceSession:
    return InferenceSession.from_bundle(bundle, variant=variant)  # materialize() verified it


def _variant_agreement(
    bundle: Bundle, serving: InferenceSession, dataset: GateDataset
) -> tuple[str, float] | None:
    """Top-1 (or box) agreement of the candidate's serving variant with its own FP32."""
    if serving.variant == REFERENCE:
        return None
    sources = (
        [image.path for image in dataset.data.images]
        if isinstance(dataset.data, CocoDataset)
        else [s.path for s in dataset.samples]
    )
    found = prediction_agreement(_session(bundle, REFERENCE), serving, sources)
    return serving.variant, found.agreement
