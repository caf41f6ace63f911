"""``train(config, settings)``: one tracked training run, from images to a logged bundle.

1. read the ImageFolder dataset, build the vision contract FROM the configuration's transforms,
   choose the train/val split, then build and verify the manifest (content digest) while
   decoding each image once for training;
2. seed everything, train with early stopping (per-epoch metrics to
   the run; out-of-memory errors halve the batch size and are tagged);
3. keep the best state as a safetensors checkpoint, write the confusion matrix and per-class
   table, export the best model to ONNX, check torch-vs-ONNX-Runtime parity on validation
   images, write the bundle under ``<home>/runs/<run_id>/bundle`` and log it to the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from visionyard.bundle.store import write_bundle
from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.contract.schema import VisionContract
from visionyard.data.imagefolder import ImageFolderDataset, read_imagefolder
from visionyard.data.manifest import DatasetManifest
from visionyard.errors import ConfigError
from visionyard.evaluate.report import confusion_matrix_png
from visionyard.export.onnx import ParityError, ParityReport, check_parity, export_torch
from visionyard.settings import Settings
from visionyard.tracking import TrackedRun, start_run
from visionyard.train.checkpoint import save_checkpoint
from visionyard.train.config import TrainConfig
from visionyard.train.data import ImageSet, Split, eval_tensor, read_training_data, split_dataset
from visionyard.train.loop import FitResult, Loop, LoopData, amp_dtype
from visionyard.train.metrics import ClassificationMetrics
from visionyard.train.models import build_model, with_embedding
from visionyard.train.progress import TrainingProgress
from visionyard.train.report import per_class_json, per_class_markdown

if TYPE_CHECKING:
    from visionyard.export.parity_boxes import BoxParityReport

log = logging.getLogger(__name__)
DATASET_NAME = "train"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced; ``best_metrics`` are those of the best epoch."""

    run_id: str
    bundle_path: Path
    best_metrics: dict[str, float]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    checkpoint_path: Path
    parity: ParityReport | BoxParityReport


@dataclass(frozen=True)
class PreparedData:
    """The dataset, its manifest, the contract, the split and the decoded images."""

    dataset: ImageFolderDataset
    manifest: DatasetManifest
    contract: VisionContract
    split: Split
    train: ImageSet
    val: ImageSet


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


@contextmanager
def torch_runtime(seed: int, device: torch.device, num_threads: int) -> Iterator[None]:
    """Seed torch, force deterministic algorithms on CPU, fix the thread count; restore after."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = False
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def prepare_data(config: TrainConfig) -> PreparedData:
    """Read and verify the dataset, split it and decode every image once."""
    max_pixels = config.max_pixels or DEFAULT_MAX_PIXELS
    dataset = read_imagefolder(config.data)
    contract = config.contract(dataset.classes)
    split = split_dataset(dataset, config.val_fraction, config.seed or 0)
    manifest, train, val = read_training_data(dataset, split, contract, max_pixels)
    return PreparedData(dataset, manifest, contract, split, train, val)


def train(
    config: TrainConfig,
    settings: Settings,
    *,
    progress: bool = False,
    console: Console | None = None,
) -> TrainResult:
    """Train, export and log one model; see the module docstring for the steps (a detector:
    :mod:`visionyard.train.detection.trainer`)."""
    if config.task == "detection":
        from visionyard.train.detection.trainer import train_detection

        return train_detection(config, settings, progress=progress, console=console)
    config = config.resolved(settings)
    device = resolve_device(config.device or "auto")
    data = prepare_data(config)
    seed = config.seed or 0
    tags = {"visionyard.task": "classification", "visionyard.arch": config.arch}
    with (
        torch_runtime(seed, device, config.num_threads or 0),
        start_run(
            config.experiment, settings=settings, run_name=config.run_name, tags=tags, seed=seed
        ) as run,
    ):
        model = build_model(config.arch, len(data.dataset.classes), config.width)
        _log_inputs(run, config, data, device, model)
        loop_data = LoopData(
            data.train, eval_tensor(data.val.images, data.contract), data.val.labels, data.contract
        )
        with TrainingProgress(run, config.epochs, show=progress, console=console) as hooks:
            fit = Loop(model, loop_data, config, device, hooks).fit()
            hooks.finish(fit.stopped_early, len(fit.history))
        return _finish(run, config, settings, data, model, fit)


def _log_inputs(
    run: TrackedRun,
    config: TrainConfig,
    data: PreparedData,
    device: torch.device,
    model: torch.nn.Module,
) -> None:
    effective_amp = config.amp if amp_dtype(config.amp, device) is not None else "none"
    if effective_amp != config.amp:
        log.warning(
            "mixed precision (%s) needs CUDA; training in float32 on %s", config.amp, device
        )
    run.log_params(
        {
            **config.params(),
            "num_classes": len(data.dataset.classes),
            "train_images": len(data.train),
            "val_images": len(data.val),
            "val_split": data.split.how,
            "device_resolved": str(device),
            "amp_effective": effective_amp,
            "model_parameters": sum(p.numel() for p in model.parameters()),
        }
    )
    run.log_dataset(data.manifest, name=DATASET_NAME, context="training")
    run.log_contract(data.contract)


def _finish(
    run: TrackedRun,
    config: TrainConfig,
    settings: Settings,
    data: PreparedData,
    model: torch.nn.Module,
    fit: FitResult,
) -> TrainResult:
    run_dir = (settings.home / "runs" / run.run_id).resolve()
    model.load_state_dict(fit.best_state)
    model = model.cpu().eval()
    checkpoint = save_checkpoint(
        run_dir / "checkpoint" / "best.safetensors",
        fit.best_state,
        arch=config.arch,
        width=config.width,
        labels=data.contract.labels,
        extra={"run_id": run.run_id, "epoch": str(fit.best.epoch)},
    )
    run.log_artifact(checkpoint, "checkpoint")
    reports = _write_reports(run_dir / "reports", fit.best.val, fit.best.epoch)
    run.log_artifact(reports, "reports")
    exported = with_embedding(model)  # logits and the contract's embedding output
    onnx_model = export_torch(exported, data.contract, opset=config.opset)
    parity = _parity(run, config, data, exported, onnx_model, reports)
    best = _best_metrics(fit, parity)
    bundle = write_bundle(
        run_dir / "bundle",
        model=onnx_model,
        contract=data.contract,
        extra_files={
            "reports/per_class.json": reports / "per_class.json",
            "reports/parity.json": reports / "parity.json",
        },
        metadata=_bundle_metadata(run, config, data, fit, parity),
    )
    run.log_bundle(bundle.path)
    run.log_metrics(fit.best.epoch, {f"best_{k}": v for k, v in best.items()})
    run.set_tags(
        {
            "visionyard.train.best_epoch": fit.best.epoch,
            "visionyard.train.stopped_early": fit.stopped_early,
            "visionyard.train.epochs_run": len(fit.history),
        }
    )
    return TrainResult(
        run.run_id,
        bundle.path,
        best,
        fit.best.epoch,
        len(fit.history),
        fit.stopped_early,
        checkpoint,
        parity,
    )


def _write_reports(folder: Path, val: ClassificationMetrics, epoch: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    title = f"validation, best epoch {epoch}: accuracy {val.accuracy:.4f}"
    (folder / "confusion_matrix.png").write_bytes(
        confusion_matrix_png(val.confusion, val.labels, title)
    )
    (folder / "per_class.json").write_text(per_class_json(val), encoding="utf-8")
    (folder / "per_class.md").write_text(per_class_markdown(val), encoding="utf-8")
    return folder


def _parity(
    run: TrackedRun,
    config: TrainConfig,
    data: PreparedData,
    model: torch.nn.Module,
    onnx_model: bytes,
    reports: Path,
) -> ParityReport:
    """Parity on the first ``parity_images`` validation images; the report is always logged."""
    samples = data.split.val[: config.parity_images]
    try:
        report = check_parity(
            model,
            onnx_model,
            data.contract,
            [s.path for s in samples],
            names=[s.relpath for s in samples],
            max_abs=config.parity_max_abs,
            min_agreement=config.parity_min_agreement,
            max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS,
        )
    except ParityError as exc:
        _log_parity(run, exc.report, reports)
        raise
    _log_parity(run, report, reports)
    return report


def _log_parity(run: TrackedRun, report: ParityReport, reports: Path) -> None:
    figures = {
        "parity_max_abs_diff": report.max_abs_diff,
        "parity_top1_agreement": report.top1_agreement,
    }
    log_parity(run, report.to_dict(), report.passed, figures, reports)


def log_parity(
    run: TrackedRun,
    report: dict[str, Any],
    passed: bool,
    figures: dict[str, float],
    reports: Path,
) -> None:
    """A parity report (classifier or detector) on the run: ``reports/parity.json``, its
    ``figures`` as metrics and the ``visionyard.export.parity`` tag."""
    (reports / "parity.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    run.log_artifact(reports / "parity.json", "reports")
    run.log_metrics(0, figures)
    run.set_tags({"visionyard.export.parity": "passed" if passed else "failed"})


def _best_metrics(fit: FitResult, parity: ParityReport) -> dict[str, float]:
    best = fit.best
    return {
        **best.val.summary("val"),
        "train_loss": best.train_loss,
        "train_accuracy": best.train_accuracy,
        "epoch": float(best.epoch),
        "parity_max_abs_diff": parity.max_abs_diff,
        "parity_top1_agreement": parity.top1_agreement,
    }


def _bundle_metadata(
    run: TrackedRun,
    config: TrainConfig,
    data: PreparedData,
    fit: FitResult,
    parity: ParityReport,
) -> dict[str, Any]:
    return {
        "source": "visionyard.train",
        "run_id": run.run_id,
        "arch": config.arch,
        "width": config.width,
        "best_epoch": fit.best.epoch,
        "val_accuracy": fit.best.val.accuracy,
        "dataset_digest": data.manifest.digest,
        "opset": config.opset,
        "exporter": "torch.onnx (TorchScript)",
        "torch_version": torch.__version__,
        "parity_max_abs_diff": parity.max_abs_diff,
    }
