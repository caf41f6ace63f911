"""COCO reading: contiguous labels, reference and box validation, malformed files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from visionyard.data import read_coco
from visionyard.data.coco import MAX_SHOWN
from visionyard.errors import DatasetError


def coco_doc() -> dict[str, Any]:
    return {
        "images": [
            {"id": 7, "file_name": "b.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "a.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 9, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 1, "image_id": 3, "category_id": 2, "bbox": [0, 0, 40, 30], "area": 99.0},
        ],
    }


def write(
    folder: Path, doc: dict[str, Any] | str, images: tuple[str, ...] = ("a.png", "b.png")
) -> Path:
    for name in images:
        (folder / name).write_bytes(b"png")
    path = folder / "annotations.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_reads_and_orders_categories_by_id(tmp_path: Path) -> None:
    dataset = read_coco(write(tmp_path, coco_doc()))
    assert dataset.labels == ("cat", "dog")
    assert [(c.id, c.label) for c in dataset.categories] == [(2, 0), (9, 1)]
    assert [i.id for i in dataset.images] == [3, 7]
    assert dataset.images[0].path == tmp_path.resolve() / "a.png"
    assert len(dataset) == 2
    (ann,) = dataset.annotations_for(7)
    assert (ann.label, ann.bbox, ann.area) == (1, (1.0, 2.0, 10.0, 5.0), 50.0)
    assert dataset.annotations_for(3)[0].area == 99.0
    assert dataset.annotations_for(12345) == ()


def test_images_dir_may_differ_from_annotation_folder(tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    ann = write(images, coco_doc())
    moved = tmp_path / "ann.json"
    ann.rename(moved)
    assert read_coco(moved, images).images_dir == images.resolve()
    with pytest.raises(DatasetError, match="a.png not found"):
        read_coco(moved)


def test_annotations_are_optional(tmp_path: Path) -> None:
    doc = coco_doc()
    del doc["annotations"]
    assert read_coco(write(tmp_path, doc)).annotations == ()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["annotations"][0].update(image_id=99), "annotation 2: unknown image_id 99"),
        (
            lambda d: d["annotations"][0].update(category_id=5),
            "annotation 2: unknown category_id 5",
        ),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "negative or zero width/height"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3, 0]), "negative or zero width/height"),
        (
            lambda d: d["annotations"][0].update(bbox=[35, 2, 10, 5]),
            r"lies outside image 7 \(b.png",
        ),
        (lambda d: d["annotations"][0].update(bbox=[-2, 0, 10, 5]), "lies outside image 7"),
        (lambda d: d["annotations"][0].update(bbox=[0, 20, 10, 11]), "lies outside image 7"),
        (lambda d: d["images"][1].update(id=7), "duplicate image id 7"),
        (lambda d: d["images"][1].update(file_name="b.png"), "duplicate image file_name 'b.png'"),
        (lambda d: d["categories"][1].update(id=9), "duplicate category id 9"),
        (lambda d: d["categories"][1].update(name="dog"), "duplicate category name 'dog'"),
        (lambda d: d["annotations"][1].update(id=2), "duplicate annotation id 2"),
        (lambda d: d["images"][0].update(file_name="../x.png"), "must be a relative path"),
        (lambda d: d["images"][0].update(file_name="c.png"), "image 7: file c.png not found"),
    ],
)
def test_invalid_references_and_boxes(tmp_path: Path, edit: Any, message: str) -> None:
    doc = coco_doc()
    edit(doc)
    with pytest.raises(DatasetError, match=message):
        read_coco(write(tmp_path, doc))


def test_box_on_the_border_within_tolerance_is_accepted(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["annotations"][0]["bbox"] = [-0.3, 0, 40.4, 30.2]
    assert read_coco(write(tmp_path, doc)).annotations[1].bbox[0] == -0.3


def test_all_problems_counted_and_first_ones_shown(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["annotations"] = [
        {"id": i, "image_id": 100 + i, "category_id": 2, "bbox": [0, 0, 1, 1]} for i in range(15)
    ]
    with pytest.raises(DatasetError, match=r"15 problem\(s\).*\(and 5 more\)") as info:
        read_coco(write(tmp_path, doc))
    assert str(info.value).count("unknown image_id") == MAX_SHOWN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": [', r"malformed COCO JSON in .*annotations.json: .* at line 1 column 13"),
        ("[]", "malformed COCO JSON .*: the top level must be an object"),
        ('{"images": []}', "malformed COCO JSON .*: categories: Field required"),
        (
            '{"images": [{"id": 1, "file_name": "a.png", "width": 0, "height": 1}], '
            '"categories": []}',
            r"images\.0\.width: Input should be greater than 0",
        ),
        (
            '{"images": [], "categories": [], "annotations": [{"id": 1, "image_id": 1, '
            '"category_id": 1, "bbox": [1, 2, 3]}]}',
            r"annotations\.0\.bbox",
        ),
        ('{"images": [], "categories": [{"id": 1, "name": "a"}]}', "lists no images"),
    ],
)
def test_malformed_json(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_coco(write(tmp_path, text))


def test_no_categories(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["categories"], doc["annotations"] = [], []
    with pytest.raises(DatasetError, match="lists no categories"):
        read_coco(write(tmp_path, doc))


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="annotation file .*missing.json does not exist"):
        read_coco(tmp_path / "missing.json")


def test_missing_images_dir(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match="images directory .*nope for .*annotations.json does not exist"
    ):
        read_coco(write(tmp_path, coco_doc()), tmp_path / "nope")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="cannot read COCO annotation file"):
        read_coco(path)


def test_reads_synthetic_set(synth_detection: Path) -> None:
    dataset = read_coco(synth_detection / "annotations.json", synth_detection / "images")
    assert dataset.labels == ("circle", "square", "triangle", "star")
    assert len(dataset) == 8
    assert all(1 <= len(dataset.annotations_for(i.id)) <= 3 for i in dataset.images)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("position", range(4))
def test_non_finite_bbox_values_are_refused_with_their_place(
    tmp_path: Path, position: int, value: float
) -> None:
    doc = coco_doc()
    bbox = [1.0, 2.0, 10.0, 5.0]
    bbox[position] = value
    doc["annotations"][0]["bbox"] = bbox  # json.dumps writes NaN / Infinity / -Infinity
    with pytest.raises(DatasetError, match=r"annotation 2: bbox \[.*\] has a non-finite value"):
        read_coco(write(tmp_path, doc))


def test_a_non_finite_area_is_refused(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["annotations"][1]["area"] = float("nan")
    with pytest.raises(DatasetError, match="annotation 1: area nan is not a finite number"):
        read_coco(write(tmp_path, doc))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"images": [], "categories": [], "n": ' + "1" * 5000 + "}", "integer"),
    ],
)
def test_every_parse_failure_is_malformed_json(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(
        DatasetError, match=f"malformed COCO JSON in .*annotations.json: .*{message}"
    ):
        read_coco(write(tmp_path, text))


@pytest.mark.parametrize("alias", ["./b.png", "b.png/", ".//b.png"])
def test_a_path_alias_of_another_image_is_a_duplicate(tmp_path: Path, alias: str) -> None:
    doc = coco_doc()
    doc["images"][1]["file_name"] = alias  # image 3 names the same file as image 7
    with pytest.raises(DatasetError) as info:
        read_coco(write(tmp_path, doc))
    assert f"duplicate image file_name 'b.png' (image 7 'b.png', image 3 {alias!r})" in str(
        info.value
    )


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_an_unreadable_annotation_symlink_is_one_line(tmp_path: Path, kind: str) -> None:
    link = tmp_path / "annotations.json"
    link.symlink_to(link if kind == "loop" else tmp_path / "gone.json")
    with pytest.raises(DatasetError, match=r"COCO annotation file .*annotations.json is a "):
        read_coco(link)
