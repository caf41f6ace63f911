"""Response tensors: the model's raw outputs plus the contract's decoded outputs.

Classification models add ``top_labels`` (BYTES ``[N, k]``), ``top_scores`` (FP32) and
``top_indices`` (INT64). Detection models add ``detections`` (BYTES ``[N]``, one JSON array of
``{"box": [x1, y1, x2, y2], "score", "index", "label"}`` per image, boxes in ORIGINAL image
pixels), and the same as padded tensors: ``detection_boxes`` FP32 ``[N, D, 4]``,
``detection_scores`` FP32 ``[N, D]``, ``detection_classes`` INT64 ``[N, D]`` (-1 pads) and
``num_detections`` INT64 ``[N]``.

The classification extension, as Triton defines it: asking for an output with the parameter
``classification: k`` returns BYTES ``[N, k]`` strings ``"<value>:<index>:<label>"``, the k
largest values of that output tensor itself (a classifier's logits stay logits), best first;
the label is left out when the output has no label per class. With the request parameter
:data:`PROBABILITIES` (``"classification_probabilities": true``) the value is the class's
probability instead (the contract's softmax of logits), as visionyard answered before.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from visionyard.contract.postprocess import ImageResult, Prediction, classify
from visionyard.contract.preprocess import ImageMeta
from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.errors import InvalidInputError
from visionyard.runtime.session import InferenceSession
from visionyard.serving.codec import datatype_of, json_number, object_array
from visionyard.serving.types import RequestedOutput, Tensor, TensorSpec

Outputs = dict[str, np.ndarray]
PROBABILITIES = "classification_probabilities"
Builder = Callable[[list[ImageResult]], np.ndarray]
CLASSIFICATION_OUTPUTS = ("top_labels", "top_scores", "top_indices")
DETECTION_OUTPUTS = (
    "detections",
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "num_detections",
)


def output_specs(session: InferenceSession) -> list[TensorSpec]:
    """Raw model outputs, then the decoded ones; a raw output keeps its name (a post-NMS
    detector may call its tensors ``detection_boxes`` ...) and hides the decoded namesake."""
    raw = [
        TensorSpec(
            o.name, datatype_of(o.dtype), tuple(o.fixed(i) or -1 for i in range(len(o.shape)))
        )
        for o in session.output_meta
    ]
    contract = session.contract
    if isinstance(contract.decoding, ClassificationDecoding):
        k = min(contract.decoding.top_k, len(contract.labels))
        decoded = [
            TensorSpec("top_labels", "BYTES", (-1, k)),
            TensorSpec("top_scores", "FP32", (-1, k)),
            TensorSpec("top_indices", "INT64", (-1, k)),
        ]
    else:
        decoded = [
            TensorSpec("detections", "BYTES", (-1,)),
            TensorSpec("detection_boxes", "FP32", (-1, -1, 4)),
            TensorSpec("detection_scores", "FP32", (-1, -1)),
            TensorSpec("detection_classes", "INT64", (-1, -1)),
            TensorSpec("num_detections", "INT64", (-1,)),
        ]
    return raw + [spec for spec in decoded if spec.name not in {r.name for r in raw}]


def check_outputs(specs: Sequence[TensorSpec], requested: Sequence[RequestedOutput]) -> None:
    """Refuse unknown output names (before any work is done)."""
    known = [spec.name for spec in specs]
    for item in requested:
        if item.name not in known:
            raise InvalidInputError(f"unknown output {item.name!r}; the model has {known}")


def build_outputs(
    session: InferenceSession,
    specs: Sequence[TensorSpec],
    raw: Outputs,
    metas: list[ImageMeta],
    requested: Sequence[RequestedOutput],
    *,
    probabilities: bool = False,
) -> list[Tensor]:
    """The requested outputs (all of them when none are named; names checked beforehand by
    :func:`check_outputs`, on the event loop, before any work is queued); ``probabilities``:
    the classification extension's value is a probability, not the tensor's value."""
    wanted = list(requested) or [RequestedOutput(spec.name) for spec in specs]
    results: list[ImageResult] | None = None
    tensors = []
    for item in wanted:
        if item.classification:
            tensors.append(_classification(session.contract, raw, item, probabilities))
        elif item.name in raw:
            tensors.append(_tensor(item.name, raw[item.name]))
        else:
            results = results if results is not None else decode_once(session, raw, metas)
            tensors.append(_tensor(item.name, _DECODED[item.name](results)))
    return tensors


_last_decoding = threading.local()


def decode_once(
    session: InferenceSession, raw: Outputs, metas: list[ImageMeta]
) -> list[ImageResult]:
    """The contract's decoding (a detector's NMS included) of one request's outputs, run once
    for all of the request's readers: its response tensors, the ``:predict`` results and the
    monitoring records. They run one after another on the worker thread that ran the request,
    on the same ``raw`` and ``metas`` objects; the thread's last decoding is reused for them
    (held by strong reference and compared by identity, so another request's outputs can never
    match it)."""
    last = getattr(_last_decoding, "value", None)
    if last is not None and last[0] is raw and last[1] is metas and last[2] is session:
        results: list[ImageResult] = last[3]
        return results
    results = session.decode(raw, metas)
    _last_decoding.value = (raw, metas, session, results)
    return results


def _tensor(name: str, array: np.ndarray) -> Tensor:
    return Tensor(name, datatype_of(array.dtype), tuple(array.shape), array)


def classification_probabilities(parameters: Mapping[str, Any]) -> bool:
    """The request parameter :data:`PROBABILITIES` (a boolean, default false)."""
    value = parameters.get(PROBABILITIES, False)
    if not isinstance(value, bool):
        raise InvalidInputError(f"parameter {PROBABILITIES!r} must be true or false")
    return value


def _classification(
    contract: VisionContract, raw: Outputs, item: RequestedOutput, probabilities: bool
) -> Tensor:
    decoding = contract.decoding
    if not isinstance(decoding, ClassificationDecoding):
        raise InvalidInputError("the classification extension needs a classification model")
    if item.classification < 1:
        raise InvalidInputError(f"classification count must be >= 1, got {item.classification}")
    scores = raw.get(item.name, raw[decoding.output])
    if probabilities:
        predictions = classify(scores, contract, top_k=item.classification)
    else:
        predictions = _top_values(scores, contract.labels, item.classification)
    strings = [[_triton(p) for p in row] for row in predictions]
    array = object_array([s.encode() for row in strings for s in row])
    return _tensor(item.name, array.reshape(len(strings), -1))


def _triton(prediction: Prediction) -> str:
    """``value:index:label``, or ``value:index`` for an output without labels (Triton's)."""
    return (
        prediction.to_triton() if prediction.label else f"{prediction.score:f}:{prediction.index}"
    )


def _top_values(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[Prediction]]:
    """The k largest values per row, best first; a label only when there is one per value."""
    values = np.asarray(scores, np.float64).reshape(len(scores), -1)
    named = len(labels) == values.shape[1]
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return [
        [Prediction(int(i), labels[i] if named else "", float(row[i])) for i in best]
        for row, best in zip(values, order, strict=True)
    ]


def _top_labels(results: list[ImageResult]) -> np.ndarray:
    rows = [[p.label.encode() for p in r.predictions] for r in results]
    return object_array([x for row in rows for x in row]).reshape(len(rows), -1)


def _top_scores(results: list[ImageResult]) -> np.ndarray:
    return np.array([[p.score for p in r.predictions] for r in results], dtype=np.float32)


def _top_indices(results: list[ImageResult]) -> np.ndarray:
    return np.array([[p.index for p in r.predictions] for r in results], dtype=np.int64)


def _detections(results: list[ImageResult]) -> np.ndarray:
    return object_array([json.dumps(detections_json(r), allow_nan=False).encode() for r in results])


def detections_json(result: ImageResult) -> list[dict[str, object]]:
    return [
        {
            "box": [json_number(round(v, 3)) for v in d.box],
            "score": json_number(d.score),
            "index": d.index,
            "label": d.label,
        }
        for d in result.detections
    ]


def _padded(
    results: list[ImageResult],
    value: Callable[..., object],
    fill: float,
    tail: tuple[int, ...],
    dtype: str,
) -> np.ndarray:
    width = max((len(r.detections) for r in results), default=0)
    array = np.full((len(results), width, *tail), fill, dtype=dtype)
    for i, result in enumerate(results):
        for j, det in enumerate(result.detections):
            array[i, j] = value(det)
    return array


_DECODED: dict[str, Builder] = {
    "top_labels": _top_labels,
    "top_scores": _top_scores,
    "top_indices": _top_indices,
    "detections": _detections,
    "detection_boxes": lambda r: _padded(r, lambda d: d.box, 0.0, (4,), "float32"),
    "detection_scores": lambda r: _padded(r, lambda d: d.score, 0.0, (), "float32"),
    "detection_classes": lambda r: _padded(r, lambda d: d.index, -1, (), "int64"),
    "num_detections": lambda r: np.array([len(x.detections) for x in r], dtype=np.int64),
}
