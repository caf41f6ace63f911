"""A gate compares like with like: each side's serving variant when both serve the same
precision, else both FP32 (issue 16: "accuracy 0.9300 -> 0.9250" compared v1's INT8 with v2's
FP32)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.runtime import colour_classifier_onnx, write_colour_bundle
from visionyard.bundle.store import Bundle
from visionyard.registry.evaluation import like_for_like

FAST_INT8 = {
    "fp32": {"passed": True, "latency_p50_ms": 10.0},
    "int8": {"passed": True, "latency_p50_ms": 4.0, "precision": "int8"},
}


def with_int8(path: Path) -> Bundle:
    return write_colour_bundle(path, variants={"int8": colour_classifier_onnx()},
                               metadata={"variant_reports": FAST_INT8})  # fmt: skip


def test_different_serving_precisions_are_compared_on_fp32(tmp_path: Path) -> None:
    pair = like_for_like(write_colour_bundle(tmp_path / "v2"), with_int8(tmp_path / "v1"))
    assert (pair.candidate, pair.holder, pair.serving) == ("fp32", "fp32", "fp32")
    assert pair.note == "both fp32: the serving variants differ (holder int8, candidate fp32)"


def test_the_same_serving_precision_is_compared_as_served(tmp_path: Path) -> None:
    pair = like_for_like(with_int8(tmp_path / "v2"), with_int8(tmp_path / "v1"))
    assert (pair.candidate, pair.holder, pair.serving) == ("int8", "int8", "int8")
    assert "serving variant (int8 vs int8)" in pair.note


def test_without_a_holder_the_candidate_is_measured_as_it_will_serve(tmp_path: Path) -> None:
    pair = like_for_like(with_int8(tmp_path / "v1"), None)
    assert (pair.candidate, pair.holder, pair.serving) == ("int8", None, "int8")
