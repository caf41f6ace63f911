"""The detection training loop: the classification loop's habits (seeded epochs, cosine
schedule, mixed precision on CUDA, out-of-memory backoff by gradient accumulation, early
stopping on the monitored metric, best state kept) with CenterNet losses, and a validation that
decodes through the CONTRACT's postprocessing (threshold, per-class NMS, letterbox undone) and
scores with COCO mAP, exactly as a served model would be scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from visionyard.contract.postprocess import Detection, postprocess
from visionyard.contract.schema import VisionContract
from visionyard.evaluate.detection import DetectionReport, detection_report
from visionyard.train.config import TrainConfig
from visionyard.train.detection.data import Batch, BoxSet, preprocess, train_batches
from visionyard.train.detection.model import DecodedDetector, Detector
from visionyard.train.detection.targets import build_targets, losses
from visionyard.train.loop import EarlyStopping, LoopHooks, Optimisation, StateDict
from visionyard.train.metrics import metric_safe

LOSS_PARTS = ("loss", "loss_heatmap", "loss_size", "loss_offset")


@dataclass(frozen=True)
class DetectionEpoch:
    epoch: int
    train: dict[str, float]  # the loss parts, averaged over the epoch's images
    val: DetectionReport
    lr: float
    seconds: float
    batch_size: int

    def metrics(self) -> dict[str, float]:
        """Every number of the epoch, by MLflow metric name."""
        per_class = {
            f"val_ap.{metric_safe(c.label)}": c.ap for c in self.val.per_class if c.ap is not None
        }
        return {
            **{f"train_{k}": v for k, v in self.train.items()},
            "val_map_50_95": self.val.map_50_95,
            "val_map_50": self.val.map_50,
            **per_class,
            "lr": self.lr,
            "epoch_seconds": self.seconds,
            "batch_size": float(self.batch_size),
        }

    def status(self) -> str:
        return f"val mAP {self.val.map_50_95:.3f} · mAP@.5 {self.val.map_50:.3f}"


@dataclass
class DetectionFit:
    best: DetectionEpoch
    best_state: StateDict
    best_found: list[list[Detection]]  # the best epoch's validation detections
    history: list[DetectionEpoch]
    stopped_early: bool


class DetectionLoop(Optimisation):
    """Runs :meth:`fit` once over the given detector, data and configuration."""

    def __init__(
        self,
        model: Detector,
        train: BoxSet,
        val: BoxSet,
        contract: VisionContract,
        config: TrainConfig,
        device: torch.device,
        hooks: LoopHooks,
    ) -> None:
        super().__init__(model, config, device, hooks)
        self.detector = model  # the same module as self.model, typed as a detector
        self.train, self.val, self.contract = train, val, contract
        self.val_batch = preprocess(val.images, val.boxes, val.labels, contract)

    def fit(self) -> DetectionFit:
        stopper = EarlyStopping(self.config.monitor, self.config.patience, self.config.min_delta)
        history: list[DetectionEpoch] = []
        best: tuple[DetectionEpoch, StateDict, list[list[Detection]]] | None = None
        for epoch in range(1, self.config.epochs + 1):
            current, found = self.run_epoch(epoch)
            history.append(current)
            self.hooks.epoch_ended(current)
            if stopper.update(current.metrics()[self.config.monitor]) or best is None:
                best = (current, self.snapshot(), found)
            if stopper.should_stop:
                break
        assert best is not None  # epochs >= 1
        stopped = len(history) < self.config.epochs
        return DetectionFit(best[0], best[1], best[2], history, stopped)

    def run_epoch(self, epoch: int) -> tuple[DetectionEpoch, list[list[Detection]]]:
        started = time.perf_counter()
        lr = float(self.optimizer.param_groups[0]["lr"])
        train = self._train_epoch(epoch)
        if self.scheduler is not None:
            self.scheduler.step()
        report, found = self.evaluate()
        seconds = time.perf_counter() - started
        return DetectionEpoch(epoch, train, report, lr, seconds, self.backoff.batch_size), found

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        rng = np.random.default_rng([self.config.seed or 0, epoch])
        n = len(self.train)
        self.hooks.epoch_started(epoch, -(-n // self.config.batch_size))
        sums = dict.fromkeys(LOSS_PARTS, 0.0)
        batches = train_batches(
            self.train, self.contract, self.config.augment, self.config.batch_size, rng
        )
        for batch in batches:
            parts = self.backoff.run(partial(self._step, batch))
            for key, value in parts.items():
                sums[key] += value * len(batch.metas)
            self.hooks.batch_done(parts["loss"])
        return {key: value / n for key, value in sums.items()}

    def _step(self, batch: Batch, chunk: int) -> dict[str, float]:
        """One optimiser step over the batch, in chunks of ``chunk`` images."""
        self.optimizer.zero_grad(set_to_none=True)
        shape = tuple(batch.tensor.shape[-2:])
        classes = len(self.contract.labels)
        targets = build_targets(batch.boxes, batch.labels, classes, (shape[0], shape[1]))
        targets = targets.to(self.device)
        totals = dict.fromkeys(LOSS_PARTS, 0.0)
        for start in range(0, len(batch.metas), chunk):
            x = torch.from_numpy(batch.tensor[start : start + chunk]).to(self.device)
            with self._autocast():
                heat, size, offset = self.model(x)
            parts = losses(heat, size, offset, targets.chunk(start, start + chunk))
            self._backward(parts["loss"])
            for key, value in parts.items():
                totals[key] += float(value.detach())
        self._optimizer_step()
        return totals

    def evaluate(self) -> tuple[DetectionReport, list[list[Detection]]]:
        """COCO metrics of the validation set, decoded by the contract."""
        found = self.backoff.run(lambda size: self.detect(self.val_batch, size))
        report = detection_report(self.val.truth(), found, self.contract.labels)
        return report, found

    @torch.inference_mode()
    def detect(self, batch: Batch, batch_size: int) -> list[list[Detection]]:
        """Detections per image in original pixels, through the contract's postprocessing."""
        self.model.eval()
        decoded = DecodedDetector(self.detector)
        decoding: Any = self.contract.decoding
        found: list[list[Detection]] = []
        for start in range(0, len(batch.metas), batch_size):
            x = torch.from_numpy(batch.tensor[start : start + batch_size]).to(self.device)
            with self._autocast():
                boxes, scores = decoded(x)
            outputs = {decoding.boxes_output: boxes.float().cpu().numpy(),
                       decoding.scores_output: scores.float().cpu().numpy()}  # fmt: skip
            results = postprocess(outputs, self.contract, batch.metas[start : start + batch_size])
            found.extend(list(r.detections) for r in results)
        return found
