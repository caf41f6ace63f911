"""``visionyard data``: synth, manifest and diff through the CLI entry point."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.cli import Capture, run
from tests.fixtures.datasets import exif_coco_set
from visionyard.data import DatasetManifest

SMALL = ["--train-per-class", "2", "--val-per-class", "1", "--images", "3", "--size", "32"]


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


def digest_of(stdout: str) -> str:
    match = re.search(r"digest: sha256:([0-9a-f]{64})", stdout)
    assert match, stdout
    return match.group(1)


def test_synth_both(tmp_path: Path, capsys: Capture) -> None:
    code, out, err = run(capsys, "data", "synth", tmp_path / "out", *SMALL)
    assert code == 0, err
    assert re.search(r"classification\s+│.*│\s+12\s+│", out)
    assert re.search(r"detection\s+│.*│\s+3\s+│", out)
    assert len(list((tmp_path / "out/classification/train/star").iterdir())) == 2
    assert len(list((tmp_path / "out/detection/images").iterdir())) == 3
    assert "classification images" in err  # progress bar on stderr
    flat = " ".join(out.split())
    assert f"visionyard train --data {tmp_path / 'out' / 'classification'}" in flat
    assert f"visionyard data manifest {tmp_path / 'out' / 'detection'}" in flat


def test_the_synth_root_is_refused_naming_the_dataset_to_use(
    tmp_path: Path, capsys: Capture
) -> None:
    code, _, err = run(capsys, "data", "synth", tmp_path / "out", *SMALL)
    assert code == 0, err
    code, _, err = run(capsys, "data", "manifest", tmp_path / "out")
    assert code == 5
    (line,) = error_lines(err)
    assert f"pass {tmp_path / 'out' / 'classification'}" in line


@pytest.mark.parametrize("kind", ["classification", "detection"])
def test_synth_one_kind_writes_into_the_directory(
    tmp_path: Path, capsys: Capture, kind: str
) -> None:
    code, _, err = run(capsys, "data", "synth", tmp_path, "--kind", kind, *SMALL)
    assert code == 0, err
    marker = "train" if kind == "classification" else "annotations.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [marker, "val" if marker == "train" else "images"]
    )


def test_synth_same_seed_same_digest(tmp_path: Path, capsys: Capture) -> None:
    digests: dict[str, list[str]] = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, _, err = run(capsys, "data", "synth", tmp_path / name, "--seed", seed, *SMALL)
        assert code == 0, err
        for kind in ("classification", "detection"):
            code, out, err = run(capsys, "data", "manifest", tmp_path / name / kind)
            assert code == 0, err
            digests.setdefault(name, []).append(digest_of(out))
    assert digests["a"] == digests["b"]
    assert digests["a"][0] != digests["c"][0]
    assert digests["a"][1] != digests["c"][1]


def test_manifest_table_digest_and_file(
    synth_classification: Path,
    synth_classification_manifest: DatasetManifest,
    tmp_path: Path,
    capsys: Capture,
) -> None:
    target = tmp_path / "m.json"
    code, out, err = run(capsys, "data", "manifest", synth_classification, "-o", target)
    assert code == 0, err
    assert re.search(r"label\s+┃\s+train\s+┃\s+val\s+┃\s+total", out)
    for label in ("circle", "square", "star", "triangle"):
        assert re.search(rf"{label}\s+│\s+6\s+│\s+3\s+│\s+9\s+│", out)
    assert f"classification dataset {synth_classification}: 36 images, 4 labels" in out
    assert f"manifest written to {target}" in out
    assert digest_of(out) == synth_classification_manifest.digest
    assert DatasetManifest.load(target).digest == synth_classification_manifest.digest
    assert "verifying images" in err


def test_manifest_of_coco_dataset(synth_detection: Path, capsys: Capture) -> None:
    code, out, err = run(capsys, "data", "manifest", synth_detection)
    assert code == 0, err
    assert re.search(r"label\s+┃\s+images\s+┃\s+boxes", out)
    auto = digest_of(out)
    ann = synth_detection / "annotations.json"
    code, out, err = run(capsys, "data", "manifest", synth_detection / "images", "--coco", ann)
    assert code == 0, err
    assert digest_of(out) == auto
    boxes = len(json.loads(ann.read_text())["annotations"])
    counts = [int(n) for n in re.findall(r"│\s+\d+\s+│\s+(\d+)\s+│", out)]
    assert sum(counts) == boxes


def edit_dataset(root: Path) -> None:
    """Add one image, remove one, modify one, relabel one (move to another class folder)."""
    Image.new("RGB", (64, 64), (200, 10, 10)).save(root / "train/circle/new.png")
    (root / "val/square/square_00002.png").unlink()
    shutil.copy(
        root / "train/triangle/triangle_00005.png", root / "train/triangle/triangle_00000.png"
    )
    shutil.move(root / "train/star/star_00001.png", root / "train/square/star_00001.png")


def test_diff_reports_every_kind_of_change(
    synth_classification: Path, classification_copy: Path, tmp_path: Path, capsys: Capture
) -> None:
    before = tmp_path / "before.json"
    assert run(capsys, "data", "manifest", synth_classification, "-o", before)[0] == 0
    edit_dataset(classification_copy)
    code, out, err = run(capsys, "data", "diff", before, classification_copy, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    summary = data["summary"]
    assert (summary["images_a"], summary["images_b"], summary["identical"]) == (36, 36, False)
    assert [e["path"] for e in data["added"]] == ["train/circle/new.png"]
    assert [e["path"] for e in data["removed"]] == ["val/square/square_00002.png"]
    assert [c["path"] for c in data["changed"]] == ["train/triangle/triangle_00000.png"]
    (relabel,) = data["relabelled"]
    assert (relabel["path_a"], relabel["path_b"]) == (
        "train/star/star_00001.png",
        "train/square/star_00001.png",
    )
    assert (relabel["labels_a"], relabel["labels_b"]) == ("star", "square")
    assert data["counts_b"] == {"circle": 10, "square": 9, "star": 8, "triangle": 9}


def test_diff_tables(
    synth_classification: Path, classification_copy: Path, capsys: Capture
) -> None:
    edit_dataset(classification_copy)
    code, out, err = run(capsys, "data", "diff", synth_classification, classification_copy)
    assert code == 0, err
    for title in ("added: 1", "removed: 1", "changed: 1", "relabelled: 1", "images per label"):
        assert title in out
    assert not re.search(r"(?m)^\s*moved:", out)
    assert re.search(r"star\s+│\s+9\s+│\s+8\s+│\s+-1", out)
    assert re.search(
        r"train/star/star_00001.png\s+│\s+train/square/star_00001.png\s+│\s+star\s+│\s+square", out
    )


def test_diff_limit_and_identical(
    synth_classification: Path, classification_copy: Path, capsys: Capture
) -> None:
    code, out, _ = run(capsys, "data", "diff", synth_classification, classification_copy)
    assert code == 0
    assert "identical datasets" in out
    shutil.rmtree(classification_copy / "val")
    code, out, _ = run(
        capsys, "data", "diff", synth_classification, classification_copy, "--limit", "5"
    )
    assert code == 0
    assert "removed: 12 (first 5)" in out
    assert out.count("val/") == 5


def corrupt(root: Path) -> list[str]:
    good = (root / "train/circle/circle_00000.png").read_bytes()
    (root / "train/circle/garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "val/star/cut.png").write_bytes(good[: len(good) // 3])
    (root / "train/square/zero.png").write_bytes(b"")
    return ["train/circle/garbage.png", "val/star/cut.png", "train/square/zero.png"]


@pytest.mark.parametrize("command", ["manifest", "diff"])
def test_every_unreadable_image_is_reported(
    synth_classification: Path, classification_copy: Path, capsys: Capture, command: str
) -> None:
    paths = corrupt(classification_copy)
    extra = [synth_classification] if command == "diff" else []
    code, out, err = run(capsys, "data", command, *extra, classification_copy)
    assert code == 5
    (line,) = error_lines(err)
    assert "3 unreadable image(s)" in line
    for path in paths:
        assert path in line
    assert "empty (0 bytes)" in line
    assert "digest" not in out


def test_malformed_coco_json(detection_copy: Path, capsys: Capture) -> None:
    (detection_copy / "annotations.json").write_text('{"images": [}')
    code, _, err = run(capsys, "data", "manifest", detection_copy)
    assert code == 5
    (line,) = error_lines(err)
    assert "malformed COCO JSON" in line
    assert "line 1 column 13" in line


def test_coco_reference_errors(detection_copy: Path, capsys: Capture) -> None:
    ann = detection_copy / "annotations.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["category_id"] = 42
    ann.write_text(json.dumps(doc))
    code, _, err = run(capsys, "data", "manifest", detection_copy / "images", "--coco", ann)
    assert code == 5
    (line,) = error_lines(err)
    assert "unknown category_id 42" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "manifest", "{tmp}/missing"], "does not exist"),
        (["data", "manifest", "{tmp}", "--coco", "{tmp}/none.json"], "none.json does not exist"),
        (["data", "diff", "{tmp}/missing", "{tmp}"], "neither a dataset directory nor a manifest"),
        (["data", "manifest", "{tmp}"], "no images found"),
    ],
)
def test_bad_paths(tmp_path: Path, capsys: Capture, argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert code == 5
    (line,) = error_lines(err)
    assert message in line


def test_diff_refuses_a_broken_manifest(
    synth_classification: Path, tmp_path: Path, capsys: Capture
) -> None:
    (tmp_path / "m.json").write_text("{not json")
    code, _, err = run(capsys, "data", "diff", tmp_path / "m.json", synth_classification)
    assert code == 5
    assert "invalid manifest" in error_lines(err)[0]


def test_synth_refuses_a_non_empty_directory(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "keep.txt").write_text("x")
    code, _, err = run(capsys, "data", "synth", tmp_path, "--kind", "classification", *SMALL)
    assert code == 5
    assert "is not empty" in error_lines(err)[0]


def test_synth_rejects_bad_options(tmp_path: Path, capsys: Capture) -> None:
    code, _, err = run(capsys, "data", "synth", tmp_path, "--kind", "segmentation")
    assert code == 2
    assert "segmentation" in err
    assert not any(tmp_path.iterdir())


def _deep(path: Path) -> None:
    path.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _nan_width(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"][2] = float("nan")
    path.write_text(json.dumps(doc))


def _alias(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["images"][1]["file_name"] = "./" + doc["images"][0]["file_name"]
    path.write_text(json.dumps(doc))


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path)


def _dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "gone.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_deep, "malformed COCO JSON in .*annotations.json: arrays or objects nested too deeply"),
        (_nan_width, r"annotation 1: bbox \[\d+\.\d+, \d+\.\d+, nan, \d+\.\d+\] has a non-finite"),
        (_alias, r"duplicate image file_name '00000.png' \(image 1 '00000.png', image 2 './00000"),
        (_loop, "COCO annotation file .*annotations.json is a symlink loop"),
        (_dangling, "COCO annotation file .*annotations.json is a dangling symlink"),
    ],
)
def test_bad_coco_files_are_one_line(
    detection_copy: Path, capsys: Capture, edit: Any, message: str
) -> None:
    edit(detection_copy / "annotations.json")
    code, out, err = run(capsys, "data", "manifest", detection_copy)
    assert code == 5, out
    (line,) = error_lines(err)
    assert re.search(message, line), line


@pytest.mark.parametrize("declared", ["displayed", "stored"])
def test_coco_sizes_are_checked_after_the_exif_turn(
    tmp_path: Path, capsys: Capture, declared: str
) -> None:
    data = exif_coco_set(tmp_path / "coco", declared=declared)
    code, out, err = run(capsys, "data", "manifest", data)
    if declared == "displayed":
        assert code == 0, err
        digest_of(out)
        return
    assert code == 5
    (line,) = error_lines(err)
    assert "00001.jpg is declared 32x48, its stored size, but shows as 48x32 after EXIF" in line
    assert line.endswith("annotations and width/height must be in displayed (EXIF-applied) pixels")
