"""Checkpoints as safetensors: tensors plus string metadata, never pickle.

A checkpoint stores the model's state (parameters and buffers) and, in its metadata, what is
needed to rebuild the module: architecture, width and the labels. Loading never executes code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from visionyard.errors import TrainingError
from visionyard.train.models import build_model

FORMAT = "visionyard.checkpoint.v1"


@dataclass(frozen=True)
class Checkpoint:
    arch: str
    width: float
    labels: tuple[str, ...]
    state: dict[str, torch.Tensor]
    metadata: dict[str, str]

    def build(self) -> nn.Module:
        """The module with these weights, in eval mode, on CPU."""
        model = build_model(self.arch, len(self.labels), self.width)
        model.load_state_dict(self.state)
        return model.eval()


def save_checkpoint(
    path: Path,
    state: Mapping[str, torch.Tensor],
    *,
    arch: str,
    width: float,
    labels: tuple[str, ...],
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write ``state`` (contiguous CPU copies) and the rebuild metadata to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {
        "format": FORMAT,
        "arch": arch,
        "width": repr(width),
        "labels": json.dumps(list(labels)),
        **(extra or {}),
    }
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata: dict[str, str] = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {exc}") from exc
    if metadata.get("format") != FORMAT:
        found = metadata.get("format")
        raise TrainingError(f"{path} is not a visionyard checkpoint (format {found!r})")
    labels = tuple(json.loads(metadata["labels"]))
    return Checkpoint(metadata["arch"], float(metadata["width"]), labels, state, metadata)
