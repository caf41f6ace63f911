"""The detection loop keeps the classification loop's habits: an out-of-memory error halves the
batch (chunks accumulate to the same step), the same seed gives the same run, the best epoch's
state and detections are kept, and validation decodes through the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.unit.test_train_loop import Recorder
from visionyard.contract.schema import VisionContract
from visionyard.data.manifest import read_dataset
from visionyard.train.config import make_config
from visionyard.train.detection.data import read_box_data, split_images
from visionyard.train.detection.loop import DetectionLoop
from visionyard.train.detection.model import Detector, build_detector


class OomAboveDetector(Detector):
    """Raises CUDA's out-of-memory error for training batches larger than ``limit``."""

    limit = 2
    sizes: list[int]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.sizes.append(x.shape[0])
        if self.training and x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return super().forward(x)


def _loop(data_root: Path, model: Detector | None = None, **overrides: Any) -> tuple[
    DetectionLoop, Recorder
]:  # fmt: skip
    values: dict[str, Any] = {"task": "detection", "width": 0.25, "epochs": 1, "batch_size": 4,
                              "seed": 0, "patience": None, "scheduler": "none"}  # fmt: skip
    config = make_config(data=data_root, **{**values, **overrides})
    dataset = read_dataset(data_root)
    contract: VisionContract = config.contract(dataset.labels)
    train_images, val_images = split_images(dataset, 0.25, 0)  # type: ignore[arg-type]
    _, train, val = read_box_data(dataset, train_images, val_images, contract, 10**7)  # type: ignore[arg-type]
    torch.manual_seed(0)
    hooks = Recorder()
    model = model or build_detector("small_cnn", len(contract.labels), 0.25, (64, 64))
    return DetectionLoop(model, train, val, contract, config, torch.device("cpu"), hooks), hooks


def test_out_of_memory_halves_the_batch_and_training_goes_on(synth_detection: Path) -> None:
    plain = build_detector("small_cnn", 4, 0.25, (64, 64))
    model = OomAboveDetector(plain.backbone, plain.taps, 4)
    model.sizes = []
    loop, hooks = _loop(synth_detection, model=model, batch_size=6)
    fit = loop.fit()
    assert hooks.of("backoff") == [(6, 3), (3, 1)]
    assert fit.best.batch_size == 1
    assert fit.best.metrics()["batch_size"] == 1.0
    assert len(hooks.of("batch")) == 1  # 6 training images: still one optimiser step
    assert model.sizes[:2] == [6, 3]


def test_chunked_steps_match_whole_batches(synth_detection: Path) -> None:
    """Gradient accumulation over chunks gives (numerically) the same update and loss."""
    reference = build_detector("small_cnn", 4, 0.25, (64, 64))
    chunked = build_detector("small_cnn", 4, 0.25, (64, 64))
    chunked.load_state_dict(reference.state_dict())
    for module in (reference, chunked):
        module.eval()  # batch statistics would differ per chunk
    # SGD: the update is the gradient itself (Adam's first step is +-lr wherever a gradient is
    # nonzero, so summation-order noise in near-zero gradients would flip whole steps)
    loop_a, _ = _loop(synth_detection, model=reference, optimizer="sgd")
    loop_b, _ = _loop(synth_detection, model=chunked, optimizer="sgd")
    loop_a.model.eval()
    loop_b.model.eval()
    batch = loop_a.val_batch
    parts_a = loop_a._step(batch, 8)
    parts_b = loop_b._step(batch, 1)
    for key, value in parts_a.items():
        assert value == pytest.approx(parts_b[key], rel=1e-4), key
    for (name, a), b in zip(
        reference.state_dict().items(), chunked.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_the_same_seed_gives_the_same_run_and_the_best_epoch_is_kept(
    synth_detection: Path,
) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        runs = [_loop(synth_detection, epochs=2)[0].fit() for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    first, second = ([e.metrics() for e in fit.history] for fit in runs)
    for a, b in zip(first, second, strict=True):
        for key in a:
            if key != "epoch_seconds":
                assert a[key] == b[key], key
    fit = runs[0]
    assert [e.epoch for e in fit.history] == [1, 2]
    assert set(fit.best_state) == set(build_detector("small_cnn", 4, 0.25, (64, 64)).state_dict())
    assert len(fit.best_found) == 2  # the best epoch's detections, one list per val image
    assert {"train_loss_heatmap", "val_map_50_95", "val_map_50"} <= set(first[0])


def test_early_stopping_waits_for_a_detector_to_find_anything() -> None:
    """mAP stays exactly 0 for the first epochs while the heatmaps learn where objects are: those
    epochs are no plateau (a default patience of 3 stopped a 30-epoch run at epoch 4 with
    nothing found). Waiting starts at the first nonzero mAP."""
    from visionyard.train.loop import EarlyStopping

    stopper = EarlyStopping("val_map_50_95", patience=2, min_delta=0.0)
    for value in (0.0, 0.0, 0.0, 0.0):
        stopper.update(value)
        assert not stopper.should_stop
    assert stopper.update(0.1)
    stopper.update(0.1)
    assert not stopper.should_stop
    stopper.update(0.05)
    assert stopper.should_stop
    assert not EarlyStopping("val_map_50", patience=1, min_delta=0.0).should_stop


def test_a_detection_run_waits_longer_by_default(tmp_path: Path) -> None:
    assert make_config(data=tmp_path, task="detection").patience == 8
    assert make_config(data=tmp_path, task="detection", patience=2).patience == 2
    assert make_config(data=tmp_path).patience == 3
