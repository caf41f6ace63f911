"""The training loop: epochs, per-epoch metrics, early stopping and the best state.

Each optimiser step runs through :class:`~visionyard.train.oom.OomBackoff`: the batch is cut
into chunks of the current (possibly halved) batch size and their gradients accumulated, so an
out-of-memory error changes memory use but not the optimisation. Randomness comes from the
torch RNG (seeded by the caller) and from one numpy generator per epoch, ``(seed, epoch)``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch import nn

from visionyard.contract.schema import VisionContract
from visionyard.train.config import TrainConfig
from visionyard.train.data import ImageSet, Labels, Tensor, train_batches
from visionyard.train.metrics import ClassificationMetrics, classification_metrics
from visionyard.train.oom import OomBackoff

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float
    val: ClassificationMetrics
    lr: float
    seconds: float
    batch_size: int

    def metrics(self) -> dict[str, float]:
        """Every number of the epoch, by MLflow metric name."""
        return {
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            **self.val.summary("val"),
            **self.val.per_class("val"),
            "lr": self.lr,
            "epoch_seconds": self.seconds,
            "batch_size": float(self.batch_size),
        }

    def status(self) -> str:
        """The progress bar's line for the epoch."""
        return f"val acc {self.val.accuracy:.4f} · val loss {self.val.loss:.4f}"


@dataclass
class FitResult:
    best: EpochResult
    best_state: StateDict
    history: list[EpochResult]
    stopped_early: bool


class EpochLike(Protocol):
    """What the hooks read of an epoch (classification's or detection's)."""

    @property
    def epoch(self) -> int: ...
    def metrics(self) -> dict[str, float]: ...
    def status(self) -> str: ...


class LoopHooks(Protocol):
    """What the loop reports; the trainer logs to the run and drives the progress bars."""

    def epoch_started(self, epoch: int, batches: int) -> None: ...
    def batch_done(self, loss: float) -> None: ...
    def epoch_ended(self, result: EpochLike) -> None: ...
    def backoff(self, old: int, new: int) -> None: ...


@dataclass(frozen=True)
class LoopData:
    train: ImageSet
    val_x: Tensor
    val_y: Labels
    contract: VisionContract


class EarlyStopping:
    """Tracks the monitored metric; ``improved`` when better by more than ``min_delta``.

    Stops after ``patience`` epochs without improvement, or at once when an accuracy reaches
    1.0 (nothing can improve on it; waiting would only burn time). A detector's mAP stays at
    exactly 0 for the first epochs while its heatmaps learn where objects are: epochs at 0 before
    anything was found are no plateau, so waiting starts at the first nonzero mAP.
    """

    def __init__(self, monitor: str, patience: int | None, min_delta: float) -> None:
        self.sign = -1.0 if monitor.endswith("loss") else 1.0
        self.ceiling = 1.0 if monitor.endswith("accuracy") else None
        self.floor = 0.0 if "_map_" in monitor else None
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.waited = 0

    def update(self, value: float) -> bool:
        score = self.sign * value
        if self.floor is not None and score <= self.floor and (self.best or 0.0) <= self.floor:
            improved = self.best is None
            self.best = score
            return improved
        if self.best is None or score > self.best + self.min_delta:
            self.best = score
            self.waited = 0
            return True
        self.waited += 1
        return False

    @property
    def should_stop(self) -> bool:
        if self.patience is None:
            return False
        at_ceiling = (
            self.ceiling is not None and self.best is not None and self.best >= self.ceiling
        )
        return at_ceiling or self.waited >= self.patience


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None: mixed precision is used on CUDA only."""
    if device.type != "cuda" or amp == "none":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


class Optimisation:
    """What every training loop here shares: the model on its device, the optimiser and its
    schedule, mixed precision (autocast, the fp16 grad scaler) and the out-of-memory backoff.
    The classification :class:`Loop` and the detection loop add their data and losses."""

    def __init__(
        self, model: nn.Module, config: TrainConfig, device: torch.device, hooks: LoopHooks
    ) -> None:
        self.model = model.to(device)
        self.config = config
        self.device = device
        self.hooks = hooks
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = self._scheduler()
        self.dtype = amp_dtype(config.amp, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        self.backoff = OomBackoff(config.batch_size, on_backoff=hooks.backoff)

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        if self.config.scheduler == "none":
            return None
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, self.config.epochs)

    def snapshot(self) -> StateDict:
        """A CPU copy of the model's current state (parameters and buffers)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            torch.autograd.backward(self.scaler.scale(loss))
        else:
            torch.autograd.backward(loss)

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()


class Loop(Optimisation):
    """Runs :meth:`fit` once over the given model, data and configuration."""

    def __init__(
        self,
        model: nn.Module,
        data: LoopData,
        config: TrainConfig,
        device: torch.device,
        hooks: LoopHooks,
    ) -> None:
        super().__init__(model, config, device, hooks)
        self.data = data
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def fit(self) -> FitResult:
        stopper = EarlyStopping(self.config.monitor, self.config.patience, self.config.min_delta)
        history: list[EpochResult] = []
        best: tuple[EpochResult, StateDict] | None = None
        for epoch in range(1, self.config.epochs + 1):
            current = self.run_epoch(epoch)
            history.append(current)
            self.hooks.epoch_ended(current)
            if stopper.update(current.metrics()[self.config.monitor]) or best is None:
                best = (current, self.snapshot())
            if stopper.should_stop:
                break
        assert best is not None  # epochs >= 1
        return FitResult(best[0], best[1], history, len(history) < self.config.epochs)

    def run_epoch(self, epoch: int) -> EpochResult:
        started = time.perf_counter()
        lr = float(self.optimizer.param_groups[0]["lr"])
        train_loss, train_accuracy = self._train_epoch(epoch)
        if self.scheduler is not None:
            self.scheduler.step()
        val = self.evaluate(self.data.val_x, self.data.val_y)
        seconds = time.perf_counter() - started
        return EpochResult(
            epoch, train_loss, train_accuracy, val, lr, seconds, self.backoff.batch_size
        )

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.model.train()
        rng = np.random.default_rng([self.config.seed or 0, epoch])
        n = len(self.data.train)
        self.hooks.epoch_started(epoch, -(-n // self.config.batch_size))
        loss_sum, correct = 0.0, 0
        batches = train_batches(
            self.data.train, self.data.contract, self.config.augment, self.config.batch_size, rng
        )
        for x, y in batches:
            batch_loss, batch_correct = self.backoff.run(partial(self._step, x, y))
            loss_sum += batch_loss * len(y)
            correct += batch_correct
            self.hooks.batch_done(batch_loss)
        return loss_sum / n, correct / n

    def _step(self, x: Tensor, y: Labels, chunk: int) -> tuple[float, int]:
        """One optimiser step over the batch, in chunks of ``chunk`` images."""
        self.optimizer.zero_grad(set_to_none=True)
        total = len(y)
        loss_sum, correct = 0.0, 0
        for start in range(0, total, chunk):
            xb = torch.from_numpy(x[start : start + chunk]).to(self.device)
            yb = torch.from_numpy(y[start : start + chunk]).to(self.device)
            with self._autocast():
                logits = self.model(xb)
                loss = self.criterion(logits.float(), yb) * (len(yb) / total)
            self._backward(loss)
            loss_sum += float(loss.detach()) * total
            correct += int((logits.argmax(1) == yb).sum())
        self._optimizer_step()
        return loss_sum / total, correct

    def evaluate(self, x: Tensor, y: Labels) -> ClassificationMetrics:
        """Loss and per-class metrics over preprocessed images (no augmentation)."""
        logits = self.backoff.run(lambda size: self.predict(x, size))
        loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))
        return classification_metrics(y, logits.argmax(1), self.data.contract.labels, loss)

    @torch.inference_mode()
    def predict(self, x: Tensor, batch_size: int) -> Tensor:
        """Float32 logits for preprocessed images, in batches."""
        self.model.eval()
        out = []
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[start : start + batch_size]).to(self.device)
            with self._autocast():
                out.append(self.model(xb).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
