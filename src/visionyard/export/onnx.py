"""ONNX export from torch, and the torch-vs-ONNX-Runtime parity check.

:func:`export_torch` returns the serialized model as bytes: ONE self-contained ``model.onnx``
(weights inline, never an external ``.onnx.data`` file), with a dynamic batch axis, the
contract's input and output names, checked by ``onnx.checker`` and optimised by onnxscript's
optimizer (constant folding, dead-node removal). The legacy TorchScript exporter is the default:
it is ~15x faster than the dynamo exporter here and matches torch to ~2e-7 on these CNNs.

:func:`check_parity` pushes real images through the contract's preprocessing and compares the
torch module with ONNX Runtime: the largest absolute output difference and top-1 agreement.
Below the bounds it raises :class:`ParityError` (an ``ExportError``) with the worst images.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from numpy.typing import NDArray
from torch import nn

from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.contract.preprocess import Source, preprocess_batch
from visionyard.contract.schema import VisionContract
from visionyard.errors import ExportError

DEFAULT_OPSET = 17
BATCH_AXIS = "batch"
Array = NDArray[np.float32]
_LEGACY_WARNINGS = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)


class ParityError(ExportError):
    """The exported model disagrees with torch beyond the bounds; ``report`` has the details."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(f"ONNX parity check failed: {report.describe()}")
        self.report = report


def export_torch(
    module: nn.Module,
    contract: VisionContract,
    sample: torch.Tensor | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    optimize: bool = True,
) -> bytes:
    """Export ``module`` (in eval mode) to a self-contained ONNX model with a dynamic batch.

    ``sample`` is one input batch in the contract's layout and dtype (zeros by default).
    Raises :class:`ExportError` naming the operator when the exporter cannot convert one.
    """
    sample = _sample(contract, module) if sample is None else sample
    was_training = module.training
    module.eval()
    try:
        model = (
            _export_dynamo(module, contract, sample, opset)
            if dynamo
            else _export_legacy(module, contract, sample, opset)
        )
    finally:
        module.train(was_training)
    if optimize:
        model = _optimize(model)
    _check(model, contract)
    return bytes(model.SerializeToString())


def _sample(contract: VisionContract, module: nn.Module) -> torch.Tensor:
    pre = contract.preprocessing
    h, w = pre.input_size.height, pre.input_size.width
    shape = (2, 3, h, w) if pre.layout == "NCHW" else (2, h, w, 3)
    device = next(module.parameters(), torch.empty(0)).device
    return torch.zeros(shape, dtype=getattr(torch, pre.dtype), device=device)


def _dynamic_axes(contract: VisionContract) -> dict[str, dict[int, str]]:
    names = [contract.input_name, *contract.output_names]
    return {name: {0: BATCH_AXIS} for name in names}


def _export_legacy(
    module: nn.Module, contract: VisionContract, sample: torch.Tensor, opset: int
) -> Any:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        for message in _LEGACY_WARNINGS:  # the deprecation notice of the exporter itself
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        try:
            torch.onnx.export(
                module,
                (sample,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to files too
                dynamo=False,
                opset_version=opset,
                input_names=[contract.input_name],
                output_names=contract.output_names,
                dynamic_axes=_dynamic_axes(contract),
                do_constant_folding=True,
            )
        except Exception as exc:  # the exporter raises many types; all become one ExportError
            raise _export_error(exc, opset) from exc
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(
    module: nn.Module, contract: VisionContract, sample: torch.Tensor, opset: int
) -> Any:
    if opset < 18:
        raise ExportError(f"the dynamo exporter needs opset >= 18 (got {opset})")
    if sample.shape[0] < 2:  # torch.export specialises a batch of 1
        sample = sample.expand(2, *sample.shape[1:]).contiguous()
    batch = torch.export.Dim(BATCH_AXIS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
        try:
            program = torch.onnx.export(
                module,
                (sample,),
                dynamo=True,
                opset_version=opset,
                input_names=[contract.input_name],
                output_names=contract.output_names,
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; all become one ExportError
            raise _export_error(exc, opset) from exc
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    return program.model_proto  # initializers inline: serialised, it is one file


def _export_error(exc: Exception, opset: int) -> ExportError:
    text = str(exc)
    found = re.search(r"operator '?([A-Za-z_][\w.]*::[\w.]+)'?", text) or re.search(
        r"'([a-z_]+::[\w.]+)'", text
    )
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    if found:
        return ExportError(
            f"cannot export to ONNX: operator {found.group(1)} is not supported at opset "
            f"{opset} ({first}); try another --opset or replace that operation in the model"
        )
    return ExportError(f"cannot export to ONNX at opset {opset}: {first}")


def _optimize(model: Any) -> Any:
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model)


def _check(model: Any, contract: VisionContract) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported ONNX model is invalid: {exc}") from exc
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [contract.input_name] or outputs != contract.output_names:
        raise ExportError(
            f"exported model has inputs {inputs} and outputs {outputs}; the contract expects "
            f"{[contract.input_name]} and {contract.output_names}"
        )
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    if first.dim_param != BATCH_AXIS:
        raise ExportError("the exported model's batch axis is not dynamic")


# --- parity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageParity:
    """One image's comparison: largest absolute difference and both top-1 classes."""

    source: str
    max_abs_diff: float
    torch_top1: int
    onnx_top1: int


@dataclass(frozen=True)
class ParityReport:
    n_images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    max_abs_bound: float
    min_agreement: float
    worst: tuple[ImageParity, ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.max_abs_bound and self.top1_agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "worst": [asdict(w) for w in self.worst]}

    def describe(self) -> str:
        worst = ", ".join(
            f"{w.source} (diff {w.max_abs_diff:.3g}, top-1 torch {w.torch_top1} / onnx "
            f"{w.onnx_top1})"
            for w in self.worst
        )
        return (
            f"max abs diff {self.max_abs_diff:.3g} (bound {self.max_abs_bound:.3g}), top-1 "
            f"agreement {self.top1_agreement:.4f} (bound {self.min_agreement:.4f}) over "
            f"{self.n_images} image(s); worst: {worst or 'none'}"
        )


def check_parity(
    module: nn.Module,
    model: bytes | Path,
    contract: VisionContract,
    images: Sequence[Source],
    *,
    names: Sequence[str] | None = None,
    max_abs: float = 1e-4,
    min_agreement: float = 1.0,
    batch_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    n_worst: int = 5,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Compare ``module`` with the ONNX ``model`` on real images through the contract.

    Raises :class:`ParityError` below the bounds (unless ``raise_on_failure`` is False).
    """
    if not images:
        raise ExportError("parity needs at least one evaluation image")
    labels = list(names) if names is not None else [_name(s, i) for i, s in enumerate(images)]
    session = _session(model)
    diffs: list[Array] = []
    agree: list[NDArray[np.bool_]] = []
    tops: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
    for start in range(0, len(images), batch_size):
        batch = preprocess_batch(
            images[start : start + batch_size], contract, max_pixels=max_pixels
        )
        want = _torch_outputs(module, batch.tensor)
        got = session.run(contract.output_names, {contract.input_name: batch.tensor})
        diffs.append(_per_image_diff(want, got))
        top_t, top_o = want[0].argmax(-1), np.asarray(got[0]).argmax(-1)
        agree.append((top_t == top_o).reshape(len(top_t), -1).all(axis=1))
        tops.append((top_t.reshape(len(top_t), -1)[:, 0], top_o.reshape(len(top_o), -1)[:, 0]))
    report = _report(labels, diffs, agree, tops, (max_abs, min_agreement), n_worst)
    if raise_on_failure and not report.passed:
        raise ParityError(report)
    return report


def _name(source: Source, index: int) -> str:
    return str(source) if isinstance(source, Path | str) else f"image[{index}]"


def _session(model: bytes | Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ExportError(f"ONNX Runtime cannot load the exported model: {exc}") from exc


@torch.inference_mode()
def _torch_outputs(module: nn.Module, tensor: NDArray[np.generic]) -> list[Array]:
    module.eval()
    device = next(module.parameters(), torch.empty(0)).device
    out = module(torch.from_numpy(np.ascontiguousarray(tensor)).to(device))
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    return [o.float().cpu().numpy() for o in outputs]


def _per_image_diff(want: list[Array], got: Sequence[Any]) -> Array:
    per_output = [
        np.abs(w - np.asarray(g, dtype=np.float32)).reshape(len(w), -1).max(axis=1)
        for w, g in zip(want, got, strict=True)
    ]
    worst: Array = np.max(np.stack(per_output), axis=0).astype(np.float32)
    return worst


def _report(
    labels: Sequence[str],
    diffs: list[Array],
    agree: list[NDArray[np.bool_]],
    tops: list[tuple[NDArray[np.int64], NDArray[np.int64]]],
    bounds: tuple[float, float],
    n_worst: int,
) -> ParityReport:
    diff = np.concatenate(diffs)
    agreed = np.concatenate(agree)
    top_t = np.concatenate([t for t, _ in tops])
    top_o = np.concatenate([o for _, o in tops])
    # disagreements first, then the largest differences
    order = sorted(range(len(diff)), key=lambda i: (bool(agreed[i]), -float(diff[i])))
    worst = tuple(
        ImageParity(labels[i], float(diff[i]), int(top_t[i]), int(top_o[i]))
        for i in order[:n_worst]
    )
    return ParityReport(
        n_images=len(diff),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=float(agreed.mean()),
        max_abs_bound=bounds[0],
        min_agreement=bounds[1],
        worst=worst,
    )
