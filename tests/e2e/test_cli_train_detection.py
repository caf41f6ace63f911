"""``visionyard train --task detection`` through the CLI: a tiny run tracked like a classifier's
(params, dataset, per-epoch loss parts and mAP, reports), exported with boxes parity, and the
bundle serves detections in the original image's coordinates; user errors are one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.test_cli_train import one_error_line
from tests.fixtures.cli import Capture, run, store_flags
from visionyard.bundle.store import load_bundle
from visionyard.data.synth import make_detection_set
from visionyard.runtime.session import InferenceSession
from visionyard.settings import Settings

TINY = ["--width", "0.25", "--batch-size", "8", "--seed", "0", "--no-progress"]


@pytest.mark.slow
def test_a_detector_is_trained_tracked_exported_and_detects(
    capsys: Capture, tmp_path: Path, tracking_settings: Settings, mlflow_client: MlflowClient
) -> None:
    data = make_detection_set(tmp_path / "coco", n_images=40, seed=5)
    code, out, err = run(
        capsys, *store_flags(tracking_settings), "train", "--task", "detection", "--data", data,
        "--epochs", "2", "--patience", "0", "--experiment", tracking_settings.tracking.experiment,
        *TINY,
    )  # fmt: skip
    assert code == 0, err
    run_id = re.search(r"^run id: ([0-9a-f]{32})$", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert re.search(r"val mAP@\.5\s+│\s+\d\.\d{4}", out)
    assert "matched F1 1.0000" in out  # torch and ONNX Runtime find the same boxes
    record = mlflow_client.get_run(run_id)
    assert record.data.tags["visionyard.task"] == "detection"
    assert record.data.params["task"] == "detection"
    assert record.data.params["monitor"] == "val_map_50_95"
    assert int(record.data.params["train_images"]) + int(record.data.params["val_images"]) == 40
    history = mlflow_client.get_metric_history(run_id, "val_map_50")
    assert [m.step for m in history] == [1, 2]
    metrics = record.data.metrics
    for name in ("train_loss", "train_loss_heatmap", "train_loss_size", "train_loss_offset",
                 "val_map_50_95", "best_val_map_50"):  # fmt: skip
        assert name in metrics, sorted(metrics)
    assert {"val_ap.circle", "val_ap.square", "val_ap.triangle", "val_ap.star"} <= set(metrics)
    assert record.inputs.dataset_inputs  # the manifest is the run's dataset
    reports = {a.path for a in mlflow_client.list_artifacts(run_id, "reports")}
    assert {"reports/pr_curves.png", "reports/val_boxes.png", "reports/per_class.json",
            "reports/parity.json"} <= reports  # fmt: skip
    folder = tracking_settings.home / "runs" / run_id
    per_class = json.loads((folder / "reports" / "per_class.json").read_text())
    assert [row["label"] for row in per_class["per_class"]] == [
        "circle", "square", "triangle", "star"
    ]  # fmt: skip
    assert (folder / "reports" / "val_boxes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = load_bundle(folder / "bundle")
    assert bundle.contract.task == "detection"
    assert bundle.contract.preprocessing.resize == "letterbox"
    session = InferenceSession.from_bundle(bundle)
    assert session.contract.output_names[:2] == ["boxes", "scores"]
    found = session.detect([next((data / "images").iterdir())])
    assert len(found) == 1
    for det in found[0]:
        assert 0 <= det.box[0] <= det.box[2] <= 64
        assert 0 <= det.box[1] <= det.box[3] <= 64


def test_a_folder_without_boxes_is_one_line(
    capsys: Capture, synth_classification: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "--home", tmp_path, "train", "--task", "detection", "--data",
        synth_classification, *TINY,
    )  # fmt: skip
    assert code != 0
    assert "is not a COCO dataset" in one_error_line(err)
    assert not (tmp_path / "mlflow.db").exists()  # no run was started


def test_a_coco_file_with_bad_boxes_is_refused_with_their_places(
    capsys: Capture, tmp_path: Path
) -> None:
    data = make_detection_set(tmp_path / "coco", n_images=3, seed=1)
    coco = json.loads((data / "annotations.json").read_text())
    coco["annotations"][0]["bbox"] = [50.0, 50.0, 40.0, 10.0]  # past the right edge
    coco["annotations"][1]["category_id"] = 99
    (data / "annotations.json").write_text(json.dumps(coco))
    code, _, err = run(
        capsys, "--home", tmp_path, "train", "--task", "detection", "--data", data, *TINY
    )
    assert code != 0
    assert "Traceback" not in err
    line = one_error_line(err)
    assert "annotation 1: bbox [50.0, 50.0, 40.0, 10.0] lies outside image 1" in line
    assert "annotation 2: unknown category_id 99" in line
    assert not (tmp_path / "mlflow.db").exists()


def test_a_classification_monitor_for_a_detector_is_one_line(
    capsys: Capture, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "--home", tmp_path, "train", "--task", "detection", "--data", tmp_path,
        "--monitor", "val_accuracy", *TINY,
    )  # fmt: skip
    assert code != 0
    assert "a detection run monitors val_map_50_95 or val_map_50" in one_error_line(err)


@pytest.mark.parametrize("case", ["val without objects", "no annotations"])
def test_a_split_without_objects_is_refused_before_any_run(
    capsys: Capture, tmp_path: Path, case: str
) -> None:
    from visionyard.data.manifest import read_dataset
    from visionyard.train.detection.data import split_images

    data = make_detection_set(tmp_path / "coco", n_images=5, seed=1)
    _, val = split_images(read_dataset(data), 0.2, 0)  # type: ignore[arg-type]
    held = {image.id for image in val}
    coco = json.loads((data / "annotations.json").read_text())
    coco["annotations"] = [
        a
        for a in coco["annotations"]
        if case == "val without objects" and a["image_id"] not in held
    ]
    (data / "annotations.json").write_text(json.dumps(coco))
    code, _, err = run(
        capsys, "--home", tmp_path, "train", "--task", "detection", "--data", data, "--epochs",
        "1", *TINY,
    )  # fmt: skip
    assert code == 5
    expected = {
        "val without objects": "the validation split (1 image) holds no objects: annotate more "
        "images or change --val-fraction",
        "no annotations": "the dataset has no annotations",
    }[case]
    assert one_error_line(err) == f"error: {expected}"
    assert not (tmp_path / "mlflow.db").exists()  # no run was started, so none is left FAILED
