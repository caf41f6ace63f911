"""Running a gate: the pinned evaluation dataset, and one model version's evaluation summary.

The dataset is read once and its manifest digest computed (and checked against the gate file's
pin). Labels are checked against each model's contract before any image is scored, so a dataset
labelled for another model fails fast with one clear line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionyard.bundle.store import Bundle, load_bundle
from visionyard.data.coco import CocoDataset
from visionyard.data.imagefolder import ImageFolderDataset, ImageSample
from visionyard.data.manifest import build_manifest, read_dataset
from visionyard.errors import DatasetError
from visionyard.evaluate.classification import check_labels, evaluate_classification
from visionyard.evaluate.detection import evaluate_detection
from visionyard.evaluate.latency import measure_latency
from visionyard.registry.gates import EvalSummary, GatePolicy, GateReport, build_report
from visionyard.registry.tags import BUNDLE_ARTIFACT
from visionyard.runtime.session import InferenceSession
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
    latency: bool,
    progress: Progress | None = None,
) -> EvalSummary:
    """Evaluate one version: headline metric, per-class recall (AP), sample count, latency."""
    p50 = (
        measure_latency(session, iterations=20, throughput_iterations=1).p50_ms if latency else None
    )
    if isinstance(dataset.data, CocoDataset):
        det = evaluate_detection(
            session, dataset.data, dataset_digest=dataset.digest, progress=progress
        )
        per_class = {c.label: c.ap for c in det.per_class if c.support}
        return EvalSummary(
            version=version, metric_name="map_50_95", metric=det.map_50_95,
            per_class=per_class, samples=det.image_count, latency_p50_ms=p50,
        )  # fmt: skip
    cls = evaluate_classification(
        session, dataset.samples, dataset_digest=dataset.digest, progress=progress
    )
    recalls = {c.label: c.recall for c in cls.per_class if c.support}
    return EvalSummary(
        version=version, metric_name="accuracy", metric=cls.accuracy,
        per_class=recalls, samples=cls.sample_count, latency_p50_ms=p50,
    )  # fmt: skip


def gate_runner(
    client: RegistryClient, name: str, policy: GatePolicy, progress: Progress | None = None
) -> Callable[[VersionInfo, VersionInfo | None, str], GateReport]:
    """A function evaluating candidate and holder on the gate's dataset into a report."""
    dataset = load_gate_dataset(policy)

    def run(candidate: VersionInfo, holder: VersionInfo | None, alias: str) -> GateReport:
        timed = policy.latency_p50_ms is not None
        with scratch_dir() as tmp:
            after = _evaluate(client, candidate, dataset, tmp / "candidate", timed, progress)
            before = _evaluate(client, holder, dataset, tmp / "holder", False, progress)
        context = {
            "model": name,
            "alias": alias,
            "dataset": str(dataset.root),
            "dataset_digest": dataset.digest,
        }
        assert after is not None
        return build_report(policy, context, before, after)

    return run


def download_bundle(client: RegistryClient, version: VersionInfo, dst: Path) -> Bundle:
    """Download and verify the bundle stored with ``version``."""
    path = client.download_version_artifacts(version, BUNDLE_ARTIFACT, dst)
    return load_bundle(path)


def _evaluate(
    client: RegistryClient,
    version: VersionInfo | None,
    dataset: GateDataset,
    dst: Path,
    timed: bool,
    progress: Progress | None,
) -> EvalSummary | None:
    if version is None:
        return None
    bundle = download_bundle(client, version, dst)
    check_dataset_labels(dataset, bundle.contract.labels, f"version {version.version}")
    session = InferenceSession.from_bundle(bundle)  # download_bundle() verified it
    return summarize(version.version, session, dataset, latency=timed, progress=progress)
