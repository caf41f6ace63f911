"""``train(config)`` for ``task: detection``: one tracked run, from a COCO folder to a bundle.

The same run as a classifier's (:mod:`visionyard.train.trainer`): the contract is built from
the configuration (letterbox by default) and the data pipeline ends in it; the manifest is
logged as the run's dataset; seeding, mixed precision, out-of-memory backoff and early stopping
are the classification loop's. Per epoch the run gets the loss parts, mAP@[.5:.95], mAP@.5 and
per-class AP; at the end the best state is kept as a checkpoint, the reports (per-class AP
JSON, precision-recall curves and a grid of validation images with true and predicted boxes,
both PNG) are logged, the detector is exported to ONNX with its box decoding in the graph, its
parity with torch is checked on boxes (:mod:`visionyard.export.parity_boxes`) and the bundle is
written and logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from visionyard.bundle.store import write_bundle
from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.contract.schema import VisionContract
from visionyard.data.coco import CocoDataset, CocoImage
from visionyard.data.manifest import DatasetManifest, read_dataset
from visionyard.errors import DatasetError
from visionyard.evaluate.detection import precision_recall_50
from visionyard.evaluate.detection_plots import boxes_grid_png, pr_curves_png
from visionyard.export.onnx import export_torch
from visionyard.export.parity_boxes import BoxParityError, BoxParityReport, check_box_parity
from visionyard.settings import Settings
from visionyard.tracking import TrackedRun, start_run
from visionyard.train.checkpoint import save_checkpoint
from visionyard.train.config import TrainConfig
from visionyard.train.detection.data import BoxSet, check_objects, read_box_data, split_images
from visionyard.train.detection.loop import DetectionFit, DetectionLoop
from visionyard.train.detection.model import DecodedDetector, Detector, build_detector
from visionyard.train.loop import amp_dtype
from visionyard.train.progress import TrainingProgress
from visionyard.train.trainer import TrainResult, log_parity, resolve_device, torch_runtime

DATASET_NAME = "train"


@dataclass(frozen=True)
class BoxData:
    dataset: CocoDataset
    manifest: DatasetManifest
    contract: VisionContract
    train_images: list[CocoImage]
    val_images: list[CocoImage]
    train: BoxSet
    val: BoxSet


def prepare_box_data(config: TrainConfig) -> BoxData:
    """Read and verify the COCO dataset, split it by image and decode every image once."""
    dataset = read_dataset(config.data)
    if not isinstance(dataset, CocoDataset):
        raise DatasetError(
            f"{config.data} is not a COCO dataset (annotations.json beside images/): a detector "
            "trains on boxes"
        )
    contract = config.contract(dataset.labels)
    train_images, val_images = split_images(dataset, config.val_fraction, config.seed or 0)
    check_objects(dataset, val_images)
    max_pixels = config.max_pixels or DEFAULT_MAX_PIXELS
    manifest, train, val = read_box_data(dataset, train_images, val_images, contract, max_pixels)
    return BoxData(dataset, manifest, contract, train_images, val_images, train, val)


def train_detection(
    config: TrainConfig,
    settings: Settings,
    *,
    progress: bool = False,
    console: Console | None = None,
) -> TrainResult:
    """Train, export and log one detector; see the module docstring."""
    config = config.resolved(settings)
    device = resolve_device(config.device or "auto")
    data = prepare_box_data(config)
    seed = config.seed or 0
    tags = {"visionyard.task": "detection", "visionyard.arch": config.arch}
    with (
        torch_runtime(seed, device, config.num_threads or 0),
        start_run(
            config.experiment, settings=settings, run_name=config.run_name, tags=tags, seed=seed
        ) as run,
    ):
        size = config.input_size
        model = build_detector(config.arch, len(data.contract.labels), config.width, size)
        _log_inputs(run, config, data, device, model)
        with TrainingProgress(run, config.epochs, show=progress, console=console) as hooks:
            loop = DetectionLoop(model, data.train, data.val, data.contract, config, device, hooks)
            fit = loop.fit()
            hooks.finish(fit.stopped_early, len(fit.history))
        return _finish(run, config, settings, data, model, fit)


def _log_inputs(
    run: TrackedRun, config: TrainConfig, data: BoxData, device: torch.device, model: Detector
) -> None:
    effective_amp = config.amp if amp_dtype(config.amp, device) is not None else "none"
    run.log_params(
        {
            **config.params(),
            "num_classes": len(data.contract.labels),
            "train_images": len(data.train),
            "val_images": len(data.val),
            "train_objects": sum(len(b) for b in data.train.boxes),
            "val_objects": sum(len(b) for b in data.val.boxes),
            "val_split": f"seeded hold-out of {config.val_fraction:g} of the images",
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
    data: BoxData,
    model: Detector,
    fit: DetectionFit,
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
        extra={"run_id": run.run_id, "epoch": str(fit.best.epoch), "task": "detection"},
    )
    run.log_artifact(checkpoint, "checkpoint")
    reports = _write_reports(run_dir / "reports", data, fit)
    run.log_artifact(reports, "reports")
    exported = DecodedDetector(model)
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
        run.run_id, bundle.path, best, fit.best.epoch, len(fit.history), fit.stopped_early,
        checkpoint, parity,
    )  # fmt: skip


def _write_reports(folder: Path, data: BoxData, fit: DetectionFit) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    val, labels = fit.best.val, data.contract.labels
    rows = [c.model_dump() for c in val.per_class]
    summary = {"epoch": fit.best.epoch, "map_50_95": val.map_50_95, "map_50": val.map_50,
               "per_class": rows}  # fmt: skip
    (folder / "per_class.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    truth = data.val.truth()
    curves = precision_recall_50(truth, fit.best_found, labels)
    title = f"best epoch {fit.best.epoch}: mAP@.5 {val.map_50:.3f}, IoU 0.5"
    (folder / "pr_curves.png").write_bytes(pr_curves_png(curves, title))
    (folder / "pr_curves.json").write_text(json.dumps(curves), encoding="utf-8")
    grid = boxes_grid_png(data.val.images, truth, fit.best_found, labels)
    (folder / "val_boxes.png").write_bytes(grid)
    return folder


def _parity(
    run: TrackedRun,
    config: TrainConfig,
    data: BoxData,
    model: torch.nn.Module,
    onnx_model: bytes,
    reports: Path,
) -> BoxParityReport:
    """Box parity on the first ``parity_images`` validation images; the report is logged."""
    images = [image.path for image in data.val_images[: config.parity_images]]
    try:
        report = check_box_parity(
            model, onnx_model, data.contract, images, max_abs=config.parity_max_abs,
            min_agreement=min(config.parity_min_agreement, 0.95),
            max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS,
        )  # fmt: skip
    except BoxParityError as exc:
        _log_parity(run, exc.report, reports)
        raise
    _log_parity(run, report, reports)
    return report


def _log_parity(run: TrackedRun, report: BoxParityReport, reports: Path) -> None:
    figures = {
        "parity_max_abs_diff": report.max_score_diff,
        "parity_box_max_diff_px": report.max_box_diff_px,
        "parity_matched_f1": report.matched_f1,
    }
    log_parity(run, report.to_dict(), report.passed, figures, reports)


def _best_metrics(fit: DetectionFit, parity: BoxParityReport) -> dict[str, float]:
    best = fit.best
    return {
        "val_map_50_95": best.val.map_50_95,
        "val_map_50": best.val.map_50,
        **{f"train_{k}": v for k, v in best.train.items()},
        "epoch": float(best.epoch),
        "parity_max_abs_diff": parity.max_score_diff,
        "parity_matched_f1": parity.matched_f1,
    }


def _bundle_metadata(
    run: TrackedRun, config: TrainConfig, data: BoxData, fit: DetectionFit, parity: BoxParityReport
) -> dict[str, Any]:
    return {
        "source": "visionyard.train",
        "task": "detection",
        "run_id": run.run_id,
        "arch": config.arch,
        "head": "centernet",
        "width": config.width,
        "best_epoch": fit.best.epoch,
        "val_map_50_95": fit.best.val.map_50_95,
        "val_map_50": fit.best.val.map_50,
        "dataset_digest": data.manifest.digest,
        "opset": config.opset,
        "exporter": "torch.onnx (TorchScript)",
        "torch_version": torch.__version__,
        "parity_max_abs_diff": parity.max_score_diff,
    }
