"""What a pruned variant is, without torch: its name, its lineage record and its built model.

``pruned<NN>`` removes NN % of the prunable channels (NN a whole number from 1 to 90) of a
trained model with torch-pruning (:mod:`visionyard.export.pruning`), fine-tunes it briefly on
the version's training data (:mod:`visionyard.train.prune_finetune`) and exports it to ONNX;
``pruned<NN>-int8`` then quantizes that pruned model exactly as ``int8`` quantizes FP32.

This module holds only names and values, so :mod:`visionyard.export.variants` can validate and
report pruned variants without importing torch. A pruned variant's report carries a
:class:`Pruning` record (the pruning configuration, the fine-tuning run and the result) and its
one-line registry tag ends with :func:`lineage_text`, which ``visionyard models show`` lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from visionyard.errors import ExportError

PREFIX = "pruned"
INT8_SUFFIX = "-int8"
MIN_PERCENT, MAX_PERCENT = 1, 90
_NAME = re.compile(r"^pruned(?P<percent>[^-]*)(?P<int8>-int8)?$")


@dataclass(frozen=True)
class PrunedName:
    """``pruned50-int8`` -> ``PrunedName("pruned50-int8", 50, int8=True)``."""

    name: str
    percent: int
    int8: bool

    @property
    def base(self) -> str:
        """The FP32 pruned variant this one is built from (``pruned50``)."""
        return f"{PREFIX}{self.percent}"

    @property
    def ratio(self) -> float:
        return self.percent / 100.0


def is_pruned(name: str) -> bool:
    return name.startswith(PREFIX)


def parse_pruned(name: str) -> PrunedName:
    """Validate a pruned variant's name; a bad ratio is one :class:`ExportError` line."""
    found = _NAME.match(name)
    text = found.group("percent") if found else name.removeprefix(PREFIX)
    if found is None or not text.isdigit() or not MIN_PERCENT <= int(text) <= MAX_PERCENT:
        raise ExportError(
            f"invalid pruned variant {name!r}: the pruning ratio must be a whole percent from "
            f"{MIN_PERCENT} to {MAX_PERCENT} (e.g. pruned25, pruned50, pruned50-int8)"
        )
    return PrunedName(name, int(text), found.group("int8") is not None)


class Pruning(BaseModel):
    """The lineage of a pruned variant: how it was pruned, where it was fine-tuned, the result.

    ``macs_*`` are multiply-accumulates of one image at the contract's input size, counted by
    ``torch_pruning.utils.count_ops_and_params`` (what the README calls FLOPs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ratio: float
    method: str
    ignored_layers: list[str]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    source_run_id: str
    finetune_run_id: str
    finetune_epochs: int
    finetune_lr: float
    finetune_val_accuracy: float
    finetune_dataset_digest: str
    same_dataset_as_training: bool
    torch_pruning_version: str


@dataclass(frozen=True)
class PrunedModel:
    """A pruned, fine-tuned FP32 model as self-contained ONNX bytes, with its lineage."""

    model: bytes
    pruning: Pruning


def lineage_text(pruning: Pruning) -> str:
    """``pruned 50% (magnitude L2), params 98.2k->24.9k, MACs 14.9M->3.90M, fine-tuned 3
    epochs lr 0.0003 in run <id>``: the part of the registry tag ``models show`` lists."""
    data = "" if pruning.same_dataset_as_training else " on other data"
    return (
        f"pruned {pruning.ratio:.0%} ({pruning.method}), params "
        f"{_si(pruning.params_before)}->{_si(pruning.params_after)}, MACs "
        f"{_si(pruning.macs_before)}->{_si(pruning.macs_after)}, fine-tuned "
        f"{pruning.finetune_epochs} epoch(s) lr {pruning.finetune_lr:g}{data} in run "
        f"{pruning.finetune_run_id}"
    )


def _si(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)
