"""Unlabelled calibration folders (discovery, readable images, the held-out split) and the rule
that a variant must agree with FP32 even when its accuracy holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from visionyard.errors import DatasetError
from visionyard.export.images import describe_unreadable, find_images, split_folder
from visionyard.export.reports import Quality
from visionyard.export.variants import VariantOptions, judge


def _folder(root: Path, count: int, broken: int = 0) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (i, 0, 0)).save(sub / f"{i:02d}.png")
    for i in range(broken):
        (root / f"broken{i}.jpg").write_bytes(b"not an image")
    return root


def test_find_images_is_recursive_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", 4)
    (root / "notes.txt").write_text("x")
    (root / ".cache").mkdir()
    Image.new("RGB", (4, 4)).save(root / ".cache" / "hidden.png")
    found = [p.relative_to(root).as_posix() for p in find_images(root)]
    assert found == ["a/01.png", "a/03.png", "b/c/00.png", "b/c/02.png"]


def test_split_holds_out_at_least_half_and_never_mixes(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", 20, broken=2)
    calibration, held = split_folder(root, 100)
    assert (len(calibration), len(held)) == (10, 10)
    assert not set(calibration.paths) & set(held.paths)
    assert (held.held_out, calibration.held_out) == (True, False)
    assert len(held.unreadable) == 2
    assert {p.name for p, _ in held.unreadable} == {"broken0.jpg", "broken1.jpg"}
    assert split_folder(root, 100) == (calibration, held)  # seeded: the same split again
    few, rest = split_folder(root, 3)
    assert (len(few), len(rest)) == (3, 17)
    none, every = split_folder(root, 0)  # no int8: every readable image is compared
    assert (len(none), len(every)) == (0, 20)
    capped = split_folder(root, 3, max_held_out=5)[1]
    assert len(capped) == 5


def test_too_few_readable_images_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="holds 1 readable image"):
        split_folder(_folder(tmp_path / "one", 1, broken=1), 10)
    with pytest.raises(DatasetError, match="no readable image below .*broken0.jpg"):
        split_folder(_folder(tmp_path / "none", 0, broken=1), 10)
    with pytest.raises(DatasetError, match="no images below"):
        split_folder(_folder(tmp_path / "empty", 0), 10)


def test_describe_unreadable_names_the_first_few() -> None:
    items = tuple((Path(f"/d/x{i}.jpg"), "bad") for i in range(5))
    line = describe_unreadable(items, "/d", shown=2)
    assert line == "left out 5 unreadable image(s) of /d: x0.jpg (bad); x1.jpg (bad), and 3 more"


def _quality(delta: float | None, agreement: float) -> Quality:
    return Quality(
        metric="accuracy" if delta is not None else "top1_agreement",
        value=0.9,
        reference=0.9,
        delta_points=delta,
        agreement=agreement,
        max_abs_diff=0.1,
        class_metric="recall" if delta is not None else "agreement",
        per_class=[],
        comparison="labels" if delta is not None else "agreement with fp32",
    )


def test_an_unmoved_accuracy_does_not_excuse_changed_answers() -> None:
    """The issue's case: 30 images, accuracy unchanged, 28 of 30 answers as FP32's."""
    passed, reason = judge(_quality(0.0, 28 / 30), VariantOptions())
    assert not passed
    assert reason == (
        "accuracy +0.00 points: within the bound of -1; agreement with fp32 0.9333 below 0.95"
    )
    assert judge(_quality(0.0, 29 / 30), VariantOptions())[0]


def test_without_labels_only_the_agreement_decides() -> None:
    passed, reason = judge(_quality(None, 0.97), VariantOptions(max_drop_points=0.0))
    assert passed
    assert reason == "no labels, accuracy not measured: agreement with fp32 0.9700 >= 0.95"
    assert not judge(_quality(None, 0.9), VariantOptions())[0]
