"""Metrics of an inference session over a dataset, and comparison reports."""

from visionyard.evaluate.classification import (
    ClassificationReport,
    ClassMetrics,
    LabelledImage,
    check_labels,
    classification_report,
    evaluate_classification,
)
from visionyard.evaluate.compare import (
    Agreement,
    ClassDelta,
    Comparison,
    MetricDelta,
    compare_reports,
    detection_agreement,
    prediction_agreement,
)
from visionyard.evaluate.detection import (
    ClassAP,
    DetectionReport,
    ImageTruth,
    TruthBox,
    detection_report,
    evaluate_detection,
    truth_from_coco,
)
from visionyard.evaluate.folder import EvalSet, check_fit, evaluate_set, read_eval_set
from visionyard.evaluate.latency import LatencyReport, measure_latency
from visionyard.evaluate.report import confusion_matrix_png, write_report

__all__ = [
    "Agreement",
    "ClassAP",
    "ClassDelta",
    "ClassMetrics",
    "ClassificationReport",
    "Comparison",
    "DetectionReport",
    "EvalSet",
    "ImageTruth",
    "LabelledImage",
    "LatencyReport",
    "MetricDelta",
    "TruthBox",
    "check_fit",
    "check_labels",
    "classification_report",
    "compare_reports",
    "confusion_matrix_png",
    "detection_agreement",
    "detection_report",
    "evaluate_classification",
    "evaluate_detection",
    "evaluate_set",
    "measure_latency",
    "prediction_agreement",
    "read_eval_set",
    "truth_from_coco",
    "write_report",
]
