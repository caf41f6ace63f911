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
from visionyard.evaluate.latency import LatencyReport, measure_latency

__all__ = [
    "Agreement",
    "ClassAP",
    "ClassDelta",
    "ClassMetrics",
    "ClassificationReport",
    "Comparison",
    "DetectionReport",
    "ImageTruth",
    "LabelledImage",
    "LatencyReport",
    "MetricDelta",
    "TruthBox",
    "check_labels",
    "classification_report",
    "compare_reports",
    "detection_agreement",
    "detection_report",
    "evaluate_classification",
    "evaluate_detection",
    "measure_latency",
    "prediction_agreement",
    "truth_from_coco",
]
