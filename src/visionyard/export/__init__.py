"""ONNX export from torch with parity checks, quantization and variant reports.

Names are loaded lazily: ``from visionyard.export import export_torch`` imports torch, but
importing another part of this package (quantization, reports) does not.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_torch": "visionyard.export.onnx",
    "check_parity": "visionyard.export.onnx",
    "ParityError": "visionyard.export.onnx",
    "ParityReport": "visionyard.export.onnx",
    "ImageParity": "visionyard.export.onnx",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'visionyard.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
