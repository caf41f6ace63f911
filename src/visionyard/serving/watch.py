"""One request's share of monitoring, run on the batcher worker that serves it.

A :class:`Watch` is made on the event loop when a request is queued (it only keeps references:
the request's encoded images and id). On the worker, :meth:`Watch.image` keeps each decoded
image as the worker decodes it and :meth:`Watch.finish` keeps the request's outputs and their
decoding (already done for the answer). Then, once the worker has handed the answers over
(the batch's ``after`` work, :mod:`visionyard.serving.batching`), :meth:`Watch.after` computes
the prediction statistics, hands one record per image to the version's window and offers the
hard images to the capture writer (a non-blocking call): a client waits for none of it
(measured: ~0.6 ms of a lone request's ~28 ms on 2 cores). Each step swallows its own failures
(logged once per version): monitoring never fails a request. A request that failed records
nothing.

An image's pixel statistics (brightness, contrast, sharpness) are not computed per request:
its record waits, with its thumbnail, in the version's :class:`PixelBacklog`. Once
:data:`PIXEL_BATCH` images have gathered, the ``vy-monitor`` thread is woken and computes them
together (:func:`visionyard.monitor.features.pixel_statistics` says why: per image, the numpy
calls' hand-overs of the interpreter lock cost the server far more than their arithmetic);
reading the window completes whatever waits, and a worker computes the backlog itself only
when that thread is behind (four batches waiting). Measured side by side on a 64x64 detector
(``bench/results/pixel_batches-2026-12-07-ab.txt``): batches computed by the worker served
1.05x the images/s of one image at a time, and by the monitor thread a further 1.03x.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from visionyard.contract.postprocess import ImageResult
from visionyard.contract.preprocess import ImageMeta
from visionyard.monitor import Record, SourceInfo, prediction_records, source_info
from visionyard.monitor.features import image_record, pixel_statistics, thumbnail
from visionyard.runtime.session import InferenceSession
from visionyard.serving.capture import CaptureJob, CapturePolicy, CaptureWriter
from visionyard.serving.outputs import decode_once

log = logging.getLogger("visionyard.serving")
TOP_DETECTIONS = 20
#: Images whose pixel statistics are computed together (their thumbnails: ~58 KB each).
PIXEL_BATCH = 32
#: Batches waiting past which the worker that adds one computes the backlog itself.
BEHIND_BATCHES = 4


@dataclass(frozen=True)
class Pending:
    """One image's record without its pixel statistics yet: what its encoded bytes said, its
    decoded size, its thumbnail, the prediction statistics and when it was served."""

    info: SourceInfo
    size: tuple[int, int]
    thumb: Image.Image
    prediction: Record
    at: float


class PixelBacklog:
    """Images waiting for their pixel statistics (see the module docstring); thread-safe."""

    def __init__(self, batch: int = PIXEL_BATCH) -> None:
        self.batch = batch
        self._items: list[Pending] = []
        self._lock = threading.Lock()

    def add(self, items: Sequence[Pending]) -> int:
        """Queue ``items``; how many wait now."""
        with self._lock:
            self._items.extend(items)
            return len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def take(self) -> list[Pending]:
        """Everything waiting (the window is about to be read)."""
        with self._lock:
            taken, self._items = self._items, []
        return taken


def complete(items: Sequence[Pending]) -> list[Record]:
    """The records of ``items``, their pixel statistics computed together."""
    pixels = pixel_statistics([item.thumb for item in items])
    return [
        image_record(item.info, item.size, stats).merge(item.prediction)
        for item, stats in zip(items, pixels, strict=True)
    ]


@dataclass
class WatchTarget:
    """What a watch reports to: the version's window (``observe``: the records ready, then
    those waiting for their pixel statistics) and the capture writer."""

    model: str
    version: str
    session: InferenceSession
    observe: Callable[[list[Record], list[Pending]], None]
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
        """Prediction statistics, the window, capture (worker thread, once the answer has
        gone); nothing for a request that failed."""
        pictures, self._pictures = self._pictures, {}
        if self._outputs is None:
            return
        raw, metas, results = self._outputs
        self._outputs = None
        try:
            infos: dict[int, SourceInfo] = {}
            for index in pictures:
                data = self.items[index] if self.items is not None else None
                infos[index] = source_info(data) if data is not None else SourceInfo()
            contract = self.target.session.contract
            predictions = prediction_records(raw, results, contract, metas)
            now = time.time()
            ready = [p for i, p in enumerate(predictions) if i not in pictures]
            waiting = [
                Pending(infos[i], size, small, predictions[i], now)
                for i, (small, size) in pictures.items()
            ]
            self.target.observe(ready, waiting)
            if self.target.writer is not None and self.items is not None:
                self._capture(predictions, results, infos)
        except Exception as exc:  # monitoring must not fail the request
            self.target.failed(exc)

    def _capture(
        self, records: list[Record], results: list[ImageResult], infos: dict[int, SourceInfo]
    ) -> None:
        target, items = self.target, self.items
        if target.writer is None or target.policy is None or items is None:
            return
        for index, (record, result) in enumerate(zip(records, results, strict=True)):
            confidence, margin = _confidence(record)
            reasons = target.policy.reasons(confidence, margin)
            if not reasons:
                continue
            found = infos.get(index)
            encoding = found.encoding if found else source_info(items[index]).encoding
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
