"""An inference session: a verified bundle, its contract, one ONNX variant and ONNX Runtime.

ONNX Runtime does the inference; this module adds what it leaves to the caller: opening only a
checksum-verified bundle, choosing the variant (:mod:`visionyard.runtime.variants`), checking the
model against its contract once at open time (:mod:`visionyard.runtime.signature`), running
models with a fixed batch axis in chunks, and translating ORT's exceptions into domain errors.
``run`` holds no mutable state, and ORT's ``InferenceSession.run`` is thread-safe, so one
session serves concurrent callers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from visionyard.bundle.store import Bundle, load_bundle
from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.contract.postprocess import (
    Detection,
    ImageResult,
    Prediction,
    classify,
    detect_outputs,
    postprocess,
)
from visionyard.contract.preprocess import ImageMeta, PreprocessedBatch, Source, preprocess_batch
from visionyard.contract.schema import ClassificationDecoding, DetectionDecoding, VisionContract
from visionyard.errors import (
    BundleError,
    ConfigError,
    ContractError,
    InferenceError,
    InvalidInputError,
)
from visionyard.runtime.signature import (
    TensorMeta,
    check_signature,
    check_tensor,
    expected_input_shape,
)
from visionyard.runtime.variants import choose_variant, resolve_providers

Outputs = dict[str, np.ndarray]
_D = TypeVar("_D", ClassificationDecoding, DetectionDecoding)
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ")
_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
    ort_state.EPFail,
)
_RUN_ERRORS = (
    ort_state.Fail,
    ort_state.RuntimeException,
    ort_state.EPFail,
    ort_state.NotImplemented,
)


class InferenceSession:
    """Run one variant of a verified bundle; open with :meth:`open`."""

    def __init__(self, bundle: Bundle, variant: str, ort_session: Any) -> None:
        self._bundle = bundle
        self._variant = variant
        self._ort = ort_session
        self._inputs = tuple(TensorMeta.from_ort(a) for a in ort_session.get_inputs())
        self._outputs = tuple(TensorMeta.from_ort(a) for a in ort_session.get_outputs())
        self._image = check_signature(bundle.contract, self._inputs, self._outputs)

    @classmethod
    def open(
        cls,
        bundle_or_path: Bundle | Path | str,
        *,
        variant: str | None = None,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> InferenceSession:
        """Verify the bundle's checksums, choose a variant and load it into ONNX Runtime."""
        path = bundle_or_path.path if isinstance(bundle_or_path, Bundle) else bundle_or_path
        return cls.from_bundle(
            load_bundle(path), variant=variant, providers=providers,
            intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads,
        )  # fmt: skip

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        variant: str | None = None,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> InferenceSession:
        """Like :meth:`open` for a bundle ``load_bundle`` has just verified: no second hashing."""
        chosen_providers = resolve_providers(providers, ort.get_available_providers())
        chosen = choose_variant(bundle, chosen_providers, explicit=variant)
        options = session_options(intra_op_threads, inter_op_threads)
        return cls(bundle, chosen, _load(bundle, chosen, options, chosen_providers))

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def contract(self) -> VisionContract:
        return self._bundle.contract

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def providers(self) -> list[str]:
        """The execution providers ONNX Runtime actually uses, in priority order."""
        return list(self._ort.get_providers())

    @property
    def input_meta(self) -> TensorMeta:
        return self._image

    @property
    def output_meta(self) -> tuple[TensorMeta, ...]:
        return self._outputs

    @property
    def fixed_batch(self) -> int | None:
        """The model's batch size when its batch axis is not dynamic."""
        return self._image.fixed(0)

    def run(self, tensor: np.ndarray) -> Outputs:
        """Raw model outputs by name for a preprocessed batch (any batch size)."""
        check_tensor(tensor, self._image, self.contract)
        size = self.fixed_batch
        if size is None or size == tensor.shape[0]:
            return self._run_once(tensor)
        return _run_chunked(self._run_once, tensor, size)

    def infer_batch(self, batch: PreprocessedBatch) -> list[ImageResult]:
        """Run and decode a batch made by :func:`visionyard.contract.preprocess_batch`."""
        return self.decode(self.run(batch.tensor), batch.metas)

    def decode(self, outputs: Outputs, metas: Sequence[ImageMeta]) -> list[ImageResult]:
        """Contract decoding of raw outputs (detections in original image coordinates)."""
        return postprocess(outputs, self.contract, metas)

    def preprocess(
        self, sources: Sequence[Source], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> PreprocessedBatch:
        """The contract's preprocessing (encoded bytes, paths or PIL images)."""
        return preprocess_batch(sources, self.contract, max_pixels=max_pixels)

    def predict_images(
        self, sources: Sequence[Source], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[ImageResult]:
        """Images in, one decoded :class:`ImageResult` per image out."""
        return self.infer_batch(self.preprocess(sources, max_pixels=max_pixels))

    def classify(
        self, sources: Sequence[Source], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[list[Prediction]]:
        """The top-k predictions per image, best first (classifiers only)."""
        decoding = self._decoding(ClassificationDecoding)
        outputs = self.run(self.preprocess(sources, max_pixels=max_pixels).tensor)
        return classify(outputs[decoding.output], self.contract)

    def detect(
        self, sources: Sequence[Source], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[list[Detection]]:
        """Detections per image in original image pixels (detectors only)."""
        self._decoding(DetectionDecoding)
        batch = self.preprocess(sources, max_pixels=max_pixels)
        return detect_outputs(self.run(batch.tensor), self.contract, batch.metas)

    def dummy_input(self, batch_size: int = 1, *, seed: int = 0) -> np.ndarray:
        """A random tensor the model takes (warm-up, latency measurement)."""
        shape = expected_input_shape(self.contract, batch_size)
        values = np.random.default_rng(seed).random(shape, dtype=np.float32)
        dtype = np.dtype(self._image.dtype)
        return (values * 255).astype(dtype) if dtype == np.uint8 else values.astype(dtype)

    def _decoding(self, kind: type[_D]) -> _D:
        decoding = self.contract.decoding
        if not isinstance(decoding, kind):
            wanted = kind.model_fields["kind"].default
            raise ContractError("task", f"this is a {self.contract.task} model, not {wanted}")
        return decoding

    def _run_once(self, tensor: np.ndarray) -> Outputs:
        names = [o.name for o in self._outputs]
        try:
            values = self._ort.run(names, {self._image.name: tensor})
        except ort_state.InvalidArgument as exc:
            raise InvalidInputError(_reason(exc)) from exc
        except _RUN_ERRORS as exc:
            raise InferenceError(
                f"model {self._variant!r} of {self._bundle.path} failed: {_reason(exc)}"
            ) from exc
        return dict(zip(names, values, strict=True))

    def __repr__(self) -> str:
        return (
            f"InferenceSession({str(self._bundle.path)!r}, variant={self._variant!r}, "
            f"providers={self.providers})"
        )


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> Any:
    """Explicit ORT options: thread counts, full graph optimisation, sequential execution.

    A session with an intra-op thread pool (``intra_op_threads`` not 1) stops its threads'
    spinning when a run returns: by default they spin on their cores for a while after it, and
    what the caller does between runs (decoding the next image, answering on the event loop)
    then waits for a core; measured on 2 cores, a lone request's hand-over to the server's
    worker took ~1 ms with spinning and 0.1 ms without. Spinning during a run is kept. The
    price: a lone FP32 run takes ~6-9 % longer than with spinning left on, but left on, the
    pool's thread burns 50-70 ms of a core after every run (``bench/probe_spinning.py``)."""
    if intra_op_threads < 0 or inter_op_threads < 0:
        raise ConfigError("ONNX Runtime thread counts must be >= 0 (0 lets ONNX Runtime decide)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if intra_op_threads != 1:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def _load(bundle: Bundle, variant: str, options: Any, providers: list[str]) -> Any:
    model = bundle.model_path(variant)
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=providers)
    except _LOAD_ERRORS as exc:
        raise BundleError(
            bundle.path,
            f"variant {variant!r} ({bundle.variants[variant]}) cannot be loaded by "
            f"ONNX Runtime: {_reason(exc)}",
        ) from exc


def _run_chunked(run_once: Any, tensor: np.ndarray, size: int) -> Outputs:
    """Run a fixed-batch model over any batch: chunks of ``size``, the last one zero-padded."""
    count = tensor.shape[0]
    parts: list[Outputs] = []
    for start in range(0, count, size):
        chunk = tensor[start : start + size]
        real = chunk.shape[0]
        if real < size:
            pad = np.zeros((size - real, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        parts.append({k: v[:real] for k, v in run_once(chunk).items()})
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _reason(exc: BaseException) -> str:
    """ORT's message without its ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefix."""
    text = _ORT_PREFIX.sub("", str(exc).strip())
    return text or type(exc).__name__
