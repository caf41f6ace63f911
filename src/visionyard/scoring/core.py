"""Scoring one chunk of image files: read, decode, preprocess, run, decode -- one row per file.

This is the unit of work both engines share (the local engine runs chunks on threads, the Ray
engine inside actors), so a row means the same thing wherever it was made. Everything goes
through the server's runtime and contract (:class:`visionyard.runtime.InferenceSession`,
:func:`visionyard.contract.decode_for_contract` / :func:`preprocess_image`, ``classify`` /
``detect``): the pixels and labels are the ones the server would answer.

A file that cannot be read or decoded becomes a row with ``error`` set; the rest of its chunk
is still scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visionyard.contract.postprocess import classify, detect_outputs
from visionyard.contract.preprocess import ImageMeta, decode_for_contract, preprocess_image
from visionyard.contract.schema import ClassificationDecoding, DetectionDecoding
from visionyard.errors import ImageError
from visionyard.runtime.session import InferenceSession

Box = list[float]


@dataclass(frozen=True)
class Row:
    """One scored (or failed) file: top-k ``labels``/``scores`` best first, or detections
    (``labels``/``scores``/``boxes`` as xyxy original-image pixels); ``error`` when unreadable.
    """

    path: str
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    boxes: list[Box] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "labels": self.labels, "scores": self.scores}
        if self.boxes is not None:
            body["boxes"] = self.boxes
        body["error"] = self.error
        return body


@dataclass(frozen=True)
class Prepared:
    """The images of a chunk that decoded (tensors, metas and their positions) and the rest."""

    tensors: list[np.ndarray]
    metas: list[ImageMeta]
    positions: list[int]
    errors: dict[int, str]


def score_paths(
    session: InferenceSession,
    paths: Sequence[str | Path],
    top_k: int | None = None,
    names: Sequence[str] | None = None,
) -> list[Row]:
    """One row per path, in order; unreadable files are rows with ``error`` set. Rows carry
    ``names`` (default: the paths as given) as their ``path``."""
    shown = [str(p) for p in paths] if names is None else list(names)
    prepared = prepare(session, paths)
    rows: list[Row | None] = [None] * len(paths)
    for position, problem in prepared.errors.items():
        rows[position] = Row(shown[position], error=problem)
    if prepared.tensors:
        outputs = session.run(np.stack(prepared.tensors))
        found = decode_rows(session, outputs, prepared.metas, top_k)
        for position, (labels, scores, boxes) in zip(prepared.positions, found, strict=True):
            rows[position] = Row(shown[position], labels, scores, boxes)
    return [row for row in rows if row is not None]


def prepare(session: InferenceSession, paths: Sequence[str | Path]) -> Prepared:
    """Read, decode and preprocess each file by the contract; failures are kept by position."""
    contract = session.contract
    prepared = Prepared([], [], [], {})
    for position, path in enumerate(paths):
        try:
            tensor, meta = preprocess_image(decode_for_contract(path, contract), contract)
        except Exception as exc:  # one hostile file must never stop the other images
            prepared.errors[position] = describe(exc)
            continue
        prepared.tensors.append(tensor)
        prepared.metas.append(meta)
        prepared.positions.append(position)
    return prepared


Decoded = tuple[list[str], list[float], list[Box] | None]


def decode_rows(
    session: InferenceSession,
    outputs: dict[str, np.ndarray],
    metas: Sequence[ImageMeta],
    top_k: int | None,
) -> list[Decoded]:
    """Labels, scores (and boxes for detectors) per image, by the contract's decoding."""
    contract = session.contract
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        found = classify(outputs[decoding.output], contract, top_k)
        return [([p.label for p in preds], [p.score for p in preds], None) for preds in found]
    assert isinstance(decoding, DetectionDecoding)
    detections = detect_outputs(outputs, contract, metas)
    return [
        ([d.label for d in dets], [d.score for d in dets], [list(d.box) for d in dets])
        for dets in detections
    ]


def describe(exc: BaseException) -> str:
    """The error text of a failed file: the problem alone for image errors (the row names the
    file), else the exception's type and message."""
    if isinstance(exc, ImageError):
        return exc.problem
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class Summary:
    """What a scoring job did: files seen, how many failed, wall time, the variant it ran."""

    images: int
    failed: int
    seconds: float
    variant: str
    engine: str

    @property
    def scored(self) -> int:
        return self.images - self.failed

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0
