"""Triton's per-model inference statistics (``GET /v2/models/stats``, gRPC ``ModelStatistics``).

Each served version counts its own (a version's statistics start at zero when it is loaded and
go with it, as Triton's do), for both protocols, in the data plane and the batcher:

- ``inference_count``: images (batch rows) inferred by successful requests;
  ``execution_count``: model executions (batches), each also in ``batch_stats`` by its size;
- ``inference_stats.success`` / ``fail``: requests admitted to the version and their whole
  time in the server; ``queue``, ``compute_input`` (decoding and preprocessing),
  ``compute_infer`` and ``compute_output`` (output decoding): per successful request;
- ``last_inference``: milliseconds since the epoch of the last request.

Durations are cumulative nanoseconds with a count, Triton's ``StatisticDuration``. The JSON is
Triton's (its proto field names); the gRPC adapter parses it into the protobuf message.
Written by hand: Triton's statistics are a wire format, not something a metrics library keeps
(Prometheus histograms in :mod:`visionyard.serving.metrics` are the monitoring view).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionyard.serving.batching import Executed
from visionyard.serving.errors import ModelUnavailableError

if TYPE_CHECKING:
    from visionyard.serving.pool import ModelPool
    from visionyard.serving.types import Timings

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
BATCH_STAGES = ("compute_input", "compute_infer", "compute_output")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += max(0, round(seconds * 1e9))

    def json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class ModelStats:
    """One version's statistics; requests record from the event loop, batches from workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference = 0
        self.stages = {stage: Duration() for stage in STAGES}
        self.batches: dict[int, dict[str, Duration]] = {}

    def executed(self, batch: Executed) -> None:
        """A batch ran (called on a batcher worker)."""
        with self._lock:
            self.execution_count += 1
            stages = self.batches.setdefault(
                batch.batch_size, {stage: Duration() for stage in BATCH_STAGES}
            )
            stages["compute_input"].add(batch.input_s)
            stages["compute_infer"].add(batch.infer_s)
            stages["compute_output"].add(batch.output_s)

    def succeeded(self, rows: int, timings: Timings, total_s: float) -> None:
        with self._lock:
            self.inference_count += rows
            self.last_inference = _now_ms()
            self.stages["success"].add(total_s)
            self.stages["queue"].add(timings.queue)
            self.stages["compute_input"].add(timings.preprocess)
            self.stages["compute_infer"].add(timings.inference)
            self.stages["compute_output"].add(timings.output)

    def failed(self, total_s: float) -> None:
        with self._lock:
            self.last_inference = _now_ms()
            self.stages["fail"].add(total_s)

    def json(self, name: str, version: str) -> dict[str, Any]:
        """Triton's ``ModelStatistics`` as JSON (its field names)."""
        with self._lock:
            stats = {stage: self.stages[stage].json() for stage in STAGES}
            zero = Duration().json()
            batches = [
                {"batch_size": size, **{k: v.json() for k, v in stages.items()}}
                for size, stages in sorted(self.batches.items())
            ]
            return {
                "name": name,
                "version": version,
                "last_inference": self.last_inference,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {**stats, "cache_hit": zero, "cache_miss": zero},
                "batch_stats": batches,
            }


def model_statistics(
    pool: ModelPool, name: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """``{"model_stats": [...]}`` for every served model, or for ``name`` (and ``version``).

    An unknown model or version is ``not_found``; a known model with no version serving is
    ``serving.unavailable`` when named, and left out of the list of all models."""
    if name is None:
        rows = [_row(pool, n) for n in pool.names if pool.entry(n).current is not None]
        return {"model_stats": rows}
    entry = pool.entry(name)  # unknown model -> NotFoundError
    if entry.current is None and not version:
        raise ModelUnavailableError(name, entry.state, entry.last_error or "")
    model = pool.current(name, version)  # another version -> NotFoundError
    return {"model_stats": [model.stats.json(name, model.version)]}


def _row(pool: ModelPool, name: str) -> dict[str, Any]:
    model = pool.current(name)
    return model.stats.json(name, model.version)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
