"""The torch model behind a version: its training run's checkpoint and recorded configuration.

A version trained by ``visionyard train`` keeps, on its training run, the best weights as a
safetensors checkpoint (``checkpoint/best.safetensors``: architecture, width and labels in its
metadata) and the whole :class:`~visionyard.train.config.TrainConfig` as the run's parameters.
That is what pruning needs: the module to prune and the configuration to fine-tune it with.
An imported version (ONNX, or a torch factory whose weights file is not kept) has neither, and
is refused with one line that says so.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionyard.errors import ExportError
from visionyard.settings import Settings
from visionyard.tracking.queries import RunInfo, download_artifacts, get_run_info
from visionyard.train.checkpoint import Checkpoint, load_checkpoint
from visionyard.train.config import TrainConfig, make_config

CHECKPOINT = "checkpoint/best.safetensors"
_LITERALS = {"True": True, "False": False, "None": None}


@dataclass(frozen=True)
class TrainedSource:
    """A trained version's torch side: run, checkpoint, training configuration, data digest."""

    run_id: str
    checkpoint: Checkpoint
    config: TrainConfig
    dataset_digest: str | None


def trained_source(settings: Settings, run_id: str | None, what: str) -> TrainedSource:
    """The checkpoint and configuration of the run that trained ``what`` (a version or bundle
    named for the error message)."""
    if not run_id:
        raise _not_trained(what, "it records no training run")
    run = get_run_info(run_id, settings=settings)
    if run.tags.get("visionyard.source") == "import":
        kind = run.params.get("import_format", "a model file")
        raise _not_trained(what, f"it was imported ({kind}) and keeps no torch weights")
    if "visionyard.arch" not in run.tags:
        raise _not_trained(what, f"run {run_id} is not a visionyard training run")
    with tempfile.TemporaryDirectory(prefix="vy-prune-") as tmp:
        path = download_artifacts(run_id, CHECKPOINT, Path(tmp), settings=settings)
        checkpoint = load_checkpoint(path)
    digest = next((d.full_digest or d.digest for d in run.datasets if d.name == "train"), None)
    return TrainedSource(run_id, checkpoint, config_from_params(run), digest)


def config_from_params(run: RunInfo) -> TrainConfig:
    """The :class:`TrainConfig` a run logged as flat parameters (``augment.hflip`` style)."""
    values: dict[str, Any] = {}
    for field in TrainConfig.model_fields:
        if field in run.params:
            values[field] = _value(run.params[field])
    augment = {
        key.removeprefix("augment."): _value(text)
        for key, text in run.params.items()
        if key.startswith("augment.")
    }
    if augment:
        values["augment"] = augment
    if "data" not in values:
        raise ExportError(f"run {run.run_id} records no training configuration (no 'data')")
    return make_config(**values)


def _value(text: str) -> Any:
    if text in _LITERALS:
        return _LITERALS[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _not_trained(what: str, why: str) -> ExportError:
    return ExportError(
        f"pruning needs a version trained with `visionyard train` (its torch checkpoint and "
        f"training configuration); {what} has none: {why}. Prune the model in torch and import "
        "the result, or export int8/fp16 instead"
    )
