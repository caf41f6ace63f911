"""Model latency and throughput of an inference session, model time alone.

Timing covers :meth:`InferenceSession.run` on a ready tensor (no image decoding, no
preprocessing), after warm-up runs, over a fixed number of iterations, so two variants measured
on the same machine compare fairly. Percentiles are numpy's linear interpolation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict

from visionyard.runtime.session import InferenceSession

Clock = Callable[[], float]


class LatencyReport(BaseModel):
    """Batch-1 latency percentiles (ms) and images/second at ``throughput_batch_size``."""

    model_config = ConfigDict(frozen=True)

    variant: str
    providers: list[str]
    warmup: int
    iterations: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    throughput_batch_size: int
    throughput_iterations: int
    throughput_images_per_s: float

    def metrics(self) -> dict[str, float]:
        """Flat name -> value, for tracking."""
        return {
            "latency_p50_ms": self.p50_ms,
            "latency_p90_ms": self.p90_ms,
            "throughput_images_per_s": self.throughput_images_per_s,
        }


def measure_latency(
    session: InferenceSession,
    *,
    warmup: int = 5,
    iterations: int = 50,
    throughput_batch_size: int = 16,
    throughput_iterations: int = 10,
    clock: Clock = time.perf_counter,
) -> LatencyReport:
    """Time ``session.run`` at batch 1 and at ``throughput_batch_size``."""
    if min(iterations, throughput_iterations, throughput_batch_size) < 1 or warmup < 0:
        raise ValueError("iterations and batch size must be >= 1, warmup >= 0")
    single = session.dummy_input(1)
    batch = session.dummy_input(throughput_batch_size)
    for _ in range(warmup):
        session.run(single)
        session.run(batch)
    times = np.array([_timed(session, single, clock) for _ in range(iterations)]) * 1000.0
    total = sum(_timed(session, batch, clock) for _ in range(throughput_iterations))
    return LatencyReport(
        variant=session.variant,
        providers=session.providers,
        warmup=warmup,
        iterations=iterations,
        p50_ms=float(np.percentile(times, 50)),
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(times.mean()),
        throughput_batch_size=throughput_batch_size,
        throughput_iterations=throughput_iterations,
        throughput_images_per_s=throughput_batch_size * throughput_iterations / max(total, 1e-9),
    )


def _timed(session: InferenceSession, tensor: np.ndarray, clock: Clock) -> float:
    start = clock()
    session.run(tensor)
    return clock() - start
