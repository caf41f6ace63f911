"""Safetensors checkpoints: round trip, metadata, refusal of other files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visionyard.errors import TrainingError
from visionyard.train.checkpoint import load_checkpoint, save_checkpoint
from visionyard.train.models import build_model


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", 3, 0.25).eval()
    path = save_checkpoint(
        tmp_path / "ck" / "best.safetensors", model.state_dict(), arch="small_cnn",
        width=0.25, labels=("a", "b", "c"), extra={"run_id": "r1"},
    )  # fmt: skip
    loaded = load_checkpoint(path)
    assert (loaded.arch, loaded.width, loaded.labels) == ("small_cnn", 0.25, ("a", "b", "c"))
    assert loaded.metadata["run_id"] == "r1"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.build()(x), model(x))


def test_a_plain_safetensors_file_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(TrainingError, match="not a visionyard checkpoint"):
        load_checkpoint(path)


def test_garbage_is_a_training_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x80\x04not safetensors at all")
    with pytest.raises(TrainingError, match="cannot read checkpoint"):
        load_checkpoint(path)
