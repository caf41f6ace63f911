"""The ONE postprocessing implementation: model outputs -> labels, scores and boxes.

Classification: softmax when the output is logits, then top-k per image, also in the Triton /
Open Inference Protocol classification-extension string form ``"score:index:label"``.

Detection: boxes decoded to xyxy input pixels, per-class scores thresholded, class-wise NMS, the
best ``max_detections`` kept, then mapped back through :class:`ImageMeta` to the ORIGINAL image
(undoing letterbox padding, resize and crop) and clipped to it. :func:`detect_outputs` reads the
outputs by ``decoding.layout``: a YOLO tensor ``[N, 4 + C, K]`` is transposed into the same boxes
and per-class scores (one NMS implementation for both); post-NMS outputs (``nms``) only get the
score threshold, the limit and the mapping back, as do their one-tensor form (``end2end``).

NMS is hand-written in numpy (greedy, torchvision semantics: a box is suppressed when its IoU with
a better-scoring box of the same class is ``> nms_iou``): scipy has none, ONNX Runtime only has it
as an operator inside a graph, and torchvision does not import here and would be a heavy
dependency for the server. Class-wise NMS uses the usual offset trick (each class's boxes shifted
into a disjoint region) so one pass serves all classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from visionyard.contract.preprocess import ImageMeta
from visionyard.contract.schema import ClassificationDecoding, DetectionDecoding, VisionContract
from visionyard.errors import ContractError

Array = NDArray[np.float64]
_D = TypeVar("_D", ClassificationDecoding, DetectionDecoding)
#: Candidates kept (best scores first) before NMS, bounding its quadratic cost.
MAX_NMS_CANDIDATES = 30_000


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float

    def to_triton(self) -> str:
        """Triton's classification-extension form ``<score>:<index>:<label>``."""
        return f"{self.score:f}:{self.index}:{self.label}"


@dataclass(frozen=True)
class Detection:
    """A box ``(x1, y1, x2, y2)`` in original-image pixels."""

    box: tuple[float, float, float, float]
    score: float
    index: int
    label: str


@dataclass(frozen=True)
class ImageResult:
    """Everything decoded for one image: ``predictions`` or ``detections`` per the task."""

    predictions: list[Prediction] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    embedding: NDArray[np.float32] | None = None


def postprocess(
    outputs: Mapping[str, NDArray[np.generic]],
    contract: VisionContract,
    metas: Sequence[ImageMeta],
) -> list[ImageResult]:
    """Decode named model outputs for a batch (``metas`` from preprocessing, one per image)."""
    embeddings = _embeddings(outputs, contract, len(metas))
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        preds = classify(_output(outputs, decoding.output, "decoding.output"), contract)
        return [
            ImageResult(predictions=p, embedding=e) for p, e in zip(preds, embeddings, strict=True)
        ]
    found = detect_outputs(outputs, contract, metas)
    return [ImageResult(detections=d, embedding=e) for d, e in zip(found, embeddings, strict=True)]


def triton_strings(results: Sequence[Sequence[Prediction]]) -> list[list[str]]:
    """Per image, the classification-extension strings (best first)."""
    return [[p.to_triton() for p in preds] for preds in results]


def softmax(logits: NDArray[np.generic], axis: int = -1) -> Array:
    """Numerically stable softmax in float64."""
    shifted = np.asarray(logits, np.float64)
    shifted = shifted - shifted.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    result: Array = exp / exp.sum(axis=axis, keepdims=True)
    return result


def classify(
    scores: NDArray[np.generic], contract: VisionContract, top_k: int | None = None
) -> list[list[Prediction]]:
    """``[N, C]`` (or ``[C]``) scores -> the top-k predictions per image, best first."""
    decoding = _decoding(contract, ClassificationDecoding)
    probs = np.atleast_2d(np.asarray(scores, np.float64))
    probs = probs.reshape(probs.shape[0], -1)  # [N, C, 1, 1] heads of convolutional models
    _check_classes(probs.shape[-1], contract, "classification output")
    if decoding.scores == "logits":
        probs = softmax(probs)
    k = min(top_k or decoding.top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    labels = contract.labels
    return [
        [Prediction(int(i), labels[i], float(row[i])) for i in best]
        for row, best in zip(probs, order, strict=True)
    ]


def detect(
    boxes: NDArray[np.generic],
    scores: NDArray[np.generic],
    contract: VisionContract,
    metas: Sequence[ImageMeta],
) -> list[list[Detection]]:
    """``boxes [N, K, 4]`` and per-class ``scores [N, K, C]`` -> detections per image."""
    decoding = _decoding(contract, DetectionDecoding)
    boxes, scores = _check_detection_shapes(boxes, scores, contract, len(metas))
    xyxy = _input_pixels(boxes, contract, decoding)
    probs = _probabilities(scores, decoding)
    return [
        _detect_one(xyxy[i], probs[i], decoding, metas[i], contract.labels)
        for i in range(len(metas))
    ]


def detect_outputs(
    outputs: Mapping[str, NDArray[np.generic]],
    contract: VisionContract,
    metas: Sequence[ImageMeta],
) -> list[list[Detection]]:
    """Detections per image from the named model outputs, read by ``decoding.layout``."""
    decoding = _decoding(contract, DetectionDecoding)
    named = {f: _output(outputs, n, f"decoding.{f}") for f, n in decoding.output_fields.items()}
    if decoding.layout == "yolo":
        boxes, scores = split_yolo(named["output"], contract, len(metas))
        return detect(boxes, scores, contract, metas)
    if decoding.layout == "nms":
        return detect_nms(named, contract, metas)
    if decoding.layout == "end2end":
        return detect_nms(split_end2end(named["output"]), contract, metas)
    return detect(named["boxes_output"], named["scores_output"], contract, metas)


def split_yolo(
    output: NDArray[np.generic], contract: VisionContract, n: int
) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    """A YOLO ``[N, 4 + C, K]`` tensor as boxes ``[N, K, 4]`` and scores ``[N, K, C]`` (views)."""
    if output.ndim != 3 or output.shape[1] < 5:
        raise ContractError("decoding", f"expected one output [N, 4 + C, K], got {output.shape}")
    if output.shape[0] != n:
        raise ContractError("decoding", f"output {output.shape} does not match {n} image(s)")
    _check_classes(output.shape[1] - 4, contract, "YOLO output")
    swapped = np.swapaxes(output, 1, 2)
    return swapped[..., :4], swapped[..., 4:]


def split_end2end(output: NDArray[np.generic]) -> dict[str, NDArray[np.generic]]:
    """An end-to-end ``[N, D, 6]`` tensor (box, score, class) as :func:`detect_nms` outputs."""
    if output.ndim != 3 or output.shape[-1] != 6:
        raise ContractError("decoding", f"expected one output [N, D, 6], got {output.shape}")
    fields = ("boxes_output", "scores_output", "classes_output")
    return dict(zip(fields, (output[..., :4], output[..., 4], output[..., 5]), strict=True))


def detect_nms(
    outputs: Mapping[str, NDArray[np.generic]],
    contract: VisionContract,
    metas: Sequence[ImageMeta],
) -> list[list[Detection]]:
    """Outputs of a model that ran NMS itself (by field: ``boxes_output [N, D, 4]``,
    ``scores_output [N, D]``, ``classes_output [N, D]``, optional ``count_output [N]``):
    rows past the count or with a negative class are padding; no NMS here."""
    decoding = _decoding(contract, DetectionDecoding)
    boxes, scores, classes = _check_nms_shapes(outputs, len(metas))
    xyxy = _input_pixels(boxes, contract, decoding)
    probs = _probabilities(scores, decoding)
    valid = (classes >= 0) & (probs >= decoding.score_threshold)
    if "count_output" in outputs:
        count = np.asarray(outputs["count_output"]).reshape(len(metas), -1)[:, :1]
        valid &= np.arange(classes.shape[1])[np.newaxis] < count
    _check_class_indices(classes[valid], contract)
    return [
        _kept_rows(xyxy[i], probs[i], classes[i], valid[i], meta, contract)
        for i, meta in enumerate(metas)
    ]


def _kept_rows(
    xyxy: Array,
    probs: Array,
    classes: NDArray[np.int64],
    valid: NDArray[np.bool_],
    meta: ImageMeta,
    contract: VisionContract,
) -> list[Detection]:
    """One image's valid rows, best score first, at most ``max_detections``, mapped back."""
    limit = _decoding(contract, DetectionDecoding).max_detections
    rows = np.flatnonzero(valid & np.isfinite(probs) & np.isfinite(xyxy).all(axis=1))
    rows = rows[np.argsort(-probs[rows], kind="stable")]
    rows, original = _on_image(rows, xyxy[rows], meta, limit)
    labels = contract.labels
    return [
        Detection(_box(box), float(probs[r]), int(classes[r]), labels[int(classes[r])])
        for box, r in zip(original, rows, strict=True)
    ]


def to_xyxy(boxes: Array, box_format: str) -> Array:
    """Convert ``[..., 4]`` boxes from xyxy, xywh (corner + size) or cxcywh to xyxy."""
    a, b, c, d = np.moveaxis(boxes, -1, 0)
    if box_format == "xywh":
        return np.stack([a, b, a + c, b + d], axis=-1)
    if box_format == "cxcywh":
        return np.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=-1)
    return boxes


def nms(boxes: Array, scores: Array, iou_threshold: float) -> NDArray[np.intp]:
    """Greedy NMS over xyxy ``boxes [M, 4]``; indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    areas = _areas(boxes)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[_iou(boxes[best], areas[best], boxes[rest], areas[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def batched_nms(
    boxes: Array, scores: Array, classes: NDArray[np.intp], iou_threshold: float
) -> NDArray[np.intp]:
    """Class-wise NMS: boxes of different classes never suppress each other. Rows with a
    coordinate or score that is not finite are never kept (nor can they switch suppression off
    for the others, as a NaN offset would)."""
    rows = np.flatnonzero(np.isfinite(boxes).all(axis=1) & np.isfinite(scores))
    if rows.size == 0:
        return np.zeros(0, dtype=np.intp)
    boxes = boxes[rows]
    span = float(np.abs(boxes).max()) * 2 + 1.0
    return rows[nms(boxes + (classes[rows] * span)[:, None], scores[rows], iou_threshold)]


def _detect_one(
    xyxy: Array, probs: Array, decoding: DetectionDecoding, meta: ImageMeta, labels: Sequence[str]
) -> list[Detection]:
    usable = (probs >= decoding.score_threshold) & np.isfinite(probs)
    finite = np.asarray(np.isfinite(xyxy).all(axis=1), dtype=np.bool_)
    usable &= finite[:, np.newaxis]  # a model's NaN/inf rows
    box_idx, cls_idx = np.nonzero(usable)
    cand_scores = probs[box_idx, cls_idx]
    best = np.argsort(-cand_scores, kind="stable")[:MAX_NMS_CANDIDATES]
    box_idx, cls_idx, cand_scores = box_idx[best], cls_idx[best], cand_scores[best]
    cand_boxes = xyxy[box_idx]
    kept = batched_nms(cand_boxes, cand_scores, cls_idx, decoding.nms_iou)
    kept, original = _on_image(kept, cand_boxes[kept], meta, decoding.max_detections)
    return [
        Detection(_box(box), float(cand_scores[k]), int(cls_idx[k]), labels[int(cls_idx[k])])
        for box, k in zip(original, kept, strict=True)
    ]


def _on_image(
    rows: NDArray[np.intp], boxes: Array, meta: ImageMeta, limit: int
) -> tuple[NDArray[np.intp], Array]:
    """The ``rows`` (best first) whose ``boxes`` keep an area once mapped back onto the original
    image and clipped to it (a box wholly in the letterbox padding or off the image has none),
    at most ``limit``, with their mapped boxes."""
    original = meta.to_original(boxes)
    real = np.flatnonzero(_areas(original) > 0)[:limit]
    return rows[real], original[real]


def _box(row: Array) -> tuple[float, float, float, float]:
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])


def _areas(boxes: Array) -> Array:
    result: Array = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    return result


def _iou(box: Array, area: float, others: Array, other_areas: Array) -> Array:
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    union = area + other_areas - inter
    result: Array = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return result


def _decoding(contract: VisionContract, kind: type[_D]) -> _D:
    if not isinstance(contract.decoding, kind):
        raise ContractError("task", f"this is a {contract.task} contract")
    return contract.decoding


def _check_classes(count: int, contract: VisionContract, what: str) -> None:
    if count != len(contract.labels):
        problem = f"the {what} has {count} classes but the contract lists {len(contract.labels)}"
        raise ContractError("labels", problem)


def _input_pixels(
    boxes: NDArray[np.generic], contract: VisionContract, decoding: DetectionDecoding
) -> Array:
    """``[..., 4]`` boxes in ``box_format`` and ``coordinates`` -> xyxy input pixels."""
    xyxy = to_xyxy(np.asarray(boxes, np.float64), decoding.box_format)
    if decoding.coordinates == "normalized":
        size = contract.preprocessing.input_size
        xyxy = xyxy * np.array([size.width, size.height] * 2, dtype=np.float64)
    return xyxy


def _probabilities(scores: NDArray[np.generic], decoding: DetectionDecoding) -> Array:
    probs = np.asarray(scores, np.float64)
    return 1.0 / (1.0 + np.exp(-probs)) if decoding.scores == "logits" else probs


def _check_nms_shapes(
    outputs: Mapping[str, NDArray[np.generic]], n: int
) -> tuple[NDArray[np.generic], NDArray[np.generic], NDArray[np.int64]]:
    boxes, scores = outputs["boxes_output"], outputs["scores_output"]
    classes = outputs["classes_output"]
    shapes = f"boxes {boxes.shape}, scores {scores.shape}, classes {classes.shape}"
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.ndim != 2 or classes.ndim != 2:
        problem = f"expected boxes [N, D, 4], scores [N, D] and classes [N, D], got {shapes}"
        raise ContractError("decoding", problem)
    if not boxes.shape[:2] == scores.shape == classes.shape or boxes.shape[0] != n:
        raise ContractError("decoding", f"{shapes} do not match {n} image(s)")
    count = outputs.get("count_output")
    if count is not None and count.size != n:
        raise ContractError("decoding", f"count {count.shape} does not hold {n} image(s)")
    return boxes, scores, np.asarray(classes).astype(np.int64)


def _check_class_indices(classes: NDArray[np.int64], contract: VisionContract) -> None:
    if classes.size and int(classes.max()) >= len(contract.labels):
        problem = (
            f"the model returned class index {int(classes.max())} but the contract lists "
            f"{len(contract.labels)} labels"
        )
        raise ContractError("labels", problem)


def _check_detection_shapes(
    boxes: NDArray[np.generic], scores: NDArray[np.generic], contract: VisionContract, n: int
) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.ndim != 3:
        problem = (
            f"expected boxes [N, K, 4] and scores [N, K, C], got {boxes.shape}, {scores.shape}"
        )
        raise ContractError("decoding", problem)
    if boxes.shape[:2] != scores.shape[:2] or boxes.shape[0] != n:
        problem = f"boxes {boxes.shape} and scores {scores.shape} do not match {n} image(s)"
        raise ContractError("decoding", problem)
    _check_classes(scores.shape[-1], contract, "scores output")
    return boxes, scores


def _output(
    outputs: Mapping[str, NDArray[np.generic]], name: str, where: str
) -> NDArray[np.generic]:
    if name not in outputs:
        raise ContractError(where, f"the model has no output {name!r} (has: {sorted(outputs)})")
    return np.asarray(outputs[name])


def _embeddings(
    outputs: Mapping[str, NDArray[np.generic]], contract: VisionContract, n: int
) -> list[NDArray[np.float32] | None]:
    if contract.embedding_output is None:
        return [None] * n
    values = _output(outputs, contract.embedding_output, "embedding_output")
    if values.ndim == 0 or values.shape[0] != n:
        raise ContractError("embedding_output", f"shape {values.shape} does not hold {n} image(s)")
    return [np.asarray(row, dtype=np.float32).reshape(-1) for row in values]
