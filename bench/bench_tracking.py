"""Benchmark: 10,000 metric points through visionyard's run API vs plain ``mlflow.log_metric``.

Both write to the same run on a fresh local SQLite store. Plain ``mlflow.log_metric`` costs a
database transaction per call (~4.6 ms here), so only ``--plain-calls`` of them are timed and
the total for all points is extrapolated (the output says so).

    .venv/bin/python bench/bench_tracking.py [--points 10000] [--plain-calls 500]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric

from visionyard.settings import Settings
from visionyard.tracking import TrackedRun, mlflow_globals, start_run

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--plain-calls", type=int, default=500)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vy-bench-") as tmp:
        settings = Settings(home=Path(tmp) / ".visionyard")
        with start_run("bench", settings=settings, run_name="bench") as run:
            ours = time_ours(run, args.points)
            floor_s = time_raw_batches(run, args.points)
            plain_s = time_plain(run, args.plain_calls)
    report(args.points, ours, floor_s, (args.plain_calls, plain_s))


def time_ours(run: TrackedRun, points: int) -> tuple[float, float, int]:
    """Seconds in the logging loop, seconds until every point is stored, log_batch calls."""
    calls = [0]
    real = run._client.log_batch

    def counting(*a: Any, **kw: Any) -> Any:
        calls[0] += bool(kw.get("metrics"))
        return real(*a, **kw)

    run._client.log_batch = counting  # type: ignore[method-assign]
    started = time.perf_counter()
    for step in range(points):
        run.log_metrics(step, {"ours/loss": 1.0 / (step + 1)})
    loop_s = time.perf_counter() - started
    run.flush()
    stored_s = time.perf_counter() - started
    run._client.log_batch = real  # type: ignore[method-assign]
    return loop_s, stored_s, calls[0]


def time_raw_batches(run: TrackedRun, points: int) -> float:
    """Seconds for MlflowClient.log_batch alone (1,000 points a call): the store's floor."""
    now = int(time.time() * 1000)
    metrics = [Metric("raw/loss", 1.0 / (s + 1), now, s) for s in range(points)]
    started = time.perf_counter()
    for start in range(0, points, 1000):
        run._client.log_batch(run.run_id, metrics=metrics[start : start + 1000], synchronous=True)
    return time.perf_counter() - started


def time_plain(run: TrackedRun, calls: int) -> float:
    """Seconds for ``calls`` plain ``mlflow.log_metric`` calls into the same run."""
    with mlflow_globals(run.config):
        started = time.perf_counter()
        for step in range(calls):
            mlflow.log_metric("plain/loss", 1.0 / (step + 1), step=step, run_id=run.run_id)
        return time.perf_counter() - started


def report(
    points: int, ours: tuple[float, float, int], floor_s: float, plain: tuple[int, float]
) -> None:
    loop_s, stored_s, batches = ours
    plain_calls, plain_s = plain
    per_call = plain_s / plain_calls
    plain_total = per_call * points
    print(f"metric points: {points:,} into one run on a local SQLite store")
    print(f"  visionyard run.log_metrics, time in the training loop: {loop_s:8.3f} s")
    print(
        f"  visionyard, until every point is stored (flush):       {stored_s:8.3f} s   "
        f"({stored_s / points * 1e6:.0f} us/point, {batches} log_batch calls)"
    )
    print(f"  (floor: MlflowClient.log_batch alone, same points:  {floor_s:8.3f} s)")
    print(
        f"  plain mlflow.log_metric, {points:,} calls:               {plain_total:8.3f} s   "
        f"EXTRAPOLATED from {plain_calls} timed calls ({plain_s:.3f} s, "
        f"{per_call * 1e3:.2f} ms/call)"
    )
    print(
        f"  ratio plain/ours: {plain_total / stored_s:.0f}x until stored, "
        f"{plain_total / loop_s:.0f}x in the loop"
    )
    for what, seconds in (("in the training loop", loop_s), ("until stored", stored_s)):
        verdict = "met" if seconds < TARGET_S else "NOT met"
        print(f"  target (ours under {TARGET_S:.0f} s, {what}): {verdict}")
    print(
        f"  durable time over MLflow's own log_batch floor: {stored_s / floor_s:.2f}x "
        "(the floor is MLflow's SQL store, which visionyard calls)"
    )


if __name__ == "__main__":
    main()
