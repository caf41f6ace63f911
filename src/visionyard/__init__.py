"""visionyard: take object-recognition models from experiment to production.

The public API is exactly what ``__all__`` lists. Names are imported lazily (PEP 562) so that
``import visionyard`` stays light: torch, mlflow and onnxruntime load only when a name that
needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # settings and errors
    "Settings": "visionyard.settings",
    "load_settings": "visionyard.settings",
    "VisionyardError": "visionyard.errors",
    "ConfigError": "visionyard.errors",
    "ContractError": "visionyard.errors",
    "ImageError": "visionyard.errors",
    "ImageTooLargeError": "visionyard.errors",
    "BundleError": "visionyard.errors",
    "BundleIntegrityError": "visionyard.errors",
    "DatasetError": "visionyard.errors",
    "CorruptImagesError": "visionyard.errors",
    "TrackingError": "visionyard.errors",
    "TrackingUnavailableError": "visionyard.errors",
    "NotFoundError": "visionyard.errors",
    "RegistryError": "visionyard.errors",
    "GateFailedError": "visionyard.errors",
    "ExportError": "visionyard.errors",
    "TrainingError": "visionyard.errors",
    "InferenceError": "visionyard.errors",
    "InvalidInputError": "visionyard.errors",
    "ServerBusyError": "visionyard.errors",
    "ModelUnavailableError": "visionyard.errors",
    # the vision contract
    "VisionContract": "visionyard.contract",
    "load_contract": "visionyard.contract",
    "parse_contract": "visionyard.contract",
    "diff_contracts": "visionyard.contract",
    "preprocess_batch": "visionyard.contract",
    "preprocess_image": "visionyard.contract",
    "decode_for_contract": "visionyard.contract",
    "postprocess": "visionyard.contract",
    # bundles
    "Bundle": "visionyard.bundle",
    "load_bundle": "visionyard.bundle",
    "write_bundle": "visionyard.bundle",
    # datasets
    "DatasetManifest": "visionyard.data",
    "build_manifest": "visionyard.data",
    "diff_manifests": "visionyard.data",
    "read_imagefolder": "visionyard.data",
    "read_coco": "visionyard.data",
    "make_classification_set": "visionyard.data",
    "make_detection_set": "visionyard.data",
    # runtime and evaluation (onnxruntime)
    "InferenceSession": "visionyard.runtime",
    "evaluate_classification": "visionyard.evaluate",
    "evaluate_detection": "visionyard.evaluate",
    "compare_reports": "visionyard.evaluate",
    # tracking (mlflow)
    "start_run": "visionyard.tracking",
    "TrackedRun": "visionyard.tracking",
    # model registry (mlflow)
    "Registry": "visionyard.registry",
    # training and export (torch, the [torch] extra)
    "TrainConfig": "visionyard.train",
    "export_torch": "visionyard.export",
    "check_parity": "visionyard.export",
    "build_variants": "visionyard.export.variants",
    # serving
    "running_server": "visionyard.serving.app",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'visionyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
