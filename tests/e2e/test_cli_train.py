"""``visionyard train`` through the CLI entry point: a tiny run, and user errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.fixtures.cli import Capture, run, store_flags
from visionyard.bundle.store import load_bundle
from visionyard.errors import TrainingError
from visionyard.settings import Settings

TINY = ["--width", "0.25", "--batch-size", "8", "--input-size", "32", "--seed", "0"]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.slow
def test_train_prints_a_summary_and_the_run_id(
    capsys: Capture,
    synth_classification: Path,
    tracking_settings: Settings,
    mlflow_client: MlflowClient,
) -> None:
    code, out, err = run(
        capsys, *store_flags(tracking_settings), "train", "--data", synth_classification,
        "--epochs", "2", "--experiment", tracking_settings.tracking.experiment,
        "--run-name", "cli-tiny", "--rotate", "5", "--no-vflip", "--patience", "0", *TINY,
    )  # fmt: skip
    assert code == 0, err
    match = re.search(r"^run id: ([0-9a-f]{32})$", out, re.MULTILINE)
    assert match, out
    run_id = match.group(1)
    assert "training run" in out
    assert re.search(r"val accuracy\s+│\s+\d\.\d{4}", out)
    assert re.search(r"best epoch\s+│\s+[12] of 2", out)
    assert "epochs" in err  # progress bars go to stderr
    run_info = mlflow_client.get_run(run_id)
    assert run_info.info.run_name == "cli-tiny"
    assert run_info.info.status == "FINISHED"
    params = run_info.data.params
    assert (params["width"], params["augment.rotate_degrees"], params["patience"]) == (
        "0.25", "5.0", "None",
    )  # fmt: skip
    bundle = load_bundle(tracking_settings.home / "runs" / run_id / "bundle")
    pre = bundle.contract.preprocessing
    assert (pre.input_size.height, pre.input_size.width) == (32, 32)


def test_missing_data_dir_is_one_line(capsys: Capture, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    code, out, err = run(capsys, "--home", tmp_path, "train", "--data", missing, *TINY)
    assert code == 5
    assert "does not exist" in one_error_line(err)
    assert str(missing) in err.replace("\n", "")
    assert not (tmp_path / "mlflow.db").exists()  # no run was started


def test_the_synth_root_is_refused_before_any_run(capsys: Capture, tmp_path: Path) -> None:
    synth = ["--train-per-class", "2", "--val-per-class", "1", "--images", "2", "--size", "32"]
    code, _, err = run(capsys, "data", "synth", tmp_path / "data", *synth)
    assert code == 0, err
    code, _, err = run(capsys, "--home", tmp_path, "train", "--data", tmp_path / "data", *TINY)
    assert code == 5
    line = one_error_line(err)
    assert "classification/ holds split folders (train, val)" in line
    assert f"pass {tmp_path / 'data' / 'classification'}" in line
    assert not (tmp_path / "mlflow.db").exists()  # no run was started


def test_training_into_a_store_that_does_not_exist_says_a_new_one_is_made(
    capsys: Capture, tmp_path: Path, synth_classification: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import visionyard.train

    def stop_before_training(*args: object, **kwargs: object) -> None:
        raise TrainingError("stopped by the test before any training")

    monkeypatch.setattr(visionyard.train, "train", stop_before_training)
    typo = tmp_path / "mlfow.db"
    code, _, err = run(capsys, "--home", tmp_path, "--tracking-uri", f"sqlite:///{typo}",
                       "train", "--data", synth_classification, *TINY)  # fmt: skip
    assert code == 12
    flat = " ".join(err.split())
    assert f"note: there is no tracking store at {typo}: this run creates a NEW, empty one" in flat
    code, _, err = run(capsys, "--home", tmp_path, "train", "--data", synth_classification, *TINY)
    assert code == 12
    assert "NEW" not in err  # the store under the configured home is the default one


def test_unknown_architecture_is_one_line(
    capsys: Capture, tmp_path: Path, synth_classification: Path
) -> None:
    code, _, err = run(
        capsys, "--home", tmp_path, "train", "--data", synth_classification, "--arch", "vgg16"
    )
    assert code == 3
    line = one_error_line(err)
    assert "unknown architecture 'vgg16'" in line
    assert "small_cnn, resnet18, mobilenet_v2" in line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--input-size", "big"], "--input-size must be SIDE or HEIGHTxWIDTH"),
        (["--epochs", "0"], "epochs: Input should be greater than or equal to 1"),
        (["--amp", "fp8"], "amp: Input should be 'none', 'bf16' or 'fp16'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_flags_are_one_line(
    capsys: Capture,
    tmp_path: Path,
    synth_classification: Path,
    flags: list[str],
    message: str,
) -> None:
    code, _, err = run(capsys, "--home", tmp_path, "train", "--data", synth_classification, *flags)
    assert code == 3
    assert message in one_error_line(err)


def test_without_torch_the_command_names_the_extra(
    capsys: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    for name in [m for m in sys.modules if m.startswith("visionyard.train")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _, err = run(capsys, "--home", tmp_path, "train", "--data", tmp_path)
    assert code == 11
    assert "pip install 'visionyard[torch]'" in one_error_line(err)
