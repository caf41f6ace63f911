"""Comparisons: two evaluation reports (before/after), and two sessions on the same images.

:func:`compare_reports` is what promotion gates and export variant reports read: the headline
metric's delta, every shared overall metric's delta, and a per-class before/after/delta table
(F1 for classification, AP for detection), with labels matched by name.

:func:`prediction_agreement` runs two sessions (e.g. FP32 and INT8 variants, or the production
and the candidate version) on the same images and measures how often they agree: top-1 label for
classifiers; for detectors the per-image F1 of matching boxes (same label, IoU >= 0.5, greedy by
score). Raw outputs are also compared element-wise when both models have the same outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from visionyard.contract.postprocess import Detection
from visionyard.contract.preprocess import Source
from visionyard.errors import ContractError
from visionyard.evaluate.classification import ClassificationReport
from visionyard.evaluate.detection import DetectionReport
from visionyard.runtime.session import InferenceSession, Outputs

Report = ClassificationReport | DetectionReport


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class MetricDelta(_Frozen):
    before: float
    after: float
    delta: float


class ClassDelta(_Frozen):
    """One class: ``None`` where a side has no value (label absent, or no ground truth)."""

    label: str
    before: float | None
    after: float | None
    delta: float | None


class Comparison(_Frozen):
    task: Literal["classification", "detection"]
    metric: str
    before: float
    after: float
    delta: float
    metrics: dict[str, MetricDelta]
    class_metric: Literal["f1", "ap"]
    per_class: list[ClassDelta]
    same_dataset: bool | None

    def worst_class(self) -> ClassDelta | None:
        """The class whose metric dropped most (``None`` when no class has both sides)."""
        both = [c for c in self.per_class if c.delta is not None]
        return min(both, key=lambda c: (c.delta, c.label)) if both else None

    def regressions(self, tolerance: float = 0.0) -> list[ClassDelta]:
        """Classes whose metric dropped by more than ``tolerance``."""
        return [c for c in self.per_class if c.delta is not None and c.delta < -tolerance]


class Agreement(_Frozen):
    task: Literal["classification", "detection"]
    image_count: int
    agreement: float
    max_abs_diff: dict[str, float]
    mean_abs_diff: dict[str, float]


def compare_reports(before: Report, after: Report) -> Comparison:
    """Deltas ``after - before`` overall and per class (labels matched by name)."""
    if before.task != after.task:
        raise ContractError(
            "task", f"cannot compare a {before.task} report with a {after.task} one"
        )
    old, new = before.metrics(), after.metrics()
    shared = [name for name in old if name in new and "/" not in name]
    digests = (before.dataset_digest, after.dataset_digest)
    return Comparison(
        task=before.task,
        metric=_primary_name(before),
        before=before.primary,
        after=after.primary,
        delta=after.primary - before.primary,
        metrics={
            n: MetricDelta(before=old[n], after=new[n], delta=new[n] - old[n]) for n in shared
        },
        class_metric="f1" if isinstance(before, ClassificationReport) else "ap",
        per_class=_class_table(_class_values(before), _class_values(after)),
        same_dataset=None if None in digests else digests[0] == digests[1],
    )


def _primary_name(report: Report) -> str:
    return "accuracy" if isinstance(report, ClassificationReport) else "map_50_95"


def _class_values(report: Report) -> dict[str, float | None]:
    if isinstance(report, ClassificationReport):
        return {c.label: c.f1 if c.support else None for c in report.per_class}
    return {c.label: c.ap for c in report.per_class}


def _class_table(
    before: dict[str, float | None], after: dict[str, float | None]
) -> list[ClassDelta]:
    labels = list(before) + [label for label in after if label not in before]
    rows = []
    for label in labels:
        old, new = before.get(label), after.get(label)
        delta = None if old is None or new is None else new - old
        rows.append(ClassDelta(label=label, before=old, after=new, delta=delta))
    return rows


def prediction_agreement(
    first: InferenceSession,
    second: InferenceSession,
    sources: Sequence[Source],
    *,
    batch_size: int = 16,
) -> Agreement:
    """How far two sessions agree on the same images (see the module docstring)."""
    if first.contract.task != second.contract.task:
        raise ContractError("task", "cannot compare a classifier with a detector")
    scores: list[float] = []
    diffs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(sources), batch_size):
        chunk = sources[start : start + batch_size]
        scores.extend(_agree_batch(first, second, chunk, diffs))
    return Agreement(
        task=first.contract.task,
        image_count=len(scores),
        agreement=float(np.mean(scores)) if scores else 1.0,
        max_abs_diff={k: float(np.concatenate(v).max()) for k, v in diffs.items()},
        mean_abs_diff={k: float(np.concatenate(v).mean()) for k, v in diffs.items()},
    )


def _agree_batch(
    first: InferenceSession,
    second: InferenceSession,
    chunk: Sequence[Source],
    diffs: dict[str, list[np.ndarray]],
) -> list[float]:
    batch = first.preprocess(chunk)
    same_input = first.contract.preprocessing == second.contract.preprocessing
    other = batch if same_input else second.preprocess(chunk)
    raw_a, raw_b = first.run(batch.tensor), second.run(other.tensor)
    _collect_diffs(raw_a, raw_b, diffs)
    results_a = first.decode(raw_a, batch.metas)
    results_b = second.decode(raw_b, other.metas)
    if first.contract.task == "classification":
        return [
            float(a.predictions[0].label == b.predictions[0].label)
            for a, b in zip(results_a, results_b, strict=True)
        ]
    return [
        detection_agreement(a.detections, b.detections)
        for a, b in zip(results_a, results_b, strict=True)
    ]


def _collect_diffs(a: Outputs, b: Outputs, diffs: dict[str, list[np.ndarray]]) -> None:
    for name, value in a.items():
        if name in b and b[name].shape == value.shape:
            delta = np.abs(value.astype(np.float64) - b[name].astype(np.float64)).reshape(-1)
            diffs.setdefault(name, []).append(delta)


def detection_agreement(
    first: Sequence[Detection], second: Sequence[Detection], iou: float = 0.5
) -> float:
    """F1 of matching two detection lists (same label, IoU >= ``iou``, greedy by score)."""
    if not first and not second:
        return 1.0
    unmatched = list(second)
    matched = 0
    for det in sorted(first, key=lambda d: -d.score):
        best = _best_match(det, unmatched, iou)
        if best is not None:
            unmatched.remove(best)
            matched += 1
    return 2 * matched / (len(first) + len(second))


def _best_match(det: Detection, candidates: Sequence[Detection], iou: float) -> Detection | None:
    scored = [(box_iou(det.box, c.box), c) for c in candidates if c.label == det.label]
    best = max(scored, key=lambda pair: pair[0], default=None)
    return best[1] if best is not None and best[0] >= iou else None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
