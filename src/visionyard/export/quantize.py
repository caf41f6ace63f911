"""INT8 static quantization, calibrated on real images pushed through the vision contract.

ONNX Runtime does the quantization (``quant_pre_process`` for shape inference and graph
clean-up, then ``quantize_static``). What this module adds is the choice of settings measured
on x86 CPUs and the calibration data:

- QDQ format, activations **QUInt8**, weights **QInt8 per channel**. ORT's default (signed
  activations) runs slower than FP32 here, and dynamic quantization is 6-10x slower for CNNs.
- Weights in 7 bits (``reduce_range``): on x86 CPUs with AVX2/AVX-512 but no VNNI, ORT's
  U8S8 kernels add pairs of products in 16 bits and saturate. Measured on an AMD EPYC without
  VNNI: the colour test model's INT8 lost 20 accuracy points with 8-bit weights and none with
  7-bit ones. A variant is built once and may be served on any CPU, so it is built to be right
  on all of them.
- Calibration images are chosen deterministically (seeded) from a training or evaluation set,
  checked to be of the model's task and labels, or from any folder of images (no labels
  needed, :mod:`visionyard.export.images`), preprocessed by the ONE contract implementation,
  and summarised by a content digest that goes into the variant's report.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from visionyard.bundle.store import sha256_file
from visionyard.contract.preprocess import preprocess_batch
from visionyard.contract.schema import VisionContract
from visionyard.data.coco import CocoDataset
from visionyard.data.imagefolder import ImageFolderDataset
from visionyard.errors import DatasetError, ExportError, VisionyardError
from visionyard.evaluate.classification import check_labels
from visionyard.export.evaluation import check_task
from visionyard.export.images import ImageSet
from visionyard.export.reports import DataRef

CalibrationName = Literal["minmax", "percentile", "entropy"]
CalibrationSource = ImageFolderDataset | CocoDataset | ImageSet | Sequence[Path]
METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


@dataclass(frozen=True)
class CalibrationSet:
    """The chosen calibration images and their reference (digest, count, source, method)."""

    paths: tuple[Path, ...]
    ref: DataRef


class ContractCalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds ``quantize_static`` batches of contract-preprocessed images."""

    def __init__(self, paths: Sequence[Path], contract: VisionContract, batch_size: int) -> None:
        self._batches = _batches(paths, contract, batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _batches(
    paths: Sequence[Path], contract: VisionContract, size: int
) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(paths), size):
        batch = preprocess_batch(paths[start : start + size], contract)
        yield {contract.input_name: batch.tensor}


def select_calibration(
    source: CalibrationSource,
    contract: VisionContract,
    *,
    count: int,
    method: CalibrationName = "minmax",
    seed: int = 0,
) -> CalibrationSet:
    """Up to ``count`` images of ``source``, checked against the model's task and labels.

    The choice is seeded and, for an ImageFolder set, stratified: classes take turns, so a
    small calibration set still covers every class (a class missing from calibration gets its
    activations clipped by ranges measured on the others).
    """
    if method not in METHODS:
        raise ExportError(f"unknown calibration method {method!r} (use: {', '.join(METHODS)})")
    groups, kind = _source_groups(source, contract)
    total = sum(len(g) for g in groups)
    if count < 1 or total == 0:
        raise DatasetError(
            f"the calibration set is empty ({total} image(s), count {count}); give a "
            "training or evaluation set with images of the model's classes"
        )
    chosen = tuple(sorted(_take_turns(groups, count, seed)))
    unreadable = len(source.unreadable) if isinstance(source, ImageSet) else 0
    ref = DataRef(
        digest=calibration_digest(chosen), count=len(chosen), source=kind, method=method,
        unreadable=unreadable,
    )  # fmt: skip
    return CalibrationSet(chosen, ref)


def calibration_digest(paths: Sequence[Path]) -> str:
    """sha256 over the sorted content hashes of the images (location-independent)."""
    hashes = sorted(sha256_file(Path(p)) for p in paths)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def _take_turns(groups: Sequence[Sequence[Path]], count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    queues = [rng.sample(sorted(group), len(group)) for group in groups]
    chosen: list[Path] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def _source_groups(
    source: CalibrationSource, contract: VisionContract
) -> tuple[list[list[Path]], str]:
    """The images of ``source`` grouped by class (one group when classes are unknown)."""
    check_task(source, contract, "calibration")
    if isinstance(source, ImageFolderDataset):
        check_labels(source.classes, contract.labels, allow_subset=True)
        groups = [[s.path for s in source.samples if s.class_name == c] for c in source.classes]
        return groups, f"imagefolder:{source.root}"
    if isinstance(source, CocoDataset):
        check_labels(source.labels, contract.labels, allow_subset=True)
        return [[i.path for i in source.images]], f"coco:{source.annotation_file}"
    if isinstance(source, ImageSet):
        return [list(source.paths)], f"images:{source.root}"
    return [[Path(p) for p in source]], "images"


def quantize_int8(
    model: bytes,
    contract: VisionContract,
    calibration: CalibrationSet,
    *,
    batch_size: int = 8,
) -> bytes:
    """The INT8 QDQ model (activations QUInt8, weights QInt8 per channel) as bytes.

    The histogram methods (percentile, entropy) keep every calibration activation in memory
    and cannot stack batches of different sizes, so they read one image at a time.
    """
    method = calibration.ref.method or "minmax"
    size = batch_size if method == "minmax" else 1
    reader = ContractCalibrationReader(calibration.paths, contract, size)
    with tempfile.TemporaryDirectory(prefix="visionyard-int8-") as tmp:
        folder = Path(tmp)
        (folder / "fp32.onnx").write_bytes(model)
        _pre_process(folder / "fp32.onnx", folder / "pre.onnx")
        _quantize(folder / "pre.onnx", folder / "int8.onnx", reader, METHODS[method])
        return (folder / "int8.onnx").read_bytes()


def _pre_process(source: Path, target: Path) -> None:
    try:
        quant_pre_process(str(source), str(target))
    except Exception as exc:  # symbolic shape inference raises bare Exceptions
        raise ExportError(f"INT8 pre-processing (shape inference) failed: {exc}") from exc


def _quantize(source: Path, target: Path, reader: Any, method: CalibrationMethod) -> None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram collectors print()
            quantize_static(
                str(source),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                reduce_range=True,
            )
    except VisionyardError:  # e.g. an unreadable calibration image, raised by the reader
        raise
    except Exception as exc:  # the quantizer raises many untyped errors
        raise ExportError(f"INT8 quantization failed: {type(exc).__name__}: {exc}") from exc
