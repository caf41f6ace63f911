"""Reading a labelled folder for ``visionyard evaluate``: split choice, task and label fit, the
digest of exactly what is evaluated, and the report files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.runtime import colour_contract, detector_contract, flat_png
from tests.registry_support import colour_dataset
from visionyard.data import build_manifest, make_detection_set, read_imagefolder
from visionyard.errors import CorruptImagesError, DatasetError
from visionyard.evaluate import check_fit, read_eval_set, write_report
from visionyard.evaluate.classification import classification_report


def _splits(root: Path, *names: str) -> Path:
    for split in names:
        for label in ("red", "green"):
            folder = root / split / label
            folder.mkdir(parents=True)
            (folder / "0.png").write_bytes(flat_png((1, 2, 3)))
    return root


def test_the_split_is_chosen_val_then_test_unless_named(tmp_path: Path) -> None:
    both = _splits(tmp_path / "both", "train", "val", "test")
    assert read_eval_set(both).split == "val"
    assert read_eval_set(both, "test").split == "test"
    assert read_eval_set(_splits(tmp_path / "test-only", "train", "test")).split == "test"
    train_only = read_eval_set(_splits(tmp_path / "train-only", "train"))
    assert (train_only.split, train_only.size) == (None, 2)
    flat = read_eval_set(colour_dataset(tmp_path / "flat", labels=("red",)) / "val")
    assert (flat.split, flat.labels, flat.task) == (None, ("red",), "classification")
    with pytest.raises(DatasetError, match="no 'test' split"):
        read_eval_set(flat.root, "test")


def test_the_digest_covers_exactly_the_split_evaluated(tmp_path: Path) -> None:
    root = _splits(tmp_path / "d", "train", "val")
    found = read_eval_set(root)
    assert found.digest() == build_manifest(read_imagefolder(root).split("val")).digest
    assert found.digest() != build_manifest(root).digest
    (root / "val" / "red" / "bad.png").write_bytes(b"broken")
    with pytest.raises(CorruptImagesError, match="val/red/bad.png"):
        read_eval_set(root).digest()


def test_missing_and_empty_folders_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_eval_set(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        read_eval_set(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        read_eval_set(tmp_path / "empty")


def test_task_and_labels_must_fit_the_contract(tmp_path: Path) -> None:
    colours = read_eval_set(colour_dataset(tmp_path / "c", labels=("red", "purple")))
    with pytest.raises(DatasetError, match="not in the model's contract: purple"):
        check_fit(colours, colour_contract(), "shapes/3")
    subset = read_eval_set(colour_dataset(tmp_path / "s", labels=("red",)))
    check_fit(subset, colour_contract())
    with pytest.raises(DatasetError, match="is a detection model but .* ImageFolder"):
        check_fit(subset, detector_contract())
    coco = read_eval_set(make_detection_set(tmp_path / "coco", n_images=2, size=16))
    assert coco.task == "detection"
    with pytest.raises(DatasetError, match="is a classification model but .* COCO"):
        check_fit(coco, colour_contract())
    with pytest.raises(DatasetError, match="--split applies to ImageFolder"):
        read_eval_set(coco.root, "val")


def test_report_files(tmp_path: Path) -> None:
    import numpy as np

    report = classification_report(np.array([0, 1, 1]), np.eye(2)[[0, 1, 0]], ("a", "b"))
    files = write_report(report, tmp_path / "out", title="t")
    assert [f.name for f in files] == ["report.json", "confusion_matrix.png"]
    assert json.loads(files[0].read_text())["confusion_matrix"] == [[1, 0], [1, 1]]
    with Image.open(io.BytesIO(files[1].read_bytes())) as image:
        assert image.format == "PNG"
