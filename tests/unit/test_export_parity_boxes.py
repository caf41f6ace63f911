"""Box parity's raw comparison: a cell kept as a peak by one runtime only (a rounding tie
between neighbours) is counted as a flip, not read as a score difference (a 3-epoch detector
failed its export on 0.012 "score difference" while every decoded detection agreed)."""

from __future__ import annotations

import numpy as np

from visionyard.export.parity_boxes import raw_differences


def test_a_peak_kept_by_one_side_is_a_flip_not_a_score_difference() -> None:
    boxes = np.zeros((1, 3, 4), np.float32)
    torch_scores = np.array([[[0.50, 0.0], [0.012, 0.0], [0.0, 0.3]]], np.float32)
    onnx_scores = np.array([[[0.50002, 0.0], [0.0, 0.0], [0.0, 0.3]]], np.float32)
    score, box, flips = raw_differences((boxes, torch_scores), (boxes + 1e-5, onnx_scores))
    assert score == np.float32(0.50002) - np.float32(0.5)  # only the cell both kept
    assert box == np.float32(1e-5)
    assert flips == 1


def test_a_real_score_difference_still_counts() -> None:
    boxes = np.zeros((1, 1, 4), np.float32)
    score, _, flips = raw_differences(
        (boxes, np.array([[[0.4]]], np.float32)), (boxes, np.array([[[0.6]]], np.float32))
    )
    assert abs(score - 0.2) < 1e-6
    assert flips == 0
