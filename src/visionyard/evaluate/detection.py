"""Detection metrics: COCO mAP@[.5:.95], mAP@.5 and per-class AP, computed by faster-coco-eval.

faster-coco-eval computes the same numbers as pycocotools (~8x faster), so results compare with
published COCO numbers: 10 IoU thresholds, 101 recall points, at most 100 detections per image,
crowd boxes ignored as in COCO. This module only converts between visionyard's types and COCO
dictionaries: ground truth ``[x, y, w, h]`` from the dataset, detections ``(x1, y1, x2, y2)`` in
original image pixels from the contract's decoding.

Labels are matched by name with the same policy as classification
(:func:`visionyard.evaluate.classification.check_labels`): the dataset's categories must be a
subset of the contract's labels. Classes without ground truth get ``ap = None`` and are left out
of the mean, as in COCO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from pydantic import BaseModel, ConfigDict

from visionyard.contract.schema import VisionContract
from visionyard.data.coco import CocoDataset, CocoImage
from visionyard.errors import DatasetError
from visionyard.evaluate.classification import check_labels

Progress = Callable[[int, int], None]
Box = tuple[float, float, float, float]


class DetectionLike(Protocol):
    """A detection: ``box`` xyxy in original pixels, ``score``, class ``index`` (contract)."""

    @property
    def box(self) -> Box: ...

    @property
    def score(self) -> float: ...

    @property
    def index(self) -> int: ...


class Detector(Protocol):
    """What detection evaluation needs of a model: an ``InferenceSession``, or a pipeline's
    runner (:class:`visionyard.pipeline.runner.PipelineRunner`, scored by its end result)."""

    @property
    def contract(self) -> VisionContract: ...

    @property
    def variant(self) -> str: ...

    def detect(self, sources: Sequence[Path]) -> Sequence[Sequence[DetectionLike]]: ...


@dataclass(frozen=True)
class TruthBox:
    """One ground-truth object: ``bbox`` is COCO ``[x, y, w, h]``; ``label`` a contract index."""

    bbox: Box
    label: int
    iscrowd: int = 0
    area: float | None = None


@dataclass(frozen=True)
class ImageTruth:
    image_id: int
    width: int
    height: int
    objects: tuple[TruthBox, ...]


class ClassAP(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    ap: float | None
    ap50: float | None
    support: int


class DetectionReport(BaseModel):
    """COCO metrics of one detector on one dataset."""

    model_config = ConfigDict(frozen=True)

    task: Literal["detection"] = "detection"
    image_count: int
    object_count: int
    map_50_95: float
    map_50: float
    labels: list[str]
    per_class: list[ClassAP]
    dataset_digest: str | None = None
    variant: str | None = None

    @property
    def primary(self) -> float:
        """The headline metric (COCO mAP@[.5:.95])."""
        return self.map_50_95

    def metrics(self) -> dict[str, float]:
        """Flat name -> value, for tracking (per-class AP as ``ap/<label>``)."""
        flat = {"map_50_95": self.map_50_95, "map_50": self.map_50}
        return flat | {f"ap/{c.label}": c.ap for c in self.per_class if c.ap is not None}


def evaluate_detection(
    session: Detector,
    dataset: CocoDataset,
    *,
    batch_size: int = 8,
    progress: Progress | None = None,
    dataset_digest: str | None = None,
    allow_subset: bool = True,
) -> DetectionReport:
    """Run ``session`` over a COCO dataset in batches and compute its COCO metrics."""
    labels = list(session.contract.labels)
    check_labels(dataset.labels, labels, allow_subset)
    truth = truth_from_coco(dataset, labels)
    paths = [image.path for image in dataset.images]
    found: list[Sequence[DetectionLike]] = []
    for start in range(0, len(paths), batch_size):
        found.extend(session.detect(paths[start : start + batch_size]))
        if progress is not None:
            progress(min(start + batch_size, len(paths)), len(paths))
    report = detection_report(truth, found, labels, dataset_digest=dataset_digest)
    return report.model_copy(update={"variant": session.variant})


def truth_from_coco(
    dataset: CocoDataset, labels: Sequence[str], images: Sequence[CocoImage] | None = None
) -> list[ImageTruth]:
    """The objects of ``images`` (default: all the dataset's) with labels re-indexed into
    ``labels`` by category name; crowd regions keep ``iscrowd`` (COCO ignores them)."""
    index = {name: i for i, name in enumerate(labels)}
    names = {c.id: c.name for c in dataset.categories}
    return [
        ImageTruth(
            image.id,
            image.width,
            image.height,
            tuple(
                TruthBox(a.bbox, index[names[a.category_id]], a.iscrowd, a.area)
                for a in dataset.annotations_for(image.id)
            ),
        )
        for image in (dataset.images if images is None else images)
    ]


def detection_report(
    truth: Sequence[ImageTruth],
    predictions: Sequence[Sequence[DetectionLike]],
    labels: Sequence[str],
    *,
    dataset_digest: str | None = None,
) -> DetectionReport:
    """COCO metrics for detections (one sequence per image, in ``truth`` order)."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} images but {len(predictions)} prediction lists")
    support = _support(truth, len(labels))
    categories = [i for i in range(len(labels)) if support[i]]
    if not categories:
        raise DatasetError("the dataset has no (non-crowd) objects to evaluate detections on")
    evaluator = _run_coco(truth, predictions, labels, categories)
    per_class = _per_class(evaluator.eval["precision"], labels, categories, support)
    return DetectionReport(
        image_count=len(truth),
        object_count=int(sum(support)),
        map_50_95=float(evaluator.stats[0]),
        map_50=float(evaluator.stats[1]),
        labels=list(labels),
        per_class=per_class,
        dataset_digest=dataset_digest,
    )


def precision_recall_50(
    truth: Sequence[ImageTruth],
    predictions: Sequence[Sequence[DetectionLike]],
    labels: Sequence[str],
) -> dict[str, list[float]]:
    """Per class with objects, COCO's interpolated precision at IoU 0.5 on its 101 recall
    points (0, 0.01, ..., 1; -1 where the recall is never reached)."""
    support = _support(truth, len(labels))
    categories = [i for i in range(len(labels)) if support[i]]
    if not categories:
        return {}
    precision = _run_coco(truth, predictions, labels, categories).eval["precision"]
    return {
        labels[category]: [float(v) for v in precision[0, :, k, 0, -1]]
        for k, category in enumerate(categories)
    }


def _support(truth: Sequence[ImageTruth], count: int) -> list[int]:
    support = [0] * count
    for image in truth:
        for obj in image.objects:
            support[obj.label] += 0 if obj.iscrowd else 1
    return support


def _run_coco(
    truth: Sequence[ImageTruth],
    predictions: Sequence[Sequence[DetectionLike]],
    labels: Sequence[str],
    categories: list[int],
) -> Any:
    base = {
        "images": [{"id": t.image_id, "width": t.width, "height": t.height} for t in truth],
        "categories": [{"id": i, "name": labels[i]} for i in range(len(labels))],
    }
    ground = COCO({**base, "annotations": _truth_annotations(truth)}, print_function=_quiet)
    found = COCO({**base, "annotations": _detections(truth, predictions)}, print_function=_quiet)
    evaluator = COCOeval_faster(ground, found, iouType="bbox", print_function=_quiet)
    evaluator.params.catIds = categories
    evaluator.run()
    return evaluator


def _truth_annotations(truth: Sequence[ImageTruth]) -> list[dict[str, Any]]:
    annotations: list[dict[str, Any]] = []
    for image in truth:
        for obj in image.objects:
            x, y, w, h = obj.bbox
            area = obj.area if obj.area is not None else w * h
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image.image_id,
                    "category_id": obj.label,
                    "bbox": [x, y, w, h],
                    "area": area,
                    "iscrowd": obj.iscrowd,
                }
            )
    return annotations


def _detections(
    truth: Sequence[ImageTruth], predictions: Sequence[Sequence[DetectionLike]]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for image, detections in zip(truth, predictions, strict=True):
        for det in detections:
            x1, y1, x2, y2 = det.box
            found.append(
                {
                    "id": len(found) + 1,
                    "image_id": image.image_id,
                    "category_id": det.index,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "score": det.score,
                    "iscrowd": 0,
                }
            )
    return found


def _per_class(
    precision: np.ndarray, labels: Sequence[str], categories: list[int], support: list[int]
) -> list[ClassAP]:
    """AP per class from COCOeval's precision array ``[T, R, K, A, M]`` (area all, 100 dets)."""
    column = {category: k for k, category in enumerate(categories)}
    rows = []
    for i, name in enumerate(labels):
        ap = ap50 = None
        if i in column:
            curves = precision[:, :, column[i], 0, -1]
            ap, ap50 = _mean_valid(curves), _mean_valid(curves[0])
        rows.append(ClassAP(label=name, ap=ap, ap50=ap50, support=support[i]))
    return rows


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _quiet(*_args: object, **_kwargs: object) -> None:
    """faster-coco-eval prints progress through this hook; evaluation stays silent."""
