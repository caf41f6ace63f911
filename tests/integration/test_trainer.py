"""The trainer end to end, read back with a plain MlflowClient: what a run records, the bundle,
determinism, crashes, out-of-memory backoff, early stopping and parity failures."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

import visionyard.train.trainer as trainer_module
from tests.fixtures.models import TrainedRun, tiny_config
from visionyard.bundle.store import load_bundle
from visionyard.contract.preprocess import preprocess_batch
from visionyard.data.imagefolder import read_imagefolder
from visionyard.errors import ExportError
from visionyard.export.onnx import export_torch
from visionyard.settings import Settings
from visionyard.train import load_checkpoint, train
from visionyard.train.data import eval_tensor, load_images, split_dataset
from visionyard.train.loop import Loop
from visionyard.train.models import build_model, with_embedding

pytestmark = pytest.mark.slow


def _client(settings: Settings) -> MlflowClient:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader", category=Warning)
        uri = settings.tracking_uri()
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def _artifacts(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path)}


def _download(client: MlflowClient, run_id: str, path: str, target: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(target)))


# --- what a run records (the session's trained model) -------------------------------------


def test_run_has_params_metrics_and_tags(trained_run: TrainedRun) -> None:
    client = _client(trained_run.settings)
    run = client.get_run(trained_run.result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["arch"] == "small_cnn"
    assert params["epochs"] == "2"
    assert params["augment.hflip"] == "True"
    assert params["val_split"] == "dataset"
    assert params["train_images"] == "24"
    assert params["num_classes"] == "4"
    assert params["seed"] == "0"
    for key in ("val_accuracy", "val_loss", "train_loss", "val_macro_f1"):
        assert [step for step, _ in _history(client, run.info.run_id, key)] == [1, 2]
    for label in ("circle", "square", "star", "triangle"):
        for kind in ("precision", "recall", "f1"):
            assert len(_history(client, run.info.run_id, f"val_{kind}.{label}")) == 2
    assert "best_val_accuracy" in run.data.metrics
    assert run.data.tags["visionyard.train.best_epoch"] in {"1", "2"}
    assert run.data.tags["visionyard.export.parity"] == "passed"
    assert run.data.tags["visionyard.contract_digest"].startswith("sha256:")


def test_run_has_the_dataset_reports_checkpoint_and_bundle(
    trained_run: TrainedRun, synth_classification: Path, tmp_path: Path
) -> None:
    client = _client(trained_run.settings)
    run_id = trained_run.result.run_id
    run = client.get_run(run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "train"
    assert run.data.tags["visionyard.dataset.train"] == _manifest_digest(synth_classification)
    assert _artifacts(client, run_id, "reports") == {
        "reports/confusion_matrix.png",
        "reports/per_class.json",
        "reports/per_class.md",
        "reports/parity.json",
    }
    png = _download(client, run_id, "reports/confusion_matrix.png", tmp_path)
    assert Image.open(io.BytesIO(png.read_bytes())).format == "PNG"
    table = json.loads(_download(client, run_id, "reports/per_class.json", tmp_path).read_text())
    assert [row["label"] for row in table["classes"]] == ["circle", "square", "star", "triangle"]
    assert _artifacts(client, run_id, "checkpoint") == {"checkpoint/best.safetensors"}
    assert {"bundle/model.onnx", "bundle/contract.json", "bundle/manifest.json"} <= _artifacts(
        client, run_id, "bundle"
    )
    bundle = load_bundle(_download(client, run_id, "bundle", tmp_path))
    assert bundle.metadata["run_id"] == run_id


def _manifest_digest(root: Path) -> str:
    from visionyard.data.manifest import build_manifest

    return build_manifest(root).digest


def test_bundle_contract_is_the_training_transform(
    trained_run: TrainedRun, synth_classification: Path
) -> None:
    bundle = load_bundle(trained_run.result.bundle_path)
    dataset = read_imagefolder(synth_classification)
    assert bundle.contract == trained_run.config.contract(dataset.classes)
    assert bundle.contract.labels == dataset.classes
    val = split_dataset(dataset, 0.2, 0).val
    trainer_view = eval_tensor(load_images(val, bundle.contract, 10**7).images, bundle.contract)
    served_view = preprocess_batch([s.path for s in val], bundle.contract).tensor
    np.testing.assert_array_equal(trainer_view, served_view)


def test_bundle_model_is_the_best_checkpoint(
    trained_run: TrainedRun, synth_classification: Path
) -> None:
    result = trained_run.result
    bundle = load_bundle(result.bundle_path)
    checkpoint = load_checkpoint(result.checkpoint_path)
    assert checkpoint.metadata["epoch"] == str(result.best_epoch)
    model = checkpoint.build()
    images = sorted(synth_classification.glob("val/*/*.png"))
    x = preprocess_batch(images, bundle.contract).tensor
    session = ort.InferenceSession(str(bundle.model_path()), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run([bundle.contract.decoding.output], {"input": x})
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    accuracy = float((onnx_logits.argmax(1) == _labels(images)).mean())
    assert accuracy == pytest.approx(result.best_metrics["val_accuracy"])


def _labels(images: list[Path]) -> np.ndarray:
    classes = sorted({p.parent.name for p in images})
    return np.array([classes.index(p.parent.name) for p in images])


# --- behaviour (each test trains its own tiny model) --------------------------------------


def _comparable(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = [k for k in client.get_run(run_id).data.metrics if k != "epoch_seconds"]
    return {k: _history(client, run_id, k) for k in sorted(keys)}


def test_same_seed_gives_identical_metrics(
    synth_classification: Path, tracking_settings: Settings, mlflow_client: MlflowClient
) -> None:
    config = tiny_config(synth_classification, epochs=2, seed=11)
    first = train(config, tracking_settings)
    second = train(config, tracking_settings)
    assert first.run_id != second.run_id
    assert first.best_metrics == second.best_metrics
    a = _comparable(mlflow_client, first.run_id)
    assert "val_accuracy" in a
    assert a == _comparable(mlflow_client, second.run_id)  # exact equality on CPU
    other = train(tiny_config(synth_classification, epochs=2, seed=12), tracking_settings)
    assert _comparable(mlflow_client, other.run_id)["train_loss"] != a["train_loss"]


def test_a_crash_mid_run_keeps_the_metrics_logged_so_far(
    synth_classification: Path,
    tracking_settings: Settings,
    mlflow_client: MlflowClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Loop.run_epoch

    def crash_in_epoch_two(self: Loop, epoch: int) -> Any:
        if epoch == 2:
            raise RuntimeError("the GPU caught fire")
        return original(self, epoch)

    monkeypatch.setattr(Loop, "run_epoch", crash_in_epoch_two)
    with pytest.raises(RuntimeError, match="caught fire"):
        train(tiny_config(synth_classification, epochs=3), tracking_settings)
    (run,) = mlflow_client.search_runs([_experiment_id(mlflow_client, tracking_settings)])
    assert run.info.status == "FAILED"
    assert [s for s, _ in _history(mlflow_client, run.info.run_id, "val_accuracy")] == [1]
    assert run.data.params["arch"] == "small_cnn"


def _experiment_id(client: MlflowClient, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(settings.tracking.experiment)
    assert experiment is not None
    return str(experiment.experiment_id)


class OomAbove(torch.nn.Module):
    """A model that runs out of (injected) memory on training batches larger than 2."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        out: torch.Tensor = self.inner(x)
        return out


def test_out_of_memory_is_tagged_warned_and_survived(
    synth_classification: Path,
    tracking_settings: Settings,
    mlflow_client: MlflowClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(trainer_module, "build_model", lambda *args: OomAbove(build_model(*args)))
    monkeypatch.setattr(  # the export wraps the classifier inside the OOM injector
        trainer_module, "with_embedding", lambda model: OomAbove(with_embedding(model.inner))
    )
    exported: list[torch.nn.Module] = []

    def export_inner(module: torch.nn.Module, *args: Any, **kwargs: Any) -> bytes:
        assert isinstance(module, OomAbove)
        exported.append(module)
        return export_torch(module.inner, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "export_torch", export_inner)
    with caplog.at_level(logging.WARNING, logger="visionyard.train.oom"):
        result = train(tiny_config(synth_classification, epochs=1, batch_size=8), tracking_settings)
    tags = mlflow_client.get_run(result.run_id).data.tags
    assert tags["visionyard.train.oom_backoff"] == "8->4,4->2"
    assert tags["visionyard.train.batch_size"] == "2"
    assert "out of memory at batch size 8: retrying the step at 4" in caplog.messages
    assert _history(mlflow_client, result.run_id, "batch_size") == [(1, 2.0)]
    assert exported


def test_early_stopping_ends_the_run_and_keeps_the_best_epoch(
    synth_classification: Path, tracking_settings: Settings, mlflow_client: MlflowClient
) -> None:
    config = tiny_config(synth_classification, epochs=6, patience=1, min_delta=1.0, amp="bf16")
    result = train(config, tracking_settings)
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (2, 1, True)
    run = mlflow_client.get_run(result.run_id)
    cuda = torch.cuda.is_available()
    assert run.data.params["amp_effective"] == ("bf16" if cuda else "none")  # CUDA only
    tags = run.data.tags
    assert tags["visionyard.train.stopped_early"] == "True"
    assert len(_history(mlflow_client, result.run_id, "val_loss")) == 2
    assert load_checkpoint(result.checkpoint_path).metadata["epoch"] == "1"


def test_parity_failure_fails_the_run_with_the_worst_images(
    synth_classification: Path,
    tracking_settings: Settings,
    mlflow_client: MlflowClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def tampered_export(*args: Any, **kwargs: Any) -> bytes:
        proto = onnx.load_from_string(export_torch(*args, **kwargs))
        (gemm,) = [n for n in proto.graph.node if n.op_type == "Gemm"]
        (bias,) = [t for t in proto.graph.initializer if t.name == gemm.input[2]]
        values = onnx.numpy_helper.to_array(bias) + 3.0 * np.arange(bias.dims[0])
        bias.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), bias.name))
        return proto.SerializeToString()

    monkeypatch.setattr(trainer_module, "export_torch", tampered_export)
    with pytest.raises(ExportError, match=r"parity check failed.*worst: val/"):
        train(tiny_config(synth_classification, epochs=1), tracking_settings)
    (run,) = mlflow_client.search_runs([_experiment_id(mlflow_client, tracking_settings)])
    assert run.info.status == "FAILED"
    assert run.data.tags["visionyard.export.parity"] == "failed"
    report_path = _download(mlflow_client, run.info.run_id, "reports/parity.json", tmp_path)
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert report["worst"][0]["source"].startswith("val/")
    assert "bundle" not in {f.path for f in mlflow_client.list_artifacts(run.info.run_id)}
