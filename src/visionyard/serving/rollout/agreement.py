"""How far a shadow candidate's answer is from production's, image by image.

- Classification: top-1 agreement (same label) and the confidence delta (candidate's top-1
  score minus production's).
- Detection: boxes matched greedily by IoU (same label, best score first, IoU >= ``iou``); the
  agreement of an image is its F1 over the two box sets (1 when both found nothing), and it
  counts as agreeing when every box on either side found its match.

Written by hand: a few lines of arithmetic over the decoded results the server already has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from visionyard.contract.postprocess import Detection, ImageResult

IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    """One image: whether the answers agree, the agreement score, the confidence delta."""

    agree: bool
    score: float
    confidence_delta: float | None


def compare_results(
    production: Sequence[ImageResult], candidate: Sequence[ImageResult], iou: float = IOU
) -> list[Agreement]:
    """Per image of one request (both lists are in the request's order)."""
    if len(production) != len(candidate):
        raise ValueError(f"{len(production)} production results, {len(candidate)} candidate")
    return [compare_one(p, c, iou) for p, c in zip(production, candidate, strict=True)]


def compare_one(production: ImageResult, candidate: ImageResult, iou: float = IOU) -> Agreement:
    if production.predictions or candidate.predictions:
        return _classification(production, candidate)
    return _detection(production.detections, candidate.detections, iou)


def _classification(production: ImageResult, candidate: ImageResult) -> Agreement:
    if not production.predictions or not candidate.predictions:
        return Agreement(False, 0.0, None)
    ours, theirs = production.predictions[0], candidate.predictions[0]
    same = ours.label == theirs.label
    return Agreement(same, 1.0 if same else 0.0, float(theirs.score) - float(ours.score))


def _detection(
    production: Sequence[Detection], candidate: Sequence[Detection], iou: float
) -> Agreement:
    if not production and not candidate:
        return Agreement(True, 1.0, None)
    matched = _matches(production, candidate, iou)
    score = 2 * matched / (len(production) + len(candidate))
    best_p = max((d.score for d in production), default=0.0)
    best_c = max((d.score for d in candidate), default=0.0)
    agree = matched == len(production) == len(candidate)
    return Agreement(agree, score, float(best_c) - float(best_p))


def _matches(production: Sequence[Detection], candidate: Sequence[Detection], iou: float) -> int:
    """Greedy one-to-one matching, production's best boxes first."""
    free = list(candidate)
    matched = 0
    for box in sorted(production, key=lambda d: -d.score):
        scored = [(box_iou(box.box, c.box), i) for i, c in enumerate(free) if c.label == box.label]
        best = max(scored, default=(0.0, -1))
        if best[0] >= iou:
            free.pop(best[1])
            matched += 1
    return matched


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
