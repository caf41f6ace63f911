"""``visionyard export --bundle DIR --data ROOT`` through the CLI."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.cli import store_flags
from tests.fixtures.models import TrainedBundle
from tests.fixtures.runtime import COLOURS, write_colour_bundle
from visionyard.bundle import load_bundle
from visionyard.cli.main import main
from visionyard.registry import Registry
from visionyard.runtime import InferenceSession
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

FAST = ["--calibration-count", "10", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder train/val of the colour classes (noisy 12x12 images) and a dark set."""
    root = tmp_path_factory.mktemp("export-data")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, colour in COLOURS.items():
            (root / "colours" / split / name).mkdir(parents=True)
            for i in range(3):
                noise = rng.normal(0, 30, (12, 12, 3))
                pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / "colours" / split / name / f"{i}.png")
    (root / "dark" / "black").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (12, 12), (20 + i, 20, 20)).save(root / "dark" / "black" / f"{i}.png")
    return root


def _export(bundle: Path, data: Path, *extra: str) -> int:
    args = ["export", "--bundle", str(bundle), "--data", str(data / "colours"), *FAST, *extra]
    return main(args)


def test_export_prints_the_variant_table_and_stores_the_variants(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    assert _export(bundle, data, "--variants", "fp32,int8,fp16") == 0
    captured = capsys.readouterr()
    shown = captured.out
    assert "exporting variants" in captured.err
    assert "9/9" in captured.err  # a bar of the export's stages, ended complete
    for text in ("variants of", "reference", "int8", "fp16", "passed", "accuracy 1.0000", "CPU"):
        assert text in shown
    assert set(load_bundle(bundle).variants) == {"fp32", "int8", "fp16"}


def test_rejected_variant_exits_10_with_one_line_and_is_not_stored(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    dark = ["--calibration-data", str(data / "dark")]
    assert _export(bundle, data, *dark) == 10
    captured = capsys.readouterr()
    assert "rejected" in captured.out
    assert "variant(s) rejected and not stored: int8 (accuracy" in captured.err
    assert "--force" in captured.err
    assert "Traceback" not in captured.err
    assert "int8" not in load_bundle(bundle).variants
    assert _export(bundle, data, *dark, "--force") == 0
    assert "forced" in capsys.readouterr().out
    assert "int8" in load_bundle(bundle).variants


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "--data", "x"], 3, "give NAME VERSION of a registered model, or --bundle"),
        (["export", "m", "1", "--bundle", "b", "--data", "x"], 3, "not both"),
    ],
)
def test_usage_errors_are_one_line(
    args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == code
    assert message in capsys.readouterr().err


def test_missing_dataset_is_a_dataset_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_colour_bundle(tmp_path / "b").path
    assert main(["export", "--bundle", str(bundle), "--data", str(tmp_path / "nope")]) == 5
    assert "Traceback" not in capsys.readouterr().err


def test_export_of_a_registered_version_stores_variants_and_lineage_tags(
    trained_bundle: TrainedBundle,
    synth_classification: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = trained_bundle.settings
    flags = store_flags(settings)
    name = f"export-{uuid.uuid4().hex[:8]}"
    assert main([*flags, "register", trained_bundle.run_id, "--name", name]) == 0
    args = ["export", name, "1", "--data", str(synth_classification), "--variants", "int8"]
    assert main([*flags, *args, *FAST]) == 0
    assert f"variants of {name} version 1" in capsys.readouterr().out
    tags = RegistryClient.from_settings(settings).get_version(name, "1").tags
    assert tags["vy.variants"] == "fp32,int8"
    assert tags["vy.variant.int8"].startswith("passed accuracy ")
    _, bundle = Registry(settings).fetch_bundle(f"{name}/1", tmp_path / "cache")
    assert InferenceSession.open(bundle, variant="int8").variant == "int8"
    assert main([*flags, "models", "show", f"{name}/1"]) == 0
    shown = capsys.readouterr().out
    assert "fp32,int8" in shown
    _assert_export_runs(settings, name, tags, shown)


def _assert_export_runs(settings: Settings, name: str, tags: dict[str, str], shown: str) -> None:
    """Each variant's report is an ``export <variant>`` MLflow run beside the training run."""
    client = RegistryClient.from_settings(settings).client
    training = client.get_run(client.get_model_version(name, "1").run_id)
    for variant in ("fp32", "int8"):
        run_id = tags[f"vy.export_run.{variant}"]
        assert f"{variant}={run_id}" in shown
        run = client.get_run(run_id)
        assert run.info.run_name == f"export {variant}"
        assert run.info.experiment_id == training.info.experiment_id
        assert run.data.tags["visionyard.exported_model"] == name
        assert run.data.tags["visionyard.exported_version"] == "1"
        assert run.data.params["precision"] == variant
        for key in ("accuracy", "agreement", "latency_p50_ms", "file_size_bytes", "passed"):
            assert key in run.data.metrics, key
        assert any(k.startswith("class_delta/") for k in run.data.metrics)
