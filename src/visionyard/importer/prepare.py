"""From a source (ONNX file or torch factory + weights) to ONNX bytes + a checked contract.

Nothing here writes to the tracking store: every bad input is refused before a run exists.
torch is imported only on the torch path, so importing an ONNX file works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from visionyard.contract.schema import (
    ClassificationDecoding,
    DetectionDecoding,
    VisionContract,
    load_contract,
)
from visionyard.errors import ConfigError, DependencyMissingError
from visionyard.importer import checks
from visionyard.importer.contract_spec import ContractSpec, build_contract, with_labels
from visionyard.importer.labels import (
    Labels,
    check_unique,
    dedupe,
    generated_labels,
    labels_from_metadata,
    read_labels_file,
)
from visionyard.importer.onnx_source import load_onnx_source, model_facts
from visionyard.runtime.signature import (
    TensorMeta,
    check_output_names,
    check_signature,
    expected_input_shape,
)

if TYPE_CHECKING:
    from visionyard.export.onnx import ParityReport
    from visionyard.importer.torch_source import TorchSource


@dataclass(frozen=True)
class ModelSource:
    """``onnx`` alone, or ``factory`` (``module:attr``) + ``weights`` (+ keyword arguments)."""

    onnx: Path | None = None
    factory: str | None = None
    weights: Path | None = None
    factory_kwargs: Mapping[str, Any] = field(default_factory=dict)
    opset: int = 17

    @property
    def kind(self) -> str:
        return "onnx" if self.onnx is not None else "torch"

    @property
    def path(self) -> Path:
        path = self.onnx if self.onnx is not None else self.weights
        assert path is not None
        return path

    def check(self) -> None:
        if (self.onnx is None) == (self.factory is None):
            raise ConfigError(
                "give either --onnx FILE or --torch MODULE:FACTORY with --weights FILE"
            )
        if self.factory is not None and self.weights is None:
            raise ConfigError("--torch needs --weights FILE (safetensors or a state dict)")
        if self.onnx is not None and (self.weights is not None or self.factory_kwargs):
            raise ConfigError("--weights and --factory-arg go with --torch, not with --onnx")


@dataclass(frozen=True)
class LabelSpec:
    file: Path | None = None
    dedupe: bool = False


@dataclass(frozen=True)
class CheckSpec:
    """Parity bounds (torch sources), the parity images and the reference folder."""

    samples: Path | None = None
    reference: Path | None = None
    max_abs: float = 1e-3
    min_agreement: float = 1.0


@dataclass(frozen=True)
class Prepared:
    model_bytes: bytes
    contract: VisionContract
    labels_source: str
    parity: ParityReport | None = None
    reference: checks.ReferenceStats | None = None
    notes: tuple[str, ...] = ()


def prepare(
    source: ModelSource, spec: ContractSpec, labels: LabelSpec, check: CheckSpec
) -> Prepared:
    source.check()
    if source.onnx is not None:
        prepared = _prepare_onnx(source.onnx, spec, labels)
    else:
        prepared = _prepare_torch(source, spec, labels, check)
    if check.reference is None:
        return prepared
    images = checks.list_images(check.reference, "--reference")
    stats = checks.reference_stats(prepared.contract, images)
    return replace(prepared, reference=stats, notes=(*prepared.notes, *stats.warnings))


# --- ONNX -----------------------------------------------------------------------------------


def _prepare_onnx(path: Path, spec: ContractSpec, label_spec: LabelSpec) -> Prepared:
    src = load_onnx_source(path)
    provisional = build_contract(spec, model_facts(src), src.outputs)
    session = _ort_session(src.model_bytes, path)
    inputs = tuple(TensorMeta.from_ort(a) for a in session.get_inputs())
    outputs = tuple(TensorMeta.from_ort(a) for a in session.get_outputs())
    classes = _classes(session, provisional, inputs[0], {o.name: o for o in outputs})
    labels = resolve_labels(label_spec, spec, src.metadata, classes, path.name)
    contract = with_labels(provisional, labels.names)
    if classes is not None:
        checks.check_label_count(contract, classes, labels.source, scores_output(contract))
    check_signature(contract, inputs, outputs)
    notes = (*_size_notes(spec, contract), *_label_notes(labels))
    return Prepared(src.model_bytes, contract, labels.source, notes=notes)


def _size_notes(spec: ContractSpec, contract: VisionContract) -> tuple[str, ...]:
    """A note when the model fixes an input size other than its preset's."""
    if not spec.preset or "input_size" in spec.overrides.get("preprocessing", {}):
        return ()
    from visionyard.contract.presets import get_preset

    wanted = get_preset(spec.preset).contract().preprocessing.input_size
    have = contract.preprocessing.input_size
    if wanted == have:
        return ()
    return (
        f"the model fixes its input at {have.height}x{have.width}; preset {spec.preset!r} "
        f"says {wanted.height}x{wanted.width}: using the model's size",
    )


def _ort_session(data: bytes, path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own untyped errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"ONNX Runtime cannot load {path.name}: {first}") from exc


def scores_output(contract: VisionContract) -> str:
    """The output that holds the classes (scores, or class indices after NMS)."""
    axis = class_axis(contract)
    if axis is not None:
        return axis[0]
    assert isinstance(contract.decoding, DetectionDecoding)
    return str(contract.decoding.classes_output or contract.decoding.output)


def class_axis(contract: VisionContract) -> tuple[str, int, int] | None:
    """``(output, axis, leading rows)``: where an output's shape counts the classes (a YOLO
    tensor's axis 1 holds 4 box rows first); None for post-NMS outputs, which never say."""
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        return decoding.output, -1, 0
    if decoding.layout == "yolo":
        return str(decoding.output), 1, 4
    if decoding.layout in ("nms", "end2end"):
        return None
    return decoding.scores_output, -1, 0


def _classes(
    session: ort.InferenceSession,
    contract: VisionContract,
    image: TensorMeta,
    outputs: Mapping[str, TensorMeta],
) -> int | None:
    """The scored classes: from the output's fixed axis, else from one run on zeros."""
    check_output_names(contract, outputs)  # a missing output, a rank the layout cannot read
    axis = class_axis(contract)
    if axis is None:
        return None
    name, dim, rows = axis
    fixed = outputs[name].fixed(dim)
    if fixed is not None:
        return fixed - rows
    batch = image.fixed(0) or 1
    tensor = np.zeros(expected_input_shape(contract, batch), dtype=contract.preprocessing.dtype)
    try:
        result = session.run([name], {image.name: tensor})[0]
    except Exception as exc:  # onnxruntime's own untyped errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"the model fails on the contract's input {list(tensor.shape)}: {first}"
        ) from exc
    return int(np.asarray(result).shape[dim]) - rows


# --- labels ---------------------------------------------------------------------------------


def resolve_labels(
    label_spec: LabelSpec,
    spec: ContractSpec,
    metadata: Mapping[str, str],
    classes: int | None,
    where: str,
) -> Labels:
    """First of: labels file, contract file, model metadata, ``class_<i>`` (with a note)."""
    found: Labels | None = None
    if label_spec.file is not None:
        found = Labels(read_labels_file(label_spec.file), f"file:{label_spec.file.name}")
    elif spec.file is not None:
        found = Labels(load_contract(spec.file).labels, f"contract:{spec.file.name}")
    else:
        found = labels_from_metadata(metadata, where) or _generated(classes)
    names = dedupe(found.names) if label_spec.dedupe else found.names
    check_unique(names)
    return Labels(names, found.source)


def _generated(classes: int | None) -> Labels:
    if classes is None:
        raise ConfigError(
            "the model's outputs do not say how many classes it has (post-NMS outputs give one "
            "class index per box) and it carries no labels: give --labels FILE"
        )
    return generated_labels(classes)


def _label_notes(labels: Labels) -> tuple[str, ...]:
    if labels.source != "generated":
        return ()
    return (
        f"no labels given and none in the model: using class_0..class_{len(labels.names) - 1} "
        "(give --labels FILE)",
    )


# --- torch ----------------------------------------------------------------------------------


def _torch() -> Any:
    try:
        from visionyard.importer import torch_source
    except ImportError as exc:
        raise DependencyMissingError(package="torch", extra="torch") from exc
    return torch_source


def _prepare_torch(
    source: ModelSource, spec: ContractSpec, label_spec: LabelSpec, check: CheckSpec
) -> Prepared:
    ts = _torch()
    assert source.factory is not None
    assert source.weights is not None
    loaded: TorchSource = ts.load_torch_source(
        source.factory, source.factory_kwargs, source.weights
    )
    provisional = build_contract(spec, {})
    classes = ts.output_classes(loaded.module, provisional)
    labels = resolve_labels(label_spec, spec, loaded.metadata, classes, source.weights.name)
    contract = with_labels(provisional, labels.names)
    if classes is not None:
        checks.check_label_count(contract, classes, labels.source, scores_output(contract))
    model = ts.export(loaded, contract, source.opset)
    images, names = _parity_images(check)
    report = ts.parity(loaded, model, contract, images, names, (check.max_abs, check.min_agreement))
    return Prepared(model, contract, labels.source, report, notes=_label_notes(labels))


def _parity_images(check: CheckSpec) -> tuple[Sequence[Any], list[str]]:
    if check.samples is not None:
        paths = checks.list_images(check.samples, "--samples", most=32)
        return paths, [p.name for p in paths]
    generated = checks.generated_images()
    return generated, [f"generated[{i}]" for i in range(len(generated))]
