"""``visionyard export --calibration DIR``: INT8 calibrated on any folder of images (no labels),
compared with FP32's answers when no ``--data`` is given, with labels when it is."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.cli import Capture, run, store_flags
from tests.fixtures.models import TrainedBundle
from tests.fixtures.runtime import COLOURS, write_colour_bundle
from visionyard.bundle import load_bundle
from visionyard.tracking.registry_client import RegistryClient

FAST = ["--calibration-count", "10", "--threads", "1"]


def _noisy(colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    noise = rng.normal(0, 20, (12, 12, 3))
    return Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``flat``: 20 colour images in one folder + a corrupt JPEG + a hidden file; ``nested``:
    the same images at several depths (dated folders, no class names); ``labelled``: an
    ImageFolder tree with a ``val`` split."""
    root = tmp_path_factory.mktemp("calibration")
    rng = np.random.default_rng(0)
    colours = list(COLOURS.values())
    (root / "flat").mkdir()
    for i in range(20):
        image = _noisy(colours[i % len(colours)], rng)
        image.save(root / "flat" / f"{i:02d}.png")
        nested = root / "nested" / "2026" / f"{i % 3:02d}" / ("deep" if i % 2 else "")
        nested.mkdir(parents=True, exist_ok=True)
        image.save(nested / f"{i:02d}.jpg", quality=95)
    (root / "flat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "flat" / ".hidden.png").write_bytes(b"junk")
    for name, colour in COLOURS.items():
        (root / "labelled" / "val" / name).mkdir(parents=True)
        for i in range(2):
            _noisy(colour, rng).save(root / "labelled" / "val" / name / f"{i}.png")
    (root / "one").mkdir()
    _noisy(colours[0], rng).save(root / "one" / "only.png")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "a.png").write_bytes(b"nope")
    return {p.name: p for p in root.iterdir()}


def _report(bundle: Path, name: str = "int8") -> dict[str, object]:
    text = (bundle / "reports" / "variants" / f"{name}.json").read_text()
    body: dict[str, object] = json.loads(text)
    return body


def test_unlabelled_flat_folder_gives_an_agreement_based_int8(
    tmp_path: Path, folders: dict[str, Path], capsys: Capture
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    args = ["export", "--bundle", bundle, "--calibration", folders["flat"], *FAST]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    caption = "compared with: agreement with fp32 (no labels), on 10 images: "
    assert caption in " ".join(out.split())
    assert "(held out from calibration)" in " ".join(out.split())
    assert "top1_agreement" in out
    assert "left out 1 unreadable image(s)" in err
    assert "broken.jpg (not a readable image" in err
    assert "Traceback" not in err
    assert "int8" in load_bundle(bundle).variants
    report = _report(bundle)
    quality, evaluated, calibration = report["quality"], report["eval_set"], report["calibration"]
    assert isinstance(quality, dict)
    assert quality["comparison"] == "agreement with fp32"
    assert quality["delta_points"] is None
    assert quality["metric"] == "top1_agreement"
    assert quality["max_abs_diff"] is not None
    assert isinstance(evaluated, dict)
    assert isinstance(calibration, dict)
    assert "held out from calibration" in str(evaluated["source"])
    assert (calibration["count"], evaluated["count"]) == (10, 10)  # 20 readable: half each
    assert (calibration["unreadable"], evaluated["unreadable"]) == (1, 1)
    assert report["reason"].startswith("no labels, accuracy not measured: agreement with fp32")  # type: ignore[union-attr]
    summary = json.loads((bundle / "reports" / "variants.json").read_text())
    assert summary["int8"]["comparison"] == "agreement with fp32"


def test_nested_folder_with_labels_is_labels_based(
    tmp_path: Path, folders: dict[str, Path], capsys: Capture
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    args = ["export", "--bundle", bundle, "--calibration", folders["nested"], "--data"]
    code, out, err = run(capsys, *args, folders["labelled"], *FAST)
    assert code == 0, err
    assert "compared with: labels, accuracy on 10 images: imagefolder:" in " ".join(out.split())
    report = _report(bundle)
    quality, calibration = report["quality"], report["calibration"]
    assert isinstance(quality, dict)
    assert isinstance(calibration, dict)
    assert quality["comparison"] == "labels"
    assert quality["metric"] == "accuracy"
    assert str(calibration["source"]).startswith("images:")
    assert calibration["count"] == 10  # all from the nested folder, none held out


def test_a_registered_version_calibrated_without_labels(
    trained_bundle: TrainedBundle, synth_classification: Path, tmp_path: Path, capsys: Capture
) -> None:
    images = tmp_path / "unlabelled"
    for i, path in enumerate(sorted(synth_classification.rglob("*.png"))):
        target = images / f"batch{i % 2}" / f"{i:03d}.png"  # class names are lost
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    settings = trained_bundle.settings
    flags = store_flags(settings)
    name = f"calib-{uuid.uuid4().hex[:8]}"
    assert run(capsys, *flags, "register", trained_bundle.run_id, "--name", name)[0] == 0
    args = ["export", name, "1", "--calibration", images, "--variants", "int8", *FAST]
    code, out, err = run(capsys, *flags, *args)
    assert code == 0, err
    assert "agreement with fp32" in " ".join(out.split())
    tags = RegistryClient.from_settings(settings).get_version(name, "1").tags
    assert re.match(r"passed top1_agreement [01]\.\d{4} ", tags["vy.variant.int8"])
    assert tags["vy.variants"] == "fp32,int8"
    assert "vy.profile_digest" in tags  # profiled on the calibration folder: no --data


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ([], 3, "give --data DIR (a labelled dataset"),
        (["--calibration", "{one}"], 5, "holds 1 readable image"),
        (["--calibration", "{corrupt}"], 5, "no readable image below"),
        (["--calibration", "{flat}", "--calibration-data", "{flat}"], 3, "not both"),
        (["--calibration", "{missing}"], 5, "is not a folder of images"),
    ],
)
def test_calibration_mistakes_are_one_line(
    extra: list[str],
    code: int,
    message: str,
    tmp_path: Path,
    folders: dict[str, Path],
    capsys: Capture,
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    places = {k: str(v) for k, v in folders.items()} | {"missing": str(tmp_path / "nope")}
    filled = [e.format(**places) for e in extra]
    got, _, err = run(capsys, "export", "--bundle", bundle, *filled, *FAST)
    assert got == code
    assert message in err
    assert "Traceback" not in err
    assert "int8" not in load_bundle(bundle).variants
