"""ImageFolder reading: layouts, class order, file filtering and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionyard.data import read_imagefolder
from visionyard.errors import DatasetError


def touch(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_flat_layout_sorted_classes_and_samples(tmp_path: Path) -> None:
    touch(tmp_path, "zebra/b.png", "zebra/a.jpg", "ant/c.jpeg", "mole/d.webp")
    dataset = read_imagefolder(tmp_path)
    assert dataset.classes == ("ant", "mole", "zebra")
    assert [s.relpath for s in dataset] == [
        "ant/c.jpeg",
        "mole/d.webp",
        "zebra/a.jpg",
        "zebra/b.png",
    ]
    assert [s.label for s in dataset] == [0, 1, 2, 2]
    assert {s.split for s in dataset} == {None}
    assert dataset.splits == ()
    assert dataset.samples[0].path == tmp_path.resolve() / "ant" / "c.jpeg"
    assert dataset.samples[0].path.is_absolute()


def test_split_layout_unions_classes_across_splits(tmp_path: Path) -> None:
    touch(tmp_path, "train/cat/1.png", "train/dog/2.png", "val/cat/3.png", "test/owl/4.png")
    dataset = read_imagefolder(tmp_path)
    assert dataset.classes == ("cat", "dog", "owl")
    assert dataset.splits == ("train", "val", "test")
    val = dataset.split("val")
    assert [s.relpath for s in val] == ["val/cat/3.png"]
    assert val.classes == dataset.classes
    assert dataset.split("test").samples[0].label == 2
    assert dataset.counts() == {("train", "cat"): 1, ("train", "dog"): 1, ("val", "cat"): 1,
                                ("test", "owl"): 1}  # fmt: skip


def test_extensions_case_insensitive_and_others_ignored(tmp_path: Path) -> None:
    names = ["a.JPG", "b.Png", "c.bmp", "d.gif", "e.tif", "f.TIFF", "g.txt", "h.json", "i"]
    touch(tmp_path, *(f"cls/{n}" for n in names))
    dataset = read_imagefolder(tmp_path)
    assert sorted(s.path.name for s in dataset) == ["a.JPG", "b.Png", "c.bmp", "d.gif", "e.tif",
                                                     "f.TIFF"]  # fmt: skip


def test_hidden_files_and_folders_ignored(tmp_path: Path) -> None:
    touch(
        tmp_path, "cls/ok.png", "cls/.hidden.png", "cls/.cache/x.png", ".git/y.png", "cls/sub/n.png"
    )
    dataset = read_imagefolder(tmp_path)
    assert dataset.classes == ("cls",)
    assert [s.relpath for s in dataset] == ["cls/ok.png", "cls/sub/n.png"]


def test_relative_paths_are_posix(tmp_path: Path) -> None:
    touch(tmp_path, "train/a/deep/er/x.png")
    assert read_imagefolder(str(tmp_path)).samples[0].relpath == "train/a/deep/er/x.png"


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_imagefolder(tmp_path / "nope")


def test_a_file_is_not_a_dataset(tmp_path: Path) -> None:
    touch(tmp_path, "f.png")
    with pytest.raises(DatasetError, match="not a directory"):
        read_imagefolder(tmp_path / "f.png")


@pytest.mark.parametrize("files", [[], ["cls/readme.txt"], ["train/cls/notes.md"]])
def test_no_images(tmp_path: Path, files: list[str]) -> None:
    touch(tmp_path, *files)
    with pytest.raises(DatasetError, match="no images found"):
        read_imagefolder(tmp_path)


def test_loose_images_without_class_folder(tmp_path: Path) -> None:
    touch(tmp_path, "cls/a.png", "stray.png")
    with pytest.raises(DatasetError, match=r"1 image\(s\) directly in .* \(stray.png\)"):
        read_imagefolder(tmp_path)


def test_loose_images_in_split_folder(tmp_path: Path) -> None:
    touch(tmp_path, "train/cls/a.png", "train/stray.png")
    with pytest.raises(DatasetError, match="stray.png"):
        read_imagefolder(tmp_path)


def test_mixed_split_and_class_folders(tmp_path: Path) -> None:
    touch(tmp_path, "train/cat/a.png", "dog/b.png")
    with pytest.raises(DatasetError, match=r"mixes split folders \(train\) with class folders"):
        read_imagefolder(tmp_path)


def test_unknown_split(tmp_path: Path) -> None:
    touch(tmp_path, "train/cat/a.png")
    with pytest.raises(DatasetError, match=r"no 'val' split \(splits: train\)"):
        read_imagefolder(tmp_path).split("val")


def test_reads_synthetic_set(synth_classification: Path) -> None:
    dataset = read_imagefolder(synth_classification)
    assert dataset.classes == ("circle", "square", "star", "triangle")
    assert len(dataset.split("train")) == 4 * 6
    assert len(dataset.split("val")) == 4 * 3


@pytest.mark.parametrize(
    ("files", "inner", "why"),
    [
        (["classification/train/circle/a.png", "classification/val/circle/b.png",
          "detection/images/c.png", "detection/annotations.json"], "classification",
         "split folders (train, val)"),
        (["coco/images/c.png", "coco/annotations.json", "other/d.png"], "coco",
         "a COCO annotations.json"),
    ],
)  # fmt: skip
def test_a_folder_of_datasets_is_refused_naming_the_one_to_use(
    tmp_path: Path, files: list[str], inner: str, why: str
) -> None:
    touch(tmp_path, *files)
    with pytest.raises(DatasetError) as caught:
        read_imagefolder(tmp_path)
    message = str(caught.value)
    assert f"{inner}/ holds {why}" in message
    assert f"pass {tmp_path.resolve() / inner}" in message


def test_a_coco_folder_read_as_classes_points_to_detection(tmp_path: Path) -> None:
    touch(tmp_path, "images/a.png", "images/b.png", "annotations.json")
    with pytest.raises(DatasetError) as caught:
        read_imagefolder(tmp_path)  # `visionyard train --data DIR` without --task detection
    message = str(caught.value)
    assert "is a COCO detection dataset (annotations.json)" in message
    assert "--task detection" in message


def test_class_folders_may_still_hold_plain_subfolders(tmp_path: Path) -> None:
    touch(tmp_path, "cat/indoor/a.png", "cat/outdoor/b.png", "dog/c.png")
    assert read_imagefolder(tmp_path).classes == ("cat", "dog")
