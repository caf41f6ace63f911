"""Evaluation records on a version: tag encoding, decoding, ordering and tolerance."""

from __future__ import annotations

import json

import numpy as np

from visionyard.evaluate.classification import ClassificationReport, classification_report
from visionyard.evaluate.detection import ClassAP, DetectionReport
from visionyard.registry.evaluations import (
    EVAL_PREFIX,
    MAX_PATH,
    EvaluationRecord,
    decode_record,
    new_key,
    new_record,
    parse_evaluations,
)

LABELS = ("cat", "dog", "bird")


def _classification(digest: str = "ab" * 32) -> ClassificationReport:
    truth = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.05
    report = classification_report(truth, probabilities, LABELS, dataset_digest=digest)
    return report.model_copy(update={"variant": "int8"})


def test_a_record_round_trips_through_its_tag() -> None:
    key = new_key(now_ns=1_700_000_000_123_456_789, suffix="0badf00d")
    record = new_record(_classification(), "/data/pets", "val", "run123", key=key)
    assert record.time_ms == 1_700_000_000_123
    assert record.metrics == {"accuracy": 0.75, "macro_f1": record.metrics["macro_f1"]}
    assert record.primary == ("accuracy", 0.75)
    assert (record.samples, record.variant, record.split) == (4, "int8", "val")
    tag_key, value = record.to_tag()
    assert tag_key == f"{EVAL_PREFIX}1700000000123456789.0badf00d"
    assert " " not in value
    assert json.loads(value)["dataset_digest"] == "ab" * 32
    assert decode_record(tag_key, value) == record


def test_a_detection_record_keeps_map_as_its_headline() -> None:
    report = DetectionReport(
        image_count=5, object_count=9, map_50_95=0.4321, map_50=0.8, labels=["a"],
        per_class=[ClassAP(label="a", ap=0.4321, ap50=0.8, support=9)], variant="fp32",
    )  # fmt: skip
    record = new_record(report, "x" * (MAX_PATH + 50), None, None)
    assert record.primary == ("map_50_95", 0.4321)
    assert record.metrics == {"map_50_95": 0.4321, "map_50": 0.8}
    assert record.samples == 5
    assert len(record.dataset) == MAX_PATH
    assert record.dataset.startswith("...")


def test_records_accumulate_in_time_order_and_other_tags_are_ignored() -> None:
    records = [
        new_record(_classification(), "d", None, f"run{i}", key=new_key(now_ns=ns))
        for i, ns in enumerate((3_000_000_000, 1_000_000_000, 2_000_000_000))
    ]
    tags = dict(record.to_tag() for record in records)
    tags |= {"vy.bundle_digest": "abc", "vy.event.1": "{}", f"{EVAL_PREFIX}9.broken": "not json"}
    tags[f"{EVAL_PREFIX}8.partial"] = json.dumps({"task": "classification"})
    found = parse_evaluations(tags)
    assert [r.run_id for r in found] == ["run1", "run2", "run0"]
    assert all(isinstance(r, EvaluationRecord) for r in found)


def test_new_keys_are_unique_and_sortable() -> None:
    keys = [new_key() for _ in range(50)]
    assert len(set(keys)) == 50
    assert all(k.startswith(EVAL_PREFIX) for k in keys)
    assert decode_record(keys[0], "[1, 2]") is None
