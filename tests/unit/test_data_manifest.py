"""Manifests: content-addressed digest, verification of every image, JSON round trip."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures.datasets import EXIF_DISPLAYED, exif_coco_set
from visionyard.data import (
    BoxAnnotation,
    DatasetManifest,
    ManifestEntry,
    build_manifest,
    read_coco,
    read_dataset,
    read_imagefolder,
    sha256_file,
)
from visionyard.errors import CorruptImagesError, DatasetError


def break_images(root: Path) -> dict[str, str]:
    """Add a corrupt, a truncated and a zero-byte image; returns their relpaths -> problem."""
    good = next((root / "train" / "circle").glob("*.png")).read_bytes()
    (root / "train/square/corrupt.png").write_bytes(b"this is not a png at all")
    (root / "val/star/truncated.png").write_bytes(good[: len(good) // 2])
    (root / "train/triangle/empty.png").write_bytes(b"")
    return {
        "train/square/corrupt.png": "not a readable image",
        "val/star/truncated.png": "corrupt or truncated",
        "train/triangle/empty.png": "empty (0 bytes)",
    }


def test_manifest_of_synthetic_set(synth_classification_manifest: DatasetManifest) -> None:
    m = synth_classification_manifest
    assert m.kind == "classification"
    assert m.labels == ("circle", "square", "star", "triangle")
    assert len(m) == 36
    assert [e.path for e in m.entries] == sorted(e.path for e in m.entries)
    first = m.entries[0]
    assert (first.width, first.height, first.split, first.label) == (64, 64, "train", "circle")
    assert first.annotations is None
    assert m.splits == ("train", "val")
    assert m.label_counts()["star"] == {"train": 6, "val": 3}


def test_entry_hash_and_size_match_the_file(
    synth_classification: Path, synth_classification_manifest: DatasetManifest
) -> None:
    entry = synth_classification_manifest.entries[3]
    data = (synth_classification / entry.path).read_bytes()
    assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert entry.size == len(data)


def test_digest_ignores_location_and_mtime(
    synth_classification_manifest: DatasetManifest, classification_copy: Path
) -> None:
    for path in classification_copy.rglob("*.png"):
        os.utime(path, (1_000_000, 1_000_000))
    again = build_manifest(classification_copy)
    assert again.digest == synth_classification_manifest.digest
    assert again.source != synth_classification_manifest.source


def test_digest_changes_with_content(
    synth_classification_manifest: DatasetManifest, classification_copy: Path
) -> None:
    a = classification_copy / "train/circle/circle_00000.png"
    b = classification_copy / "train/circle/circle_00001.png"
    a.write_bytes(b.read_bytes())
    assert build_manifest(classification_copy).digest != synth_classification_manifest.digest


def test_digest_changes_with_label(
    synth_classification_manifest: DatasetManifest, classification_copy: Path
) -> None:
    entries = synth_classification_manifest.entries
    relabelled = [entries[0].model_copy(update={"label": "star"}), *entries[1:]]
    changed = DatasetManifest.create(
        "classification", synth_classification_manifest.labels, relabelled
    )
    assert changed.digest != synth_classification_manifest.digest
    shutil.move(classification_copy / "val/star", classification_copy / "val/circle2")
    assert build_manifest(classification_copy).digest != synth_classification_manifest.digest


def test_created_time_is_not_in_the_digest(synth_classification_manifest: DatasetManifest) -> None:
    m = synth_classification_manifest
    again = DatasetManifest.create(m.kind, m.labels, reversed(m.entries), source="elsewhere")
    assert again.created != m.created
    assert again.digest == m.digest


def test_save_and_load_round_trip(
    synth_classification_manifest: DatasetManifest, tmp_path: Path
) -> None:
    path = synth_classification_manifest.save(tmp_path / "sub" / "m.json")
    loaded = DatasetManifest.load(path)
    assert loaded == synth_classification_manifest
    assert json.loads(path.read_text())["digest"] == synth_classification_manifest.digest


def test_edited_manifest_is_refused(
    synth_classification_manifest: DatasetManifest, tmp_path: Path
) -> None:
    doc = json.loads(synth_classification_manifest.model_dump_json())
    doc["entries"][0]["label"] = "square"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(
        DatasetError, match=r"invalid manifest .*m.json: .*does not match the entries"
    ):
        DatasetManifest.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "invalid manifest"), ('{"kind": "segmentation"}', "kind"), ("[]", "invalid manifest")],
)
def test_malformed_manifest(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        DatasetManifest.load(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read manifest"):
        DatasetManifest.load(tmp_path / "none.json")


def entry(path: str, label: str | None = "a") -> ManifestEntry:
    return ManifestEntry(path=path, sha256="0" * 64, size=1, width=1, height=1, label=label)


def test_manifest_refuses_duplicate_paths_and_unknown_labels() -> None:
    with pytest.raises(ValueError, match="duplicate entry paths: x.png"):
        DatasetManifest.create("classification", ["a"], [entry("x.png"), entry("x.png")])
    with pytest.raises(ValueError, match=r"labels not in the label list: \['b'\]"):
        DatasetManifest.create("classification", ["a"], [entry("x.png", "b")])


def test_every_unreadable_image_is_reported(classification_copy: Path) -> None:
    expected = break_images(classification_copy)
    with pytest.raises(CorruptImagesError) as info:
        build_manifest(classification_copy)
    problems = dict(info.value.problems)
    assert sorted(problems) == sorted(expected)
    for path, why in expected.items():
        assert why in problems[path]
        assert path in str(info.value)


def test_pixel_limit_is_enforced(synth_classification: Path) -> None:
    with pytest.raises(CorruptImagesError, match=r"36 unreadable image\(s\)") as info:
        build_manifest(synth_classification, max_pixels=64 * 63)
    assert "exceeds the limit of 4032" in info.value.problems[0][1]


def test_progress_reports_every_image(synth_classification: Path) -> None:
    calls: list[tuple[int, int]] = []
    build_manifest(
        read_imagefolder(synth_classification),
        progress=lambda d, t: calls.append((d, t)),
        workers=1,
    )
    assert calls == [(i, 36) for i in range(1, 37)]


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_sha256_file_in_chunks(tmp_path: Path, chunk: int) -> None:
    data = os.urandom(50_000)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk) == hashlib.sha256(data).hexdigest()


def test_detection_manifest(synth_detection: Path) -> None:
    dataset = read_coco(synth_detection / "annotations.json", synth_detection / "images")
    manifest = build_manifest(synth_detection)
    assert manifest.kind == "detection"
    assert manifest.labels == dataset.labels
    assert [e.path for e in manifest.entries] == sorted(i.file_name for i in dataset.images)
    boxes = sum(len(e.annotations or ()) for e in manifest.entries)
    assert boxes == len(dataset.annotations)
    counts = manifest.label_counts()
    assert sum(c.get("boxes", 0) for c in counts.values()) == boxes
    assert all(e.label is None and e.split is None for e in manifest.entries)
    assert build_manifest(dataset).digest == manifest.digest


def test_detection_digest_follows_annotations(detection_copy: Path) -> None:
    before = build_manifest(detection_copy)
    doc = json.loads((detection_copy / "annotations.json").read_text())
    doc["annotations"][0]["bbox"][0] += 0.5
    (detection_copy / "annotations.json").write_text(json.dumps(doc))
    assert build_manifest(detection_copy).digest != before.digest


def test_detection_annotation_order_does_not_matter(detection_copy: Path) -> None:
    before = build_manifest(detection_copy)
    doc = json.loads((detection_copy / "annotations.json").read_text())
    for new_id, ann in enumerate(reversed(doc["annotations"]), start=1):
        ann["id"] = new_id
    (detection_copy / "annotations.json").write_text(json.dumps(doc))
    assert build_manifest(detection_copy).digest == before.digest


def test_declared_size_must_match_the_image(detection_copy: Path) -> None:
    doc = json.loads((detection_copy / "annotations.json").read_text())
    doc["images"][1]["width"] = 128
    (detection_copy / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(
        DatasetError, match=r"1 image size\(s\) differ .*00001.png is 64x64, declared 128x64"
    ):
        build_manifest(detection_copy)


def test_corrupt_detection_images_are_reported(detection_copy: Path) -> None:
    (detection_copy / "images/00002.png").write_bytes(b"")
    with pytest.raises(CorruptImagesError, match="00002.png: file is empty"):
        build_manifest(detection_copy)


def test_read_dataset_detects_the_layout(synth_classification: Path, synth_detection: Path) -> None:
    assert read_dataset(synth_detection).__class__.__name__ == "CocoDataset"
    assert read_dataset(synth_classification).__class__.__name__ == "ImageFolderDataset"
    explicit = read_dataset(synth_detection / "images", synth_detection / "annotations.json")
    assert explicit.__class__.__name__ == "CocoDataset"


def test_box_annotation_describes_labels() -> None:
    boxes = tuple(
        BoxAnnotation(label=name, bbox=(i, i, 1, 1)) for i, name in enumerate(["b", "a", "b"])
    )
    e = ManifestEntry(path="x", sha256="0" * 64, size=1, width=4, height=4, annotations=boxes)
    assert e.describe_labels() == "1xa, 2xb"
    assert e.model_copy(update={"annotations": ()}).describe_labels() == "(no objects)"


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_an_unreadable_annotations_json_is_not_read_as_classes(tmp_path: Path, kind: str) -> None:
    link = tmp_path / "annotations.json"
    link.symlink_to(link if kind == "loop" else tmp_path / "gone.json")
    with pytest.raises(DatasetError, match=f"COCO annotation file {link} is a "):
        read_dataset(tmp_path)


def test_coco_sizes_are_the_displayed_ones_after_the_exif_turn(tmp_path: Path) -> None:
    manifest = build_manifest(exif_coco_set(tmp_path / "coco"))
    assert [(e.width, e.height) for e in manifest.entries] == [EXIF_DISPLAYED] * 2


def test_coco_sizes_in_stored_pixels_of_a_turned_image_are_refused(tmp_path: Path) -> None:
    data = exif_coco_set(tmp_path / "coco", declared="stored")
    with pytest.raises(DatasetError) as info:
        build_manifest(data)
    message = str(info.value)
    assert "00001.jpg is declared 32x48, its stored size, but shows as 48x32 after EXIF " in message
    assert "orientation 6" in message
    assert "orientation 8" in message
    assert "annotations and width/height must be in displayed (EXIF-applied) pixels" in message
