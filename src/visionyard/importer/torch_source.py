"""A PyTorch model as an import source: ``module:factory`` + a weights file, never a pickle.

The factory is imported (the current directory is put on ``sys.path`` first, as uvicorn does
for ``module:app``) and called with the ``--factory-arg`` keyword arguments. Weights are a
safetensors file or a state dict read with ``torch.load(weights_only=True)`` (plain tensors
only: no code runs); a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and DataParallel's
``module.`` prefix are unwrapped. Weights that do not fit the module are ONE error listing the
missing, unexpected and mis-shaped tensors. The module is then exported by
:func:`visionyard.export.onnx.export_torch` and checked against ONNX Runtime by
:func:`visionyard.export.onnx.check_parity`, as a trained model is.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionyard.contract.preprocess import Source
from visionyard.contract.schema import ClassificationDecoding, DetectionDecoding, VisionContract
from visionyard.errors import ConfigError
from visionyard.export.onnx import ParityReport, check_parity, export_torch

_WRAPPERS = ("state_dict", "model", "model_state_dict")


@dataclass(frozen=True)
class TorchSource:
    """A built module with its weights loaded, and the weights file's string metadata."""

    module: nn.Module
    factory: str
    kwargs: dict[str, Any]
    weights: Path
    metadata: dict[str, str]


def load_torch_source(factory: str, kwargs: Mapping[str, Any], weights: Path) -> TorchSource:
    module = build_module(factory, kwargs)
    state, metadata = read_weights(weights)
    load_weights(module, state, weights)
    return TorchSource(module.eval(), factory, dict(kwargs), weights, metadata)


def resolve_factory(spec: str) -> Any:
    """The callable named by ``module:attr`` (``attr`` may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"--torch takes MODULE:FACTORY (e.g. mypkg.models:resnet18), not {spec!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise ConfigError(
            f"cannot import {module_name!r} for --torch {spec}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (--torch {spec})")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"--torch {spec}: {attr!r} is not callable")
    return target


def build_module(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    factory = resolve_factory(spec)
    try:
        module = factory(**kwargs)
    except Exception as exc:  # the user's factory: any error is theirs to fix
        raise ConfigError(
            f"{spec}({_kwargs_text(kwargs)}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{spec} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict and (safetensors only) its string metadata."""
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for whole pickled models, zip errors, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"cannot read {path} as a state dict with torch.load(weights_only=True) ({first}); "
            "save model.state_dict() (or use safetensors), never the whole pickled model"
        ) from exc
    return _state_dict(loaded, path), {}


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{path} is not a readable safetensors file: {exc}") from exc
    return state, metadata


def _state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in _WRAPPERS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ConfigError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = {str(k): v for k, v in loaded.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load strictly; ONE error listing what does not fit."""
    problems = weight_problems(module, state)
    if problems:
        raise ConfigError(f"the weights in {path.name} do not fit the module: {problems}")
    module.load_state_dict(dict(state), strict=True)


def weight_problems(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = [
        _listed("missing", missing),
        _listed("unexpected", unexpected),
        _listed("shape mismatch (weights vs module)", shapes),
    ]
    return "; ".join(p for p in parts if p)


def _listed(what: str, items: Sequence[str], most: int = 4) -> str:
    if not items:
        return ""
    more = f" (+{len(items) - most} more)" if len(items) > most else ""
    return f"{len(items)} {what}: {', '.join(items[:most])}{more}"


@torch.inference_mode()
def output_classes(module: nn.Module, contract: VisionContract) -> int | None:
    """The classes the module scores on a zero input: the last axis of its output (of its
    second output, the scores, for a detector; axis 1 less the 4 box rows of a YOLO tensor;
    None for post-NMS outputs)."""
    pre = contract.preprocessing
    h, w = pre.input_size.height, pre.input_size.width
    shape = (1, 3, h, w) if pre.layout == "NCHW" else (1, h, w, 3)
    try:
        out = module(torch.zeros(shape, dtype=getattr(torch, pre.dtype)))
    except Exception as exc:  # the user's module refusing the contract's input
        raise ConfigError(
            f"the module fails on a {list(shape)} {pre.dtype} input (the contract's input): "
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        ) from exc
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    decoding = contract.decoding
    if isinstance(decoding, DetectionDecoding) and decoding.layout != "boxes_scores":
        # a YOLO tensor [N, 4 + C, K]; post-NMS outputs do not say (the labels must)
        return int(outputs[0].shape[1]) - 4 if decoding.layout == "yolo" else None
    index = 0 if isinstance(decoding, ClassificationDecoding) else 1  # detection: (boxes, scores)
    if index >= len(outputs):
        raise ConfigError(
            f"the module returns {len(outputs)} output(s); a detector returns (boxes, scores)"
        )
    return int(outputs[index].shape[-1])


def export(source: TorchSource, contract: VisionContract, opset: int) -> bytes:
    """Export as training does; the exporter's own UserWarnings (constant folding of slices)
    are not the user's to act on and stay off the console."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        return export_torch(source.module, contract, opset=opset)


def parity(
    source: TorchSource,
    onnx_model: bytes,
    contract: VisionContract,
    images: Sequence[Source],
    names: Sequence[str],
    bounds: tuple[float, float],
) -> ParityReport:
    return check_parity(
        source.module, onnx_model, contract, images, names=names,
        max_abs=bounds[0], min_agreement=bounds[1], raise_on_failure=False,
    )  # fmt: skip
