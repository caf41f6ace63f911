"""``visionyard train --mirror wandb`` then register and promote with the mirror on, read back
from what W&B's offline mode wrote; and the mirror's user errors through the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.test_cli_train import TINY, one_error_line
from tests.fixtures.cli import Capture, run, store_flags
from tests.wandb_support import offline_runs
from visionyard.settings import Settings


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B offline, silent, and writing only under ``tmp_path`` (nothing reaches a network)."""
    folder = tmp_path / "wb"
    for name, sub in [
        ("WANDB_DIR", ""),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        monkeypatch.setenv(name, str(folder / sub))  # fmt: skip
    (folder / "config").mkdir(parents=True)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    return folder


@pytest.mark.slow
def test_train_register_promote_are_mirrored_to_wandb(
    capsys: Capture,
    synth_classification: Path,
    tracking_settings: Settings,
    mlflow_client: MlflowClient,
    wandb_offline: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flags = store_flags(tracking_settings)
    code, out, err = run(
        capsys, *flags, "train", "--data", synth_classification, "--epochs", "2",
        "--experiment", tracking_settings.tracking.experiment, "--run-name", "mirrored",
        "--patience", "0", "--no-progress", "--mirror", "wandb", *TINY,
    )  # fmt: skip
    assert code == 0, err
    run_id = out.rsplit("run id: ", 1)[1].strip()
    monkeypatch.setenv("VISIONYARD_TRACKING__MIRROR", "wandb")  # the env-var form this time
    code, _, err = run(capsys, *flags, "register", run_id, "--name", "shapes")
    assert code == 0, err
    code, _, err = run(capsys, *flags, "promote", "shapes", "1", "--to", "production")
    assert code == 0, err

    mlflow_run = mlflow_client.get_run(run_id)
    assert mlflow_run.info.status == "FINISHED"  # MLflow stays the source of truth
    trained, registered, promoted = offline_runs(wandb_offline)
    assert (trained.run_id, trained.job_type, trained.exit_code) == (run_id, "train", 0)
    assert trained.config["width"] == 0.25
    assert trained.config["epochs"] == 2
    assert trained.config["mlflow"]["run_id"] == run_id
    assert trained.config["environment"]["python"]
    val_acc = {m.step: m.value for m in mlflow_client.get_metric_history(run_id, "val_accuracy")}
    mirrored = {h["step"]: h["val_accuracy"] for h in trained.history if "val_accuracy" in h}
    assert mirrored == val_acc
    assert len(mirrored) == 2
    logged = {key for h in trained.history for key in h}
    assert {"samples/train", "reports/confusion_matrix", "confusion_matrix"} <= logged

    dataset = trained.artifact("dataset-train")
    digest = mlflow_run.data.tags["visionyard.dataset.train"]
    assert dataset["metadata"]["digest"] == digest
    assert f"sha256-{digest[:12]}" in dataset["aliases"]
    image = next(iter(sorted(synth_classification.rglob("*.png"))))
    relative = image.relative_to(synth_classification).as_posix()
    assert dataset["files"][f"images/{relative}"] == image.resolve().as_uri()
    assert "manifest.json" in dataset["files"]
    bundle = trained.artifact(f"bundle-{run_id}")
    version = mlflow_client.get_model_version("shapes", "1")
    assert bundle["metadata"]["visionyard.bundle_digest"] == version.tags["vy.bundle_digest"]
    assert {"model.onnx", "contract.json", "manifest.json"} <= set(bundle["files"])

    assert registered.job_type == promoted.job_type == "registry"
    assert "register" in registered.tags
    assert "promote" in promoted.tags
    for wb_run, alias in ((registered, "mlflow-v1"), (promoted, "production")):
        model = wb_run.artifact("shapes")
        assert model["aliases"] == {"latest", alias}
        assert model["files"] == {"bundle": "models:/shapes/1"}
        assert model["metadata"]["bundle_digest"] == version.tags["vy.bundle_digest"]


def test_an_unknown_mirror_is_one_line(capsys: Capture, tmp_path: Path) -> None:
    code, _, err = run(capsys, "--home", tmp_path, "train", "--data", tmp_path, "--mirror", "mlfow")
    assert code == 3
    assert "--mirror: Value error, unknown mirror 'mlfow'; known: wandb" in one_error_line(err)


def test_wandb_not_installed_is_one_line_with_the_extra_and_no_run(
    capsys: Capture,
    synth_classification: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if the extra were not installed
    code, _, err = run(
        capsys, "--home", tmp_path, "train", "--data", synth_classification, "--mirror", "wandb",
        "--epochs", "1", *TINY,
    )  # fmt: skip
    assert code == 11
    assert "pip install 'visionyard[wandb]'" in one_error_line(err)
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was started
