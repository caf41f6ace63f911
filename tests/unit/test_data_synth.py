"""Synthetic data: layout, byte-for-byte determinism, tight COCO boxes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionyard.data import SHAPES, make_classification_set, make_detection_set, read_coco
from visionyard.data.synth import Shape, _mask
from visionyard.errors import DatasetError


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_classification_layout(synth_classification: Path) -> None:
    for split, count in (("train", 6), ("val", 3)):
        for shape in SHAPES:
            names = sorted(p.name for p in (synth_classification / split / shape).iterdir())
            assert names == [f"{shape}_{i:05d}.png" for i in range(count)]
    with Image.open(synth_classification / "val/star/star_00002.png") as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (64, 64))


def test_classification_is_deterministic_by_seed(tmp_path: Path) -> None:
    args = {"train_per_class": 2, "val_per_class": 1, "size": 32}
    a = files(make_classification_set(tmp_path / "a", seed=5, **args))
    b = files(make_classification_set(tmp_path / "b", seed=5, **args))
    c = files(make_classification_set(tmp_path / "c", seed=6, **args))
    assert len(a) == 12
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a)


def test_images_vary_within_a_class(synth_classification: Path) -> None:
    arrays = [
        np.asarray(Image.open(p)) for p in sorted((synth_classification / "train/square").iterdir())
    ]
    means = {tuple(a.reshape(-1, 3).mean(axis=0).round()) for a in arrays}
    assert len(means) == len(arrays)


def test_detection_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = make_detection_set(tmp_path / "a", seed=1, n_images=3, size=48, max_objects=2)
    b = make_detection_set(tmp_path / "b", seed=1, n_images=3, size=48, max_objects=2)
    c = make_detection_set(tmp_path / "c", seed=2, n_images=3, size=48, max_objects=2)
    assert files(a) == files(b)
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    assert files(a) != files(c)


def test_detection_coco_file(synth_detection: Path) -> None:
    doc = json.loads((synth_detection / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(SHAPES)
    assert [i["file_name"] for i in doc["images"]] == [f"{i:05d}.png" for i in range(8)]
    per_image = [sum(a["image_id"] == i["id"] for a in doc["annotations"]) for i in doc["images"]]
    assert all(1 <= n <= 3 for n in per_image)
    assert max(per_image) > 1
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    read_coco(synth_detection / "annotations.json", synth_detection / "images")


def test_detection_boxes_are_tight(synth_detection: Path) -> None:
    doc = json.loads((synth_detection / "annotations.json").read_text())
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        assert min(x, y) >= 0
        assert max(x + w, y + h) <= 64
        assert 0 < ann["area"] <= w * h


@pytest.mark.parametrize("kind", SHAPES)
def test_box_matches_drawn_pixels(kind: str) -> None:
    shape = Shape(kind, cx=30.3, cy=25.7, r=12.4, theta=0.7)
    alpha = _mask(shape, 64)
    ys, xs = np.nonzero(alpha > 0.5)
    x, y, w, h = shape.bbox()
    drawn = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # edges of half-covered pixels
    assert np.allclose(drawn, (x, y, x + w, y + h), atol=1.0), (drawn, (x, y, w, h))
    assert abs(float(alpha.sum()) - shape.area()) <= 0.05 * shape.area()


def test_shapes_have_distinct_geometry() -> None:
    corners = {kind: len(Shape(kind, 0, 0, 1, 0).vertices()) for kind in SHAPES}
    assert corners == {"circle": 64, "square": 4, "triangle": 3, "star": 10}
    assert Shape("square", 0, 0, 1, 0).area() == pytest.approx(2.0)
    assert Shape("circle", 0, 0, 1, 0).area() == pytest.approx(math.pi * 0.81, rel=0.01)


def test_refuses_a_non_empty_output_directory(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="is not empty"):
        make_classification_set(tmp_path, seed=0, train_per_class=1, val_per_class=1)
    with pytest.raises(DatasetError, match="is not empty"):
        make_detection_set(tmp_path, seed=0, n_images=1)
    assert (tmp_path / "x.txt").read_text() == "keep me"


def test_progress_is_reported(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    make_detection_set(
        tmp_path / "d", n_images=3, size=32, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_max_objects_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="max_objects must be at least 1"):
        make_detection_set(tmp_path / "d", n_images=1, max_objects=0)


def test_size_must_be_large_enough(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="image size must be at least 16 pixels, got 8"):
        make_classification_set(tmp_path / "c", size=8)
    with pytest.raises(DatasetError, match="at least 16 pixels"):
        make_detection_set(tmp_path / "d", size=15)
    assert not any(tmp_path.iterdir())
