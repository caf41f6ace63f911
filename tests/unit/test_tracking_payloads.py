"""What a run logs for manifests, contracts and bundles, from objects, dicts or paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from visionyard.errors import NotFoundError, TrackingError
from visionyard.tracking.payloads import (
    MLFLOW_DIGEST_CHARS,
    check_bundle_dir,
    contract_record,
    dataset_record,
)

DIGEST = hashlib.sha256(b"dataset").hexdigest()
MANIFEST: dict[str, Any] = {
    "kind": "classification",
    "labels": ["cat", "dog"],
    "entries": [
        {"path": "a.png", "sha256": "1", "split": "train", "labels": ["cat"]},
        {"path": "b.png", "sha256": "2", "split": "train", "labels": ["dog"]},
        {"path": "c.png", "sha256": "3", "split": "val", "labels": ["dog"]},
    ],
    "digest": DIGEST,
    "source": "/data/pets",
}


class PydanticLike:
    """Duck-types a pydantic DatasetManifest / VisionContract."""

    def __init__(self, data: dict[str, Any], digest_method: str | None = None) -> None:
        self.data = data
        self._digest = digest_method

    def model_dump_json(self) -> str:
        return json.dumps(self.data)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2)

    def digest(self) -> str | None:
        return self._digest


@pytest.mark.parametrize("form", ["object", "dict", "path"])
def test_dataset_record_from_every_form(form: str, tmp_path: Path) -> None:
    source: Any = {"object": PydanticLike(MANIFEST), "dict": MANIFEST}.get(form)
    if form == "path":
        source = tmp_path / "manifest.json"
        source.write_text(json.dumps(MANIFEST))
    record = dataset_record(source, "train")
    assert record.digest == DIGEST
    assert json.loads(record.manifest_json) == MANIFEST
    assert json.loads(record.source) == {"uri": "/data/pets"}
    profile = json.loads(record.profile)
    assert profile["num_images"] == 3
    assert profile["splits"] == {"train": 2, "val": 1}


def test_mlflow_digest_fits_mlflow_column() -> None:
    record = dataset_record(MANIFEST, "train")
    assert len(record.mlflow_digest) == MLFLOW_DIGEST_CHARS
    assert DIGEST.startswith(record.mlflow_digest)


def test_detection_manifest_schema_has_boxes() -> None:
    record = dataset_record({**MANIFEST, "kind": "detection"}, "coco")
    names = [c["name"] for c in json.loads(record.schema)["mlflow_colspec"]]
    assert "boxes" in names


def test_manifest_without_digest_is_refused() -> None:
    with pytest.raises(TrackingError, match="has no digest"):
        dataset_record({"kind": "classification"}, "train")


def test_missing_and_invalid_manifest_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        dataset_record(tmp_path / "nope.json", "train")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(TrackingError, match="JSON object"):
        dataset_record(bad, "train")
    with pytest.raises(TrackingError, match="cannot log int"):
        dataset_record(42, "train")


def test_contract_uses_its_own_digest_when_it_has_one() -> None:
    record = contract_record(PydanticLike({"task": "classification"}, digest_method="abc123"))
    assert record.digest == "abc123"
    assert json.loads(record.json_text) == {"task": "classification"}


def test_contract_digest_is_computed_from_canonical_json() -> None:
    a = contract_record({"task": "classification", "labels": ["a"]})
    b = contract_record({"labels": ["a"], "task": "classification"})
    assert a.digest == b.digest
    assert len(a.digest) == 64


def test_bundle_dir_must_exist_and_hold_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="bundle directory"):
        check_bundle_dir(tmp_path / "missing")
    with pytest.raises(TrackingError, match="empty"):
        check_bundle_dir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "labels.txt").write_text("a")
    assert check_bundle_dir(tmp_path) == ["model.onnx", "sub/labels.txt"]
