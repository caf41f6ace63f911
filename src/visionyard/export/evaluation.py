"""Accuracy of a variant against the FP32 reference, on one evaluation set, in one pass each.

The metrics come from :mod:`visionyard.evaluate` (``classification_report``,
``detection_report``). What this module adds is running each model over the evaluation images
ONCE and keeping its raw outputs, so the variant's metric delta, its prediction agreement with
FP32 (top-1 label, or the F1 of matching boxes) and the largest output difference all come from
the same run -- instead of evaluating, then running both models again to compare them.

Without labels (an :class:`~visionyard.export.images.ImageSet`, from ``export --calibration
DIR`` and no ``--data``) there is no metric to compare: the variant is measured against FP32's
own answers only (``comparison = "agreement with fp32"``), and the report says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionyard.bundle.store import sha256_file
from visionyard.contract.postprocess import Detection
from visionyard.contract.schema import VisionContract
from visionyard.data.coco import CocoDataset
from visionyard.data.imagefolder import ImageFolderDataset
from visionyard.errors import DatasetError
from visionyard.evaluate.classification import (
    ClassificationReport,
    check_labels,
    class_probabilities,
    classification_report,
)
from visionyard.evaluate.compare import detection_agreement
from visionyard.evaluate.detection import DetectionReport, detection_report, truth_from_coco
from visionyard.export.images import ImageSet
from visionyard.export.reports import ClassChange, DataRef, Quality
from visionyard.runtime.session import InferenceSession, Outputs

EvalSet = ImageFolderDataset | CocoDataset | ImageSet
Report = ClassificationReport | DetectionReport


@dataclass(frozen=True)
class Evaluated:
    """One model on the evaluation set: its report, raw outputs and per-image predictions."""

    report: Report | None  # None: no labels
    outputs: Outputs
    top1: np.ndarray | None
    detections: list[list[Detection]] | None
    labels: tuple[str, ...] = ()


def check_task(dataset: Any, contract: VisionContract, role: str) -> None:
    """Refuse a dataset of the other task (ImageFolder for a detector, COCO for a classifier)."""
    kinds = {ImageFolderDataset: "classification", CocoDataset: "detection"}
    task = kinds.get(type(dataset))
    if task is not None and task != contract.task:
        layout = "ImageFolder" if task == "classification" else "COCO"
        raise DatasetError(
            f"the {role} set is a {task} ({layout}) dataset but the model is a "
            f"{contract.task} model; use images of the model's own {contract.task} dataset"
        )


def eval_ref(dataset: EvalSet) -> DataRef:
    """Content digest of the evaluation images and their labels."""
    if isinstance(dataset, ImageSet):
        lines = sorted(sha256_file(p) for p in dataset.paths)
        held = " (held out from calibration)" if dataset.held_out else ""
        source = f"images:{dataset.root}{held}"
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return DataRef(
            digest=digest, count=len(dataset), source=source, unreadable=len(dataset.unreadable)
        )
    if isinstance(dataset, ImageFolderDataset):
        lines = sorted(f"{sha256_file(s.path)} {s.class_name}" for s in dataset.samples)
        source = f"imagefolder:{dataset.root}"
    else:
        lines = sorted(sha256_file(i.path) for i in dataset.images)
        lines.append(sha256_file(dataset.annotation_file))
        source = f"coco:{dataset.annotation_file}"
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return DataRef(digest=digest, count=len(dataset), source=source)


def evaluate(session: InferenceSession, dataset: EvalSet, batch_size: int = 32) -> Evaluated:
    """Run ``session`` once over ``dataset`` and score it."""
    check_task(dataset, session.contract, "evaluation")
    if len(dataset) == 0:
        raise DatasetError("the evaluation set is empty")
    if isinstance(dataset, ImageSet):
        return _unlabelled(session, dataset, batch_size)
    if isinstance(dataset, ImageFolderDataset):
        return _classification(session, dataset, batch_size)
    return _detection(session, dataset, batch_size)


def _unlabelled(session: InferenceSession, images: ImageSet, batch_size: int) -> Evaluated:
    """The model's answers alone: what FP32 and a variant are compared on without labels."""
    labels = tuple(session.contract.labels)
    outputs, metas = _run(session, list(images.paths), batch_size)
    if session.contract.task == "classification":
        top1 = class_probabilities(outputs, session.contract).argmax(axis=1)
        return Evaluated(None, outputs, top1, None, labels)
    found = [list(r.detections) for r in session.decode(outputs, metas)]
    return Evaluated(None, outputs, None, found, labels)


def _classification(
    session: InferenceSession, dataset: ImageFolderDataset, batch_size: int
) -> Evaluated:
    labels = list(session.contract.labels)
    check_labels(dataset.classes, labels, allow_subset=True)
    outputs, _ = _run(session, [s.path for s in dataset.samples], batch_size)
    probabilities = class_probabilities(outputs, session.contract)
    truth = np.array([labels.index(s.class_name) for s in dataset.samples], dtype=np.int64)
    report = classification_report(truth, probabilities, labels)
    return Evaluated(report, outputs, probabilities.argmax(axis=1), None)


def _detection(session: InferenceSession, dataset: CocoDataset, batch_size: int) -> Evaluated:
    labels = list(session.contract.labels)
    check_labels(dataset.labels, labels, allow_subset=True)
    outputs, metas = _run(session, [i.path for i in dataset.images], batch_size)
    found = [list(r.detections) for r in session.decode(outputs, metas)]
    report = detection_report(truth_from_coco(dataset, labels), found, labels)
    return Evaluated(report, outputs, None, found)


def _run(
    session: InferenceSession, paths: Sequence[Path], batch_size: int
) -> tuple[Outputs, list[Any]]:
    parts: list[Outputs] = []
    metas: list[Any] = []
    for start in range(0, len(paths), batch_size):
        batch = session.preprocess(paths[start : start + batch_size])
        parts.append(session.run(batch.tensor))
        metas.extend(batch.metas)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, metas


def quality(reference: Evaluated, candidate: Evaluated) -> Quality:
    """The candidate's metric, agreement and per-class changes against the reference."""
    before, after = reference.report, candidate.report
    if before is None or after is None:
        return _agreement_quality(reference, candidate)
    return Quality(
        metric="accuracy" if isinstance(before, ClassificationReport) else "map_50_95",
        value=after.primary,
        reference=before.primary,
        delta_points=100.0 * (after.primary - before.primary),
        agreement=_agreement(reference, candidate),
        max_abs_diff=_max_abs_diff(reference.outputs, candidate.outputs),
        class_metric="recall" if isinstance(before, ClassificationReport) else "ap",
        per_class=_per_class(before, after),
    )


def _agreement_quality(reference: Evaluated, candidate: Evaluated) -> Quality:
    """No labels: the agreement with FP32 is the metric; per class FP32 answered, the share of
    those images the candidate answered alike."""
    agreement = _agreement(reference, candidate)
    classify = reference.top1 is not None
    return Quality(
        metric="top1_agreement" if classify else "box_agreement",
        value=agreement,
        reference=1.0,
        delta_points=None,
        agreement=agreement,
        max_abs_diff=_max_abs_diff(reference.outputs, candidate.outputs),
        class_metric="agreement",
        per_class=_per_class_agreement(reference, candidate) if classify else [],
        comparison="agreement with fp32",
    )


def _per_class_agreement(reference: Evaluated, candidate: Evaluated) -> list[ClassChange]:
    assert reference.top1 is not None
    assert candidate.top1 is not None
    rows = []
    for index, label in enumerate(reference.labels):
        mine = reference.top1 == index
        if mine.any():
            share = float(np.mean(candidate.top1[mine] == index))
            rows.append(ClassChange(label=label, before=1.0, after=share, delta=share - 1.0))
    return rows


def _agreement(reference: Evaluated, candidate: Evaluated) -> float:
    if reference.top1 is not None and candidate.top1 is not None:
        return float(np.mean(reference.top1 == candidate.top1))
    pairs = zip(reference.detections or [], candidate.detections or [], strict=True)
    scores = [detection_agreement(a, b) for a, b in pairs]
    return float(np.mean(scores)) if scores else 1.0


def _max_abs_diff(a: Outputs, b: Outputs) -> float | None:
    diffs = [
        float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
        for k in a
        if k in b and a[k].shape == b[k].shape and a[k].size
    ]
    return max(diffs) if diffs else None


def _per_class(before: Report, after: Report) -> list[ClassChange]:
    old, new = _class_values(before), _class_values(after)
    rows = []
    for label, value in old.items():
        other = new.get(label)
        delta = None if value is None or other is None else other - value
        rows.append(ClassChange(label=label, before=value, after=other, delta=delta))
    return rows


def _class_values(report: Report) -> dict[str, float | None]:
    if isinstance(report, ClassificationReport):
        return {c.label: c.recall if c.support else None for c in report.per_class}
    return {c.label: c.ap for c in report.per_class}
