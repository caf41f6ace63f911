"""Manifest diffs: added, removed, changed, relabelled (in place or by moving), moved."""

from __future__ import annotations

import hashlib

import pytest

from visionyard.data import BoxAnnotation, DatasetManifest, ManifestEntry, diff_manifests
from visionyard.errors import DatasetError

LABELS = ("cat", "dog", "owl")


def sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def entry(path: str, content: str, label: str | None = None) -> ManifestEntry:
    label = label if label is not None else path.split("/")[-2]
    split = path.split("/")[0] if path.count("/") == 2 else None
    return ManifestEntry(
        path=path, sha256=sha(content), size=1, width=8, height=8, split=split, label=label
    )


def manifest(*entries: ManifestEntry, labels: tuple[str, ...] = LABELS) -> DatasetManifest:
    return DatasetManifest.create("classification", labels, entries)


BASE = (
    entry("train/cat/1.png", "one"),
    entry("train/cat/2.png", "two"),
    entry("train/dog/3.png", "three"),
    entry("val/owl/4.png", "four"),
)


def test_identical() -> None:
    result = diff_manifests(manifest(*BASE), manifest(*reversed(BASE)))
    assert result.identical
    summary = result.summary()
    assert summary["identical"] is True
    assert [summary[k] for k in ("added", "removed", "changed", "relabelled", "moved")] == [0] * 5


def test_added_and_removed() -> None:
    b = manifest(*BASE[1:], entry("train/dog/5.png", "five"))
    result = diff_manifests(manifest(*BASE), b)
    assert [e.path for e in result.added] == ["train/dog/5.png"]
    assert [e.path for e in result.removed] == ["train/cat/1.png"]
    assert not result.identical
    assert result.counts_a == {"cat": 2, "dog": 1, "owl": 1}
    assert result.counts_b == {"cat": 1, "dog": 2, "owl": 1}


def test_changed_content_same_path() -> None:
    b = manifest(entry("train/cat/1.png", "ONE"), *BASE[1:])
    (change,) = diff_manifests(manifest(*BASE), b).changed
    assert (change.path, change.sha256_a, change.sha256_b) == (
        "train/cat/1.png",
        sha("one"),
        sha("ONE"),
    )
    assert (change.labels_a, change.labels_b) == ("cat", "cat")


def test_relabel_by_moving_to_another_class_folder() -> None:
    b = manifest(BASE[0], entry("train/dog/2.png", "two"), *BASE[2:])
    result = diff_manifests(manifest(*BASE), b)
    (relabel,) = result.relabelled
    assert (relabel.path_a, relabel.path_b) == ("train/cat/2.png", "train/dog/2.png")
    assert (relabel.labels_a, relabel.labels_b) == ("cat", "dog")
    assert relabel.sha256 == sha("two")
    assert result.added == result.removed == ()


def test_relabel_in_place() -> None:
    b = manifest(entry("train/cat/1.png", "one", label="owl"), *BASE[1:])
    (relabel,) = diff_manifests(manifest(*BASE), b).relabelled
    assert relabel.path_a == relabel.path_b == "train/cat/1.png"
    assert (relabel.labels_a, relabel.labels_b) == ("cat", "owl")


def test_move_between_splits_keeps_the_label() -> None:
    b = manifest(*BASE[:3], entry("train/owl/4.png", "four"))
    result = diff_manifests(manifest(*BASE), b)
    (move,) = result.moved
    assert (move.path_a, move.path_b, move.labels) == ("val/owl/4.png", "train/owl/4.png", "owl")
    assert result.relabelled == result.added == result.removed == ()


def test_duplicate_content_prefers_the_same_label() -> None:
    a = manifest(entry("train/cat/x.png", "same"), entry("train/dog/y.png", "same"))
    b = manifest(entry("val/dog/y.png", "same"), entry("val/cat/x.png", "same"))
    result = diff_manifests(a, b)
    assert {(m.path_a, m.path_b) for m in result.moved} == {
        ("train/cat/x.png", "val/cat/x.png"),
        ("train/dog/y.png", "val/dog/y.png"),
    }
    assert result.relabelled == ()


def test_copy_to_another_class_is_an_addition() -> None:
    b = manifest(*BASE, entry("train/dog/1.png", "one"))
    result = diff_manifests(manifest(*BASE), b)
    assert [e.path for e in result.added] == ["train/dog/1.png"]
    assert result.relabelled == ()


def test_label_set_changes() -> None:
    a = manifest(*BASE)
    b = manifest(*BASE[:3], entry("val/eel/4.png", "four"), labels=("cat", "dog", "eel"))
    result = diff_manifests(a, b)
    assert result.labels_added == ("eel",)
    assert result.labels_removed == ("owl",)
    assert result.summary()["labels_added"] == ["eel"]
    assert result.summary()["label_order_changed"] is False
    (relabel,) = result.relabelled
    assert (relabel.labels_a, relabel.labels_b) == ("owl", "eel")
    assert result.counts_b == {"cat": 2, "dog": 1, "eel": 1}


def test_label_order_change_is_reported() -> None:
    result = diff_manifests(manifest(*BASE), manifest(*BASE, labels=("owl", "cat", "dog")))
    assert result.summary()["label_order_changed"] is True
    assert not result.identical


def test_to_dict_is_json_ready() -> None:
    b = manifest(*BASE[1:])
    data = diff_manifests(manifest(*BASE), b).to_dict()
    assert data["summary"]["removed"] == 1
    assert data["removed"][0]["path"] == "train/cat/1.png"


def test_detection_reannotation_is_a_relabel() -> None:
    def det(boxes: tuple[BoxAnnotation, ...]) -> DatasetManifest:
        e = ManifestEntry(
            path="a.png", sha256=sha("a"), size=1, width=9, height=9, annotations=boxes
        )
        return DatasetManifest.create("detection", ["cat", "dog"], [e])

    box = BoxAnnotation(label="cat", bbox=(0, 0, 2, 2))
    result = diff_manifests(det((box,)), det((box, box.model_copy(update={"label": "dog"}))))
    (relabel,) = result.relabelled
    assert (relabel.labels_a, relabel.labels_b) == ("1xcat", "1xcat, 1xdog")
    assert result.counts_b == {"cat": 1, "dog": 1}


def test_kinds_must_match() -> None:
    detection = DatasetManifest.create("detection", LABELS, [])
    with pytest.raises(
        DatasetError, match="cannot compare a classification manifest with a detection"
    ):
        diff_manifests(manifest(*BASE), detection)
