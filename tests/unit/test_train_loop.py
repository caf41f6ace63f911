"""The training loop: early stopping, best state, and OOM backoff inside real training steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from visionyard.data.imagefolder import read_imagefolder
from visionyard.train.config import TrainConfig, make_config
from visionyard.train.data import eval_tensor, load_images, split_dataset
from visionyard.train.loop import EarlyStopping, EpochResult, Loop, LoopData
from visionyard.train.models import build_model


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def epoch_started(self, epoch: int, batches: int) -> None:
        self.events.append(("start", (epoch, batches)))

    def batch_done(self, loss: float) -> None:
        self.events.append(("batch", loss))

    def epoch_ended(self, result: EpochResult) -> None:
        self.events.append(("end", result))

    def backoff(self, old: int, new: int) -> None:
        self.events.append(("backoff", (old, new)))

    def of(self, kind: str) -> list[Any]:
        return [value for k, value in self.events if k == kind]


class OomAbove(nn.Module):
    """Raises the CUDA out-of-memory error for batches larger than ``limit`` (in training)."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if self.training and x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        out: torch.Tensor = self.inner(x)
        return out


def _loop(
    data_root: Path, model: nn.Module | None = None, **overrides: Any
) -> tuple[Loop, Recorder]:
    values = {"epochs": 2, "batch_size": 8, "input_size": (32, 32), "width": 0.25, "seed": 0}
    config: TrainConfig = make_config(data=data_root, **{**values, **overrides})
    dataset = read_imagefolder(data_root)
    contract = config.contract(dataset.classes)
    split = split_dataset(dataset, 0.2, 0)
    train = load_images(split.train, contract, 10**7)
    val = load_images(split.val, contract, 10**7)
    data = LoopData(train, eval_tensor(val.images, contract), val.labels, contract)
    torch.manual_seed(0)
    hooks = Recorder()
    model = model or build_model("small_cnn", len(dataset.classes), 0.25)
    return Loop(model, data, config, torch.device("cpu"), hooks), hooks


def test_early_stopping_counts_epochs_without_improvement() -> None:
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.01)
    assert [stopper.update(v) for v in (1.0, 0.5, 0.495, 0.6)] == [True, True, False, False]
    assert stopper.should_stop
    stopper = EarlyStopping("val_accuracy", patience=2, min_delta=0.0)
    assert [stopper.update(v) for v in (0.5, 0.7, 0.7)] == [True, True, False]
    assert not stopper.should_stop


def test_a_perfect_accuracy_stops_at_once() -> None:
    stopper = EarlyStopping("val_accuracy", patience=5, min_delta=0.0)
    stopper.update(1.0)
    assert stopper.should_stop
    assert not EarlyStopping("val_accuracy", patience=None, min_delta=0.0).should_stop


def test_fit_reports_every_epoch_and_keeps_the_best_state(synth_classification: Path) -> None:
    loop, hooks = _loop(synth_classification, epochs=2, patience=None)
    result = loop.fit()
    assert [r.epoch for r in hooks.of("end")] == [1, 2]
    assert hooks.of("start") == [(1, 3), (2, 3)]  # 24 training images in batches of 8
    assert len(hooks.of("batch")) == 6
    assert result.history == hooks.of("end")
    assert not result.stopped_early
    metrics = result.best.metrics()
    assert {"train_loss", "val_accuracy", "val_f1.circle", "lr"} <= set(metrics)
    best_state = result.best_state
    assert set(best_state) == set(loop.model.state_dict())
    assert all(t.device.type == "cpu" for t in best_state.values())


def test_stops_early_and_keeps_the_first_epoch(synth_classification: Path) -> None:
    # nothing improves by more than 1.0 after the first epoch
    loop, hooks = _loop(synth_classification, epochs=5, patience=1, min_delta=1.0)
    result = loop.fit()
    assert result.stopped_early
    assert [r.epoch for r in result.history] == [1, 2]
    assert result.best.epoch == 1
    assert result.best_state is not None


def test_out_of_memory_halves_the_batch_and_training_goes_on(synth_classification: Path) -> None:
    inner = build_model("small_cnn", 4, 0.25)
    model = OomAbove(inner, limit=2)
    loop, hooks = _loop(synth_classification, model=model, epochs=1, batch_size=8)
    result = loop.fit()
    assert hooks.of("backoff") == [(8, 4), (4, 2)]
    assert result.best.batch_size == 2
    assert result.best.metrics()["batch_size"] == 2.0
    # the whole batch of 8 is still one optimiser step: 3 steps of 8 images, in chunks of 2
    assert len(hooks.of("batch")) == 3
    assert model.sizes[:2] == [8, 4]  # the two failed attempts
    assert set(model.sizes[2:]) == {2}  # every later forward pass, training and evaluation


def test_chunked_steps_match_whole_batches(synth_classification: Path) -> None:
    """Gradient accumulation over chunks gives (numerically) the same update."""
    torch.manual_seed(1)
    reference = build_model("small_cnn", 4, 0.25)
    chunked = build_model("small_cnn", 4, 0.25)
    chunked.load_state_dict(reference.state_dict())
    for module in (reference, chunked):
        module.eval()  # batch statistics and dropout masks would differ per chunk
    loop_a, _ = _loop(synth_classification, model=reference, scheduler="none")
    loop_b, _ = _loop(synth_classification, model=chunked, scheduler="none")
    x = loop_a.data.val_x[:8]
    y = loop_a.data.val_y[:8]
    loss_a, _ = loop_a._step(x, y, 8)
    loss_b, _ = loop_b._step(x, y, 3)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for (name, a), b in zip(
        reference.state_dict().items(), chunked.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
