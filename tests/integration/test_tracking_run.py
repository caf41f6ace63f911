"""Everything a run writes, read back with a plain MlflowClient (SQLite or PostgreSQL server)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from PIL import Image

from visionyard.errors import NotFoundError, TrackingError
from visionyard.settings import Settings
from visionyard.tracking import (
    download_artifacts,
    get_run_info,
    list_runs,
    metric_history,
    start_run,
)

DIGEST = hashlib.sha256(b"pets").hexdigest()
MANIFEST = {
    "format_version": 1,
    "kind": "classification",
    "labels": ["cat", "dog"],
    "entries": [{"path": "a.png", "sha256": "1", "split": "train", "labels": ["cat"]}],
    "digest": DIGEST,
}


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"\x08\x07fake-onnx")
    (bundle / "contract.json").write_text(json.dumps({"task": "classification"}))
    (bundle / "manifest.json").write_text(json.dumps({"files": {"model.onnx": "abc"}}))
    return bundle


def artifact_text(client: MlflowClient, run_id: str, path: str, dst: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text()


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, folder)}


def test_everything_logged_is_read_back(
    tracking_settings: Settings, mlflow_client: MlflowClient, tmp_path: Path, bundle_dir: Path
) -> None:
    figure = tmp_path / "loss.png"
    Image.new("RGB", (8, 8), "red").save(figure)
    with start_run(
        settings=tracking_settings,
        run_name="resnet-a",
        tags={"team": "vision"},
        seed=42,
        description="baseline",
    ) as run:
        run.log_params({"lr": 0.1, "epochs": 3, "layers": [64, 128]})
        for step in range(300):
            run.log_metrics(step, {"loss": 1.0 / (step + 1), "acc": step / 300})
        run.log_metric("val_acc", 0.9, step=299)
        run.set_tags({"stage": "dev"})
        run.log_dict({"confusion": [[1, 0], [0, 1]]}, "reports/confusion.json")
        run.log_figure_png(figure)
        run.log_dataset(MANIFEST, name="pets-train")
        run.log_contract({"task": "classification", "labels": ["cat", "dog"]})
        bundle_uri = run.log_bundle(bundle_dir)
    got = mlflow_client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "resnet-a"
    assert got.info.experiment_id == run.experiment_id
    assert (
        mlflow_client.get_experiment(run.experiment_id).name
        == tracking_settings.tracking.experiment
    )
    assert got.data.params == {"lr": "0.1", "epochs": "3", "layers": "[64, 128]"}
    loss = mlflow_client.get_metric_history(run.run_id, "loss")
    assert sorted((m.step, m.value) for m in loss) == [(s, 1.0 / (s + 1)) for s in range(300)]
    assert len(mlflow_client.get_metric_history(run.run_id, "acc")) == 300
    assert got.data.metrics["val_acc"] == 0.9
    tags = got.data.tags
    assert tags["team"] == "vision"
    assert tags["stage"] == "dev"
    assert tags["mlflow.note.content"] == "baseline"
    assert tags["visionyard.seed"] == "42"
    assert tags["visionyard.pkg.mlflow"]
    assert tags["visionyard.python"]
    assert tags["visionyard.dataset.pets-train"] == DIGEST
    assert len(tags["visionyard.contract_digest"]) == 64
    assert bundle_uri == f"runs:/{run.run_id}/bundle"
    check_dataset_input(got, "pets-train")
    check_artifacts(mlflow_client, run.run_id, tmp_path / "dl")


def check_dataset_input(got: Any, name: str) -> None:
    (dataset_input,) = got.inputs.dataset_inputs
    assert dataset_input.dataset.name == name
    assert dataset_input.dataset.digest == DIGEST[:36]
    input_tags = {t.key: t.value for t in dataset_input.tags}
    assert input_tags == {"mlflow.data.context": "training", "visionyard.digest": DIGEST}
    assert json.loads(dataset_input.dataset.profile)["num_images"] == 1


def check_artifacts(client: MlflowClient, run_id: str, dst: Path) -> None:
    top = artifact_paths(client, run_id)
    assert {"environment.json", "reports", "figures", "datasets", "contract", "bundle"} <= top
    assert artifact_paths(client, run_id, "bundle") == {
        "bundle/model.onnx",
        "bundle/contract.json",
        "bundle/manifest.json",
    }
    assert artifact_paths(client, run_id, "figures") == {"figures/loss.png"}
    env = json.loads(artifact_text(client, run_id, "environment.json", dst))
    assert env["seed"] == 42
    assert env["packages"]["mlflow"]
    manifest = json.loads(artifact_text(client, run_id, "datasets/pets-train/manifest.json", dst))
    assert manifest == MANIFEST
    contract = json.loads(artifact_text(client, run_id, "contract/contract.json", dst))
    assert contract["labels"] == ["cat", "dog"]


def test_metrics_reach_the_store_in_batches(
    tracking_settings: Settings, mlflow_client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tracking_settings.model_copy(
        update={"tracking": tracking_settings.tracking.model_copy(update={"flush_points": 500})}
    )
    with start_run(settings=settings) as run:
        calls: list[int] = []
        real = run._client.log_batch

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(len(kwargs.get("metrics") or ()))
            return real(*args, **kwargs)

        monkeypatch.setattr(run._client, "log_batch", counting)
        for step in range(1200):
            run.log_metrics(step, {"loss": float(step)})
    assert sum(calls) == 1200
    assert max(calls) <= 500
    assert len(calls) <= 6  # a handful of log_batch calls, not 1,200
    assert len(mlflow_client.get_metric_history(run.run_id, "loss")) == 1200


def test_metrics_are_written_on_the_interval_while_the_run_is_open(
    tracking_settings: Settings, mlflow_client: MlflowClient
) -> None:
    tracking = tracking_settings.tracking.model_copy(update={"flush_interval_s": 0.3})
    settings = tracking_settings.model_copy(update={"tracking": tracking})
    with start_run(settings=settings) as run:
        run.log_metrics(0, {"loss": 2.0})
        run.log_metrics(1, {"loss": 1.0})
        deadline = time.monotonic() + 15
        history: list[Any] = []
        while len(history) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            history = mlflow_client.get_metric_history(run.run_id, "loss")
        assert sorted(m.step for m in history) == [0, 1]
        assert mlflow_client.get_run(run.run_id).info.status == "RUNNING"


def test_failing_block_ends_failed_with_every_metric(
    tracking_settings: Settings, mlflow_client: MlflowClient
) -> None:
    started: list[str] = []

    def train() -> None:
        with start_run(settings=tracking_settings) as run:
            started.append(run.run_id)
            for step in range(10):
                run.log_metrics(step, {"loss": 10.0 - step})
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        train()
    assert mlflow_client.get_run(started[0]).info.status == "FAILED"
    assert len(mlflow_client.get_metric_history(started[0], "loss")) == 10


def test_query_helpers(tracking_settings: Settings, bundle_dir: Path, tmp_path: Path) -> None:
    with start_run(settings=tracking_settings, run_name="q") as run:
        run.log_params({"lr": 0.01})
        run.log_metrics(0, {"acc": 0.5})
        run.log_metrics(1, {"acc": 0.75})
        run.log_dataset(MANIFEST, name="train", context="training")
        run.log_bundle(bundle_dir)
    info = get_run_info(run.run_id, settings=tracking_settings)
    assert (info.name, info.status, info.params) == ("q", "FINISHED", {"lr": "0.01"})
    assert info.metrics == {"acc": 0.75}
    assert info.datasets[0].full_digest == DIGEST
    assert info.start_time is not None
    assert info.end_time is not None
    assert metric_history(run.run_id, "acc", settings=tracking_settings) == [(0, 0.5), (1, 0.75)]
    listed = list_runs(tracking_settings.tracking.experiment, settings=tracking_settings)
    assert [r.run_id for r in listed] == [run.run_id]
    local = download_artifacts(run.run_id, "bundle", tmp_path / "dl", settings=tracking_settings)
    assert (local / "model.onnx").read_bytes() == (bundle_dir / "model.onnx").read_bytes()


def test_unknown_run_and_experiment_are_not_found(tracking_settings: Settings) -> None:
    with pytest.raises(NotFoundError, match="run 'f00'"):
        get_run_info("f00", settings=tracking_settings)
    with pytest.raises(NotFoundError, match="experiment"):
        list_runs("no-such-experiment-here", settings=tracking_settings)


def test_changing_a_param_is_a_tracking_error(tracking_settings: Settings) -> None:
    with start_run(settings=tracking_settings) as run:
        run.log_params({"lr": 0.1})
        with pytest.raises(TrackingError, match="cannot log parameters"):
            run.log_params({"lr": 0.2})


def test_runs_of_one_experiment_share_it(tracking_settings: Settings) -> None:
    with start_run(
        "shared-" + tracking_settings.tracking.experiment, settings=tracking_settings
    ) as a:
        pass
    with start_run(
        "shared-" + tracking_settings.tracking.experiment, settings=tracking_settings
    ) as b:
        pass
    assert a.experiment_id == b.experiment_id
    assert a.run_id != b.run_id


def test_real_manifest_and_contract_objects(
    tracking_settings: Settings, mlflow_client: MlflowClient, tmp_path: Path
) -> None:
    from visionyard.contract import VisionContract
    from visionyard.data import DatasetManifest
    from visionyard.data.manifest import ManifestEntry

    entry = ManifestEntry(
        path="cat/1.png", sha256="0" * 64, size=10, width=8, height=8, split="train", label="cat"
    )
    manifest = DatasetManifest.create("classification", ["cat", "dog"], [entry])
    contract = VisionContract.classification(["cat", "dog"], input_size=32)
    with start_run(settings=tracking_settings) as run:
        run.log_dataset(manifest, name="train")
        run.log_contract(contract)
    got = mlflow_client.get_run(run.run_id)
    assert got.inputs.dataset_inputs[0].dataset.digest == manifest.digest[:36]
    assert got.data.tags["visionyard.dataset.train"] == manifest.digest
    assert got.data.tags["visionyard.contract_digest"] == contract.digest()
    text = artifact_text(mlflow_client, run.run_id, "datasets/train/manifest.json", tmp_path)
    assert DatasetManifest.model_validate_json(text) == manifest
