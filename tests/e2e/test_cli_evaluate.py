"""``visionyard evaluate`` end to end through the CLI on SQLite: a registered colour classifier
on a synthetic shapes folder and on a colour folder with known answers, the fixed detector on a
COCO folder, ``--log`` records that ``models show`` lists while the version's files stay as
registered, and every bad input as one clear line with its exit code.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from PIL import Image

from tests.fixtures.cli import run, store_flags
from tests.fixtures.runtime import DETECTOR_BOXES, flat_png, write_colour_bundle
from tests.registry_support import RED_AS_GREEN, colour_dataset, log_colour_run, log_detector_run
from visionyard.data import SHAPES, make_classification_set, read_imagefolder
from visionyard.evaluate import evaluate_classification
from visionyard.registry import Registry
from visionyard.registry.evaluations import EVAL_PREFIX
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

Capture = pytest.CaptureFixture[str]
SHAPE_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255))
#: The colour classifier with red's colour moved to teal: red images are then predicted black.
RED_AS_BLACK = ((0, 128, 128), *RED_AS_GREEN[1:])


class World(NamedTuple):
    settings: Settings
    root: Path
    shapes: Path  # make_classification_set: train/ and val/ folders
    colours: Path  # val/<colour>/{0,1}.png


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> World:
    root = tmp_path_factory.mktemp("evaluate-e2e")
    home = root / ".visionyard"
    home.mkdir()
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "evaluate-e2e"})
    registry = Registry(settings)
    shapes_run = log_colour_run(settings, root, colours=SHAPE_COLOURS, labels=SHAPES)
    registry.register(shapes_run, "shapes")
    registry.register(log_colour_run(settings, root, colours=RED_AS_BLACK), "colours")
    registry.register(log_detector_run(settings, root), "boxes")
    shapes = make_classification_set(root / "shapes", train_per_class=1, val_per_class=6, size=16)
    return World(settings, root, shapes, colour_dataset(root / "colours"))


def cli(world: World, capsys: Capture, *argv: str | Path) -> tuple[int, str, str]:
    return run(capsys, *store_flags(world.settings), *argv)


def evaluate_json(world: World, capsys: Capture, *argv: str | Path) -> dict[str, Any]:
    code, stdout, stderr = cli(world, capsys, "evaluate", *argv, "--json")
    assert code == 0, stderr
    body: dict[str, Any] = json.loads(stdout)
    return body


def one_error(code: int, stderr: str, expected_code: int, *phrases: str) -> None:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, stderr
    assert lines[-1].startswith("error:"), stderr
    text = " ".join(stderr.split())
    for phrase in phrases:
        assert phrase in text, stderr


def test_classification_report_equals_the_library_on_a_synthetic_folder(
    world: World, capsys: Capture, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = cli(world, capsys, "evaluate", "shapes/1", "--data", world.shapes,
                               "--output", out)  # fmt: skip
    assert code == 0, stderr
    session = Registry(world.settings).open_session("shapes/1", tmp_path / "cache")
    samples = read_imagefolder(world.shapes).split("val").samples
    expected = evaluate_classification(session, samples)
    printed = re.search(r"^accuracy (\d\.\d{4})", stdout, re.MULTILINE)
    assert printed is not None, stdout
    assert printed.group(1) == f"{expected.accuracy:.4f}"
    assert "(val)" in stdout
    assert f"({len(samples)} images)" in stdout
    for row in expected.per_class:
        assert re.search(rf"{row.label}\s.*{row.recall:.4f}.*\s{row.support}\s", stdout), stdout
    assert "macro avg" in stdout
    png = out / "confusion_matrix.png"
    with Image.open(io.BytesIO(png.read_bytes())) as image:
        assert image.format == "PNG"
        image.verify()
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"] == expected.accuracy
    assert f"wrote {png}" in stdout


def test_known_answers_as_json_and_the_default_report_folder(world: World, capsys: Capture) -> None:
    body = evaluate_json(world, capsys, "colours/1", "--data", world.colours)
    report = body["report"]
    assert report["accuracy"] == 0.8  # the red images are predicted black
    labels = report["labels"]
    red, black = labels.index("red"), labels.index("black")
    assert report["confusion_matrix"][red][black] == 2
    recalls = {c["label"]: c["recall"] for c in report["per_class"]}
    assert recalls["red"] == 0.0
    assert recalls["blue"] == 1.0
    assert re.fullmatch(r"[0-9a-f]{64}", report["dataset_digest"])
    assert body["split"] == "val"
    assert body["record"] is None
    folder = Path(body["files"][0]).parent
    assert folder.parent == (world.settings.home / "evaluations").resolve()
    assert folder.name.startswith("colours-v1-")


def test_log_records_on_the_version_and_models_show_lists_it(
    world: World, capsys: Capture, tmp_path: Path
) -> None:
    client = RegistryClient.from_settings(world.settings)
    before = client.get_version("colours", "1").tags
    first = evaluate_json(world, capsys, "colours/1", "--data", world.colours, "--log",
                          "--output", tmp_path / "a")  # fmt: skip
    code, stdout, _ = cli(world, capsys, "evaluate", "colours/1", "--data", world.colours,
                          "--split", "val", "--variant", "fp32", "--log", "--output",
                          tmp_path / "b")  # fmt: skip
    assert code == 0
    assert "logged on colours/1: run " in stdout
    record = first["record"]
    assert record["metrics"]["accuracy"] == 0.8
    assert record["variant"] == "fp32"
    assert record["dataset_digest"] == first["report"]["dataset_digest"]
    tags = client.get_version("colours", "1").tags
    assert len([k for k in tags if k.startswith(EVAL_PREFIX)]) == 2
    assert {k: v for k, v in tags.items() if not k.startswith(EVAL_PREFIX)} == before
    run_info = client.client.get_run(record["run_id"])
    assert run_info.info.run_name == "evaluate"
    assert run_info.data.metrics["accuracy"] == 0.8
    listed = client.client.list_artifacts(record["run_id"], "evaluation")
    names = {Path(a.path).name for a in listed}
    assert names == {"report.json", "confusion_matrix.png"}

    code, stdout, stderr = cli(world, capsys, "models", "show", "colours/1")
    assert code == 0, stderr
    assert "evaluations of v1" in stdout
    assert "accuracy 0.8000" in stdout
    assert record["run_id"] in stdout
    assert record["dataset_digest"][:12] in stdout
    code, stdout, _ = cli(world, capsys, "models", "show", "colours/1", "--json")
    shown = json.loads(stdout)["evaluations"]
    assert len(shown) == 2
    assert shown[0]["run_id"] == record["run_id"]
    code, stdout, stderr = cli(world, capsys, "bundle", "verify", "colours/1")
    assert code == 0, stdout + stderr
    assert "failed" not in stdout


def test_detection_map_on_a_coco_folder(world: World, capsys: Capture, tmp_path: Path) -> None:
    coco = coco_folder(tmp_path / "coco")
    code, stdout, stderr = cli(world, capsys, "evaluate", "boxes/1", "--data", coco,
                               "--output", tmp_path / "out")  # fmt: skip
    assert code == 0, stderr
    assert "mAP@[.5:.95] 1.0000  mAP@.5 1.0000  (2 images, 4 objects)" in stdout
    assert re.search(r"cat\s.*1\.0000\s.*1\.0000\s.*2", stdout), stdout
    assert not (tmp_path / "out" / "confusion_matrix.png").exists()
    body = json.loads((tmp_path / "out" / "report.json").read_text())
    assert body["map_50_95"] == 1.0
    assert {c["label"] for c in body["per_class"]} == {"cat", "dog"}
    code, _, stderr = cli(world, capsys, "evaluate", "boxes/1", "--data", world.colours)
    one_error(code, stderr, 5, "is a detection model", "COCO folder")


def test_a_bundle_folder_is_evaluated_but_not_logged(
    world: World, capsys: Capture, tmp_path: Path
) -> None:
    bundle = write_colour_bundle(tmp_path / "my-bundle")
    body = evaluate_json(world, capsys, bundle.path, "--data", world.colours)
    assert body["report"]["accuracy"] == 1.0
    assert body["model"] == str(bundle.path)
    code, _, stderr = cli(world, capsys, "evaluate", bundle.path, "--data", world.colours, "--log")
    one_error(code, stderr, 3, "--log records the evaluation on a registered version")


def test_bad_inputs_are_one_clear_line(world: World, capsys: Capture, tmp_path: Path) -> None:
    def evaluate(*argv: str | Path) -> tuple[int, str]:
        code, _, stderr = cli(world, capsys, "evaluate", *argv)
        return code, stderr

    one_error(*evaluate("colours/1", "--data", tmp_path / "nowhere"), 5, "does not exist")
    (tmp_path / "empty").mkdir()
    one_error(*evaluate("colours/1", "--data", tmp_path / "empty"), 5, "no images found")
    purple = colour_dataset(tmp_path / "purple", per_class=1, labels=("red", "purple"))
    one_error(*evaluate("colours/1", "--data", purple), 5, "not in the model's contract: purple")
    one_error(*evaluate("colours@production", "--data", world.colours), 4, "alias",
              "colours@production")  # fmt: skip
    one_error(*evaluate("nosuch/1", "--data", world.colours), 4, "nosuch")
    one_error(*evaluate("colours/1", "--data", world.colours, "--split", "test"), 5,
              "no 'test' split")  # fmt: skip
    one_error(*evaluate("colours", "--data", world.colours), 4, "give NAME/VERSION, NAME@ALIAS")
    one_error(*evaluate("colours", "--data", world.colours, "--log"), 4, "'colours' not found")
    one_error(*evaluate("colours/1", "--data", world.colours, "--variant", "int8"), 6,
              "no variant 'int8' (it has: fp32)")  # fmt: skip
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    one_error(*evaluate("colours/1", "--data", world.colours, "--output", blocker / "out"), 3,
              "cannot write the report to")  # fmt: skip
    reports = world.settings.home / "evaluations"
    before = sorted(reports.iterdir()) if reports.exists() else []
    broken = colour_dataset(tmp_path / "broken", per_class=1)
    (broken / "val" / "red" / "bad.png").write_bytes(b"not a png at all")
    (broken / "val" / "blue" / "cut.png").write_bytes(flat_png((0, 0, 255))[:40])
    one_error(*evaluate("colours/1", "--data", broken), 5, "2 unreadable image(s)",
              "val/red/bad.png", "val/blue/cut.png")  # fmt: skip
    assert (sorted(reports.iterdir()) if reports.exists() else []) == before  # no empty folder


def coco_folder(root: Path) -> Path:
    """Two 64x64 images, each holding the fixed detector's two boxes exactly."""
    (root / "images").mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id in (1, 2):
        Image.new("RGB", (64, 64), (90, 90, 90)).save(root / "images" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 64, "height": 64})
        for category, (box, _) in enumerate(DETECTOR_BOXES, start=1):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})  # fmt: skip
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    body = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(body), encoding="utf-8")
    return root
