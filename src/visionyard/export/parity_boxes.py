"""Parity of an exported DETECTOR with its torch module, in terms that matter for boxes.

Both run on the same preprocessed real images; their raw outputs are compared (largest score
difference where both keep the cell, largest box-corner difference in input pixels) and so are
their DECODED detections
through the contract (threshold, per-class NMS, letterbox undone): the share of images whose
detection count agrees, the F1 of detections matched by label and IoU >= 0.9 (greedy by score),
the smallest IoU and the largest score difference among matched pairs. A score sitting on the
threshold can flip one detection, hence the agreement is a share with a bound, not all-or-none.
Likewise a detector that keeps only local peaks (a 3x3 max pool compared for equality) may keep
a cell in one runtime and not the other where two neighbours tie to within rounding: such cells
are counted (``peak_flips``, a share of the cells) rather than read as a score difference; what
they change downstream is in the decoded agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.contract.postprocess import Detection, postprocess
from visionyard.contract.preprocess import preprocess_batch
from visionyard.contract.schema import DetectionDecoding, VisionContract
from visionyard.errors import ExportError
from visionyard.evaluate.compare import box_iou, detection_agreement

MATCH_IOU = 0.9


@dataclass(frozen=True)
class BoxParityReport:
    n_images: int
    max_score_diff: float
    max_box_diff_px: float
    peak_flips: float
    count_agreement: float
    matched_f1: float
    min_matched_iou: float | None
    max_abs_bound: float
    min_agreement: float

    @property
    def passed(self) -> bool:
        return (
            self.max_score_diff <= self.max_abs_bound
            and self.count_agreement >= self.min_agreement
            and self.matched_f1 >= self.min_agreement
        )

    @property
    def max_abs_diff(self) -> float:
        """The largest raw score difference (what the classification report calls so)."""
        return self.max_score_diff

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        return (
            f"max score diff {self.max_score_diff:.3g} (bound {self.max_abs_bound:.3g}), box "
            f"corners within {self.max_box_diff_px:.3g} px, peak flips {self.peak_flips:.2%} of "
            "cells, detection counts agree on "
            f"{self.count_agreement:.1%} and matched F1 {self.matched_f1:.4f} (bound "
            f"{self.min_agreement:.4f}) over {self.n_images} image(s)"
        )


class BoxParityError(ExportError):
    """The exported detector disagrees with torch beyond the bounds."""

    def __init__(self, report: BoxParityReport) -> None:
        super().__init__(f"ONNX parity check failed: {report.describe()}")
        self.report = report


def check_box_parity(
    module: nn.Module,
    model: bytes | Path,
    contract: VisionContract,
    images: Sequence[Path],
    *,
    max_abs: float = 1e-3,
    min_agreement: float = 0.95,
    batch_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BoxParityReport:
    """Compare ``module`` (returning the contract's boxes and scores) with the ONNX model."""
    if not images:
        raise ExportError("parity needs at least one evaluation image")
    decoding = contract.decoding
    assert isinstance(decoding, DetectionDecoding)
    names = [decoding.boxes_output, decoding.scores_output]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    score_diff = box_diff = 0.0
    flips = cells = 0
    pairs: list[tuple[list[Detection], list[Detection]]] = []
    module.eval()
    for start in range(0, len(images), batch_size):
        batch = preprocess_batch(
            images[start : start + batch_size], contract, max_pixels=max_pixels
        )
        with torch.inference_mode():
            want = [t.float().cpu().numpy() for t in module(torch.from_numpy(batch.tensor))]
        got = [np.asarray(a) for a in session.run(names, {contract.input_name: batch.tensor})]
        scores, boxes, flipped = raw_differences(want, got)
        score_diff, box_diff = max(score_diff, scores), max(box_diff, boxes)
        flips += flipped
        cells += want[1].size
        ours = postprocess(dict(zip(names, want, strict=True)), contract, batch.metas)
        theirs = postprocess(dict(zip(names, got, strict=True)), contract, batch.metas)
        pairs.extend(
            (list(a.detections), list(b.detections)) for a, b in zip(ours, theirs, strict=True)
        )
    report = _report(pairs, (score_diff, box_diff, flips / max(cells, 1)), max_abs, min_agreement)
    if not report.passed:
        raise BoxParityError(report)
    return report


def raw_differences(
    want: Sequence[np.ndarray], got: Sequence[np.ndarray]
) -> tuple[float, float, int]:
    """(largest score difference over cells both keep, largest box-corner difference, cells
    kept by one side only) of ``(boxes, scores)`` from torch and from ONNX Runtime."""
    box_diff = float(np.abs(want[0] - got[0]).max(initial=0.0))
    kept = (want[1] > 0) & (got[1] > 0)
    score_diff = float(np.abs(want[1] - got[1])[kept].max(initial=0.0))
    return score_diff, box_diff, int(((want[1] > 0) != (got[1] > 0)).sum())


def _report(
    pairs: Sequence[tuple[list[Detection], list[Detection]]],
    raw: tuple[float, float, float],
    max_abs: float,
    min_agreement: float,
) -> BoxParityReport:
    counts = [len(a) == len(b) for a, b in pairs]
    total = sum(len(a) + len(b) for a, b in pairs)
    f1_weighted = sum(detection_agreement(a, b, MATCH_IOU) * (len(a) + len(b)) for a, b in pairs)
    ious = [
        max(box_iou(x.box, y.box) for y in b if y.label == x.label)
        for a, b in pairs
        for x in a
        if any(y.label == x.label for y in b)
    ]
    return BoxParityReport(
        n_images=len(pairs),
        max_score_diff=raw[0],
        max_box_diff_px=raw[1],
        peak_flips=raw[2],
        count_agreement=sum(counts) / len(counts),
        matched_f1=f1_weighted / total if total else 1.0,
        min_matched_iou=min(ious) if ious else None,
        max_abs_bound=max_abs,
        min_agreement=min_agreement,
    )
