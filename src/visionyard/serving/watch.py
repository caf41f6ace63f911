"""One request's share of monitoring, run on the batcher worker that serves it.

A :class:`Watch` is made on the event loop when a request is queued (it only keeps references:
the request's encoded images and id). On the worker, :meth:`Watch.image` keeps each decoded
image as the worker decodes it and :meth:`Watch.finish` keeps the request's outputs and their
decoding (already done for the answer). Then, once the worker has handed the answers over
(the batch's ``after`` work, :mod:`visionyard.serving.batching`), :meth:`Watch.after` computes
the image statistics (about 0.3 ms for 640x480, :mod:`visionyard.monitor.features`) and the
prediction statistics, adds one record per image to the version's window and offers the hard
images to the capture writer (a non-blocking call): a client waits for none of it (measured:
~0.6 ms of a lone request's ~28 ms on 2 cores). Each step swallows its own failures (logged
once per version): monitoring never fails a request. A request that failed records nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from visionyard.contract.postprocess import ImageResult
from visionyard.contract.preprocess import ImageMeta
from visionyard.monitor import Record, SourceInfo, image_features, prediction_records, source_info
from visionyard.monitor.features import thumbnail
from visionyard.runtime.session import InferenceSession
from visionyard.serving.capture import CaptureJob, CapturePolicy, CaptureWriter
from visionyard.serving.outputs import decode_once

log = logging.getLogger("visionyard.serving")
TOP_DETECTIONS = 20


@dataclass
class WatchTarget:
    """What a watch reports to: the version's window (``observe``) and the capture writer."""

    model: str
    version: str
    session: InferenceSession
    observe: Callable[[list[Record]], None]
    failed: Callable[[Exception], None]
    writer: CaptureWriter | None = None
    policy: CapturePolicy | None = None


@dataclass
class Watch:
    """Monitoring of one request (see the module docstring)."""

    target: WatchTarget
    request_id: str
    items: Sequence[bytes] | None
    pixels: bool = True
    _pictures: dict[int, tuple[Image.Image, tuple[int, int]]] = field(default_factory=dict)
    _images: dict[int, tuple[Record, SourceInfo]] = field(default_factory=dict)
    _outputs: tuple[dict[str, np.ndarray], list[ImageMeta], list[ImageResult]] | None = None

    def image(self, index: int, image: Image.Image) -> None:
        """Keep a thumbnail of the request's ``index``-th image, just decoded (worker thread,
        while its pixels are in the CPU's caches: ~0.05 ms for 640x480, where reading them
        again after inference would miss); nothing when this request is not sampled for image
        statistics (``pixels``)."""
        if not self.pixels:
            return
        try:
            self._pictures[index] = thumbnail(image), image.size
        except Exception as exc:  # monitoring must not fail the request
            self.target.failed(exc)

    def finish(self, raw: dict[str, np.ndarray], metas: list[ImageMeta]) -> None:
        """Keep the outputs and their decoding (worker thread, right after the answer's)."""
        try:
            self._outputs = raw, metas, decode_once(self.target.session, raw, metas)
        except Exception as exc:  # monitoring must not fail the request
            self.target.failed(exc)

    def after(self) -> None:
        """Image and prediction statistics, the window, capture (worker thread, once the
        answer has gone); nothing for a request that failed."""
        pictures, self._pictures = self._pictures, {}
        if self._outputs is None:
            return
        raw, metas, results = self._outputs
        self._outputs = None
        try:
            for index, (small, size) in pictures.items():
                data = self.items[index] if self.items is not None else None
                info = source_info(data) if data is not None else SourceInfo()
                self._images[index] = (image_features(small, info, size), info)
            contract = self.target.session.contract
            predictions = prediction_records(raw, results, contract, metas)
            records = [self._merged(i, p) for i, p in enumerate(predictions)]
            self.target.observe(records)
            if self.target.writer is not None and self.items is not None:
                self._capture(records, results)
        except Exception as exc:  # monitoring must not fail the request
            self.target.failed(exc)

    def _merged(self, index: int, prediction: Record) -> Record:
        found = self._images.get(index)
        return found[0].merge(prediction) if found else prediction

    def _capture(self, records: list[Record], results: list[ImageResult]) -> None:
        target, items = self.target, self.items
        if target.writer is None or target.policy is None or items is None:
            return
        for index, (record, result) in enumerate(zip(records, results, strict=True)):
            confidence, margin = _confidence(record)
            reasons = target.policy.reasons(confidence, margin)
            if not reasons:
                continue
            found = self._images.get(index)
            encoding = found[1].encoding if found else source_info(items[index]).encoding
            answer = {**_answer(result), "confidence": confidence, "margin": margin}
            job = CaptureJob(
                target.model, target.version, self.request_id, index, items[index], encoding,
                reasons, answer,
            )  # fmt: skip
            target.writer.offer(job)


def _confidence(record: Record) -> tuple[float | None, float | None]:
    """Top-1 confidence and margin (classifiers); a detector's best box score, no margin."""
    numbers = record.numbers
    if "confidence" in numbers:
        return numbers["confidence"][0], numbers["margin"][0]
    scores = numbers.get("score", ())
    return (max(scores) if scores else None), None


def _answer(result: ImageResult) -> dict[str, Any]:
    """What the model answered, for the sidecar: top-k, or the best detections."""
    if result.predictions:
        top = [{"label": p.label, "score": float(p.score)} for p in result.predictions]
        return {"predicted": top[0]["label"], "top_k": top}
    found = sorted(result.detections, key=lambda d: -d.score)[:TOP_DETECTIONS]
    boxes = [
        {"label": d.label, "score": float(d.score), "box": [float(v) for v in d.box]} for d in found
    ]
    return {"predicted": boxes[0]["label"] if boxes else None, "detections": boxes}
