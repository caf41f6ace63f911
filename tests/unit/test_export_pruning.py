"""Structured pruning on tiny torch modules: names, counts, failures that name the layer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from visionyard.errors import DependencyMissingError, ExportError
from visionyard.export.prune_spec import Pruning, lineage_text, parse_pruned
from visionyard.export.pruning import prune
from visionyard.export.variants import needs_calibration, parse_variants
from visionyard.settings import Settings
from visionyard.tracking.queries import RunInfo
from visionyard.train.models import build_model
from visionyard.train.prune_source import config_from_params

EXAMPLE = torch.zeros(1, 3, 32, 32)


def test_pruned_names_parse_and_compose_with_int8() -> None:
    name = parse_pruned("pruned50-int8")
    assert (name.percent, name.int8, name.base, name.ratio) == (50, True, "pruned50", 0.5)
    assert parse_variants("pruned25,pruned50-int8") == ["fp32", "pruned25", "pruned50-int8"]
    assert needs_calibration(["fp32", "pruned50-int8"])
    assert not needs_calibration(["fp32", "pruned50", "fp16"])


@pytest.mark.parametrize("bad", ["pruned0", "pruned95", "prunedabc", "pruned", "pruned50-fp16"])
def test_a_ratio_out_of_range_is_refused(bad: str) -> None:
    with pytest.raises(ExportError, match="whole percent from 1 to 90"):
        parse_variants(f"int8,{bad}")


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18", "mobilenet_v2"])
def test_every_architecture_prunes_to_a_smaller_working_copy(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 3, 0.25).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune(model, EXAMPLE, 0.5)
    assert result.after.params < 0.5 * result.before.params
    assert result.after.macs < 0.5 * result.before.macs
    assert result.module(EXAMPLE).shape == (1, 3)  # the classes are kept
    assert result.ignored == ("head",)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # untouched


class _Shuffle(nn.Module):
    """A channel shuffle: a reshape torch-pruning cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.mix = nn.Conv2d(8, 8, 3)
        self.head = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(self.stem(x))
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        out: torch.Tensor = self.head(nn.functional.adaptive_avg_pool2d(y, 2).flatten(1))
        return out


class _FixedScale(nn.Module):
    """A fixed-size buffer multiplied into the features: pruning breaks its forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 2)
        self.register_buffer("scale", torch.ones(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.stem(x).mean((2, 3)) * self.scale)
        return out


def test_a_layer_the_pruner_cannot_handle_is_named() -> None:
    with pytest.raises(ExportError, match=r"cannot prune layer 'mix' \(Conv2d\)"):
        prune(_Shuffle(), EXAMPLE, 0.5)


def test_a_forward_pass_broken_by_pruning_names_the_last_layer_that_ran() -> None:
    with pytest.raises(ExportError, match=r"fails in the forward code of .* after layer 'stem'"):
        prune(_FixedScale(), EXAMPLE, 0.5)


def test_missing_torch_pruning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    with pytest.raises(DependencyMissingError, match=r"visionyard\[prune\]"):
        prune(build_model("small_cnn", 2, 0.25), EXAMPLE, 0.5)


def test_the_training_configuration_is_read_back_from_run_parameters(tmp_path: Path) -> None:
    from visionyard.train import make_config

    config = make_config(data=tmp_path, epochs=7, input_size=(48, 40), seed=3, patience=None)
    params = {
        k: json.dumps(v) if isinstance(v, list | dict) else str(v)
        for k, v in config.params().items()
    }  # what TrackedRun.log_params stores
    run = RunInfo("r", "0", None, "FINISHED", None, None, "", params=params)
    assert config_from_params(run) == config


def test_the_lineage_line_names_the_ratio_counts_and_fine_tuning_run() -> None:
    pruning = Pruning(
        ratio=0.5, method="magnitude L2", ignored_layers=["head"], params_before=98_196,
        params_after=24_908, macs_before=14_879_236, macs_after=3_900_676, source_run_id="a",
        finetune_run_id="ft123", finetune_epochs=3, finetune_lr=3e-4, finetune_val_accuracy=0.9,
        finetune_dataset_digest="d", same_dataset_as_training=True, torch_pruning_version="1.6",
    )  # fmt: skip
    assert lineage_text(pruning) == (
        "pruned 50% (magnitude L2), params 98.2k->24.9k, MACs 14.9M->3.9M, fine-tuned 3 "
        "epoch(s) lr 0.0003 in run ft123"
    )


def test_an_imported_version_cannot_be_pruned(tracking_settings: Settings) -> None:
    from visionyard.tracking import start_run
    from visionyard.train.prune_source import trained_source

    tags = {"visionyard.source": "import"}
    with start_run("imports", settings=tracking_settings, tags=tags) as run:
        run.log_params({"import_format": "onnx"})
    with pytest.raises(ExportError, match=r"needs a version trained with .*imported \(onnx\)"):
        trained_source(tracking_settings, run.run_id, "version 1 of 'm'")
