"""Capture of hard images: which images to keep (:class:`CapturePolicy`) and a background writer
that stores them as a dataset folder (:class:`CaptureWriter`; the layout and the sidecar are
described in :mod:`visionyard.data.captures`, which lists and exports them).

The request path only calls :meth:`CaptureWriter.offer`: a rate-limit check (a token bucket of
``max_per_minute``) and a ``put_nowait`` on a bounded queue. It never waits: a full queue, an
exhausted rate, a full quota or a failed write drops the image and counts it in
``visionyard_capture_dropped_total{model,reason}``. A write that fails (unwritable folder, full
disk) is logged once per reason, not once per request. Each image is written to a temporary
name and renamed, the sidecar last, so a reader never sees half a capture.
Written by hand: no library offers a bounded, rate-limited, never-blocking capture writer.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from visionyard.data.captures import SIDECAR, day_folder, safe_name
from visionyard.serving.metrics import MonitorMetrics
from visionyard.settings import CaptureSettings

log = logging.getLogger("visionyard.serving")
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
DROP_REASONS = ("queue_full", "rate_limit", "quota", "write_error")
_CLOSE = object()


@dataclass(frozen=True)
class CaptureJob:
    """One image to keep: where it came from, why, what the model answered, its bytes."""

    model: str
    version: str
    request_id: str
    index: int
    data: bytes
    encoding: str
    reasons: tuple[str, ...]
    answer: dict[str, Any]
    when: datetime = field(default_factory=lambda: datetime.now(UTC))

    def stem(self) -> str:
        return f"{safe_name(self.request_id)}-{self.index}"

    def sidecar(self, file: str) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "model": self.model, "version": self.version,
            "index": self.index, "file": file, "bytes": len(self.data),
            "reasons": list(self.reasons), "time": self.when.isoformat(), **self.answer,
        }  # fmt: skip


class CapturePolicy:
    """Which images to keep: top-1 confidence below ``min_confidence``, top-1 minus top-2 below
    ``max_margin``, and a ``sample_rate`` share of everything."""

    def __init__(self, settings: CaptureSettings, rng: random.Random | None = None) -> None:
        self.min_confidence = settings.min_confidence
        self.max_margin = settings.max_margin
        self.sample_rate = settings.sample_rate
        self._rng = rng or random.Random()

    def reasons(self, confidence: float | None, margin: float | None) -> tuple[str, ...]:
        found = []
        if confidence is not None and confidence < self.min_confidence:
            found.append("low_confidence")
        if margin is not None and margin < self.max_margin:
            found.append("low_margin")
        if self.sample_rate > 0 and self._rng.random() < self.sample_rate:
            found.append("sampled")
        return tuple(found)


class RateLimit:
    """A token bucket: ``per_minute`` tokens, refilled continuously; thread-safe."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = float(per_minute)
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


Write = Callable[[Path, CaptureJob], int]


class CaptureWriter:
    """Stores :class:`CaptureJob` s under ``settings.dir`` on its own thread (see the module
    docstring); :meth:`start`, :meth:`offer` from any thread, :meth:`close`."""

    def __init__(
        self,
        settings: CaptureSettings,
        metrics: MonitorMetrics,
        *,
        write: Write | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.dir is None:
            raise ValueError("capture needs monitor.capture.dir")
        self.root = Path(settings.dir)
        self.max_bytes = settings.max_bytes
        self._metrics = metrics
        self._write = write or write_capture
        self._rate = RateLimit(settings.max_per_minute, clock)
        self._queue: queue.Queue[CaptureJob | object] = queue.Queue(settings.queue_size)
        self._used: int | None = None
        self._logged: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="vy-capture", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, job: CaptureJob) -> bool:
        """Queue ``job`` for writing, or drop it (counted); never blocks."""
        if not self._rate.take():
            return self._drop(job.model, "rate_limit")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return self._drop(job.model, "queue_full")
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), then stop the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_CLOSE, timeout=timeout)
        except queue.Full:
            log.warning("capture writer did not drain its queue; captures dropped at shutdown")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while (job := self._queue.get()) is not _CLOSE:
            if isinstance(job, CaptureJob):
                self._store(job)

    def _store(self, job: CaptureJob) -> None:
        used = self._usage()
        if used + len(job.data) > self.max_bytes:
            self._once("quota", f"capture quota of {self.max_bytes} bytes reached in {self.root}")
            self._drop(job.model, "quota")
            return
        try:
            written = self._write(self.root, job)
        except OSError as exc:
            self._once("write_error", f"cannot write captures to {self.root}: {exc}")
            self._drop(job.model, "write_error")
            return
        self._used = used + written
        self._metrics.captured.labels(job.model).inc()

    def _usage(self) -> int:
        """Bytes under the capture folder (scanned once, then counted as written)."""
        if self._used is None:
            self._used = _folder_bytes(self.root)
        return self._used

    def _drop(self, model: str, reason: str) -> bool:
        self._metrics.capture_dropped.labels(model, reason).inc()
        return False

    def _once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.error(message + " (logged once; drops are counted in "
                      "visionyard_capture_dropped_total)")  # fmt: skip


def write_capture(root: Path, job: CaptureJob) -> int:
    """Write the image, then its sidecar; returns the bytes written."""
    folder = root / safe_name(job.model) / safe_name(job.version) / day_folder(job.when)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{job.stem()}.{EXTENSIONS.get(job.encoding, 'bin')}"
    _atomic(folder / name, job.data)
    sidecar = json.dumps(job.sidecar(name), indent=1).encode()
    _atomic(folder / f"{job.stem()}{SIDECAR}", sidecar)
    return len(job.data) + len(sidecar)


def _atomic(path: Path, data: bytes) -> None:
    scratch = path.with_name(f".{path.name}.tmp")
    try:
        scratch.write_bytes(data)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def _folder_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total
