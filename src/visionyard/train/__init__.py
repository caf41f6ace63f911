"""Reference trainer for image classification, in plain torch (no torchvision, no downloads).

Importing this package needs torch (``pip install 'visionyard[torch]'``); without it the import
raises :class:`~visionyard.errors.DependencyMissingError` naming the extra to install.
"""

from __future__ import annotations

from visionyard.errors import DependencyMissingError

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a test that hides torch
    raise DependencyMissingError(package="torch", extra="torch") from exc

from visionyard.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from visionyard.train.config import ARCH_NAMES, Augmentation, TrainConfig, make_config
from visionyard.train.models import ARCHITECTURES, build_model
from visionyard.train.trainer import TrainResult, train

__all__ = [
    "ARCHITECTURES",
    "ARCH_NAMES",
    "Augmentation",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "load_checkpoint",
    "make_config",
    "save_checkpoint",
    "train",
]
