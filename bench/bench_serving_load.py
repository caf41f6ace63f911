"""Load generation and measurement helpers for bench_serving.py (closed and open loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

Call = Callable[[httpx.Client, int], bool]


def percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": float("nan"), "p99": float("nan")}
    ms = np.asarray(latencies) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def closed_loop(
    call: Call, clients: int, seconds: float, stop: threading.Event | None = None
) -> dict[str, Any]:
    """``clients`` threads, each sending its next request when the last one returns."""
    latencies: list[float] = []
    failures = [0]
    deadline = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = offset
            while time.perf_counter() < deadline and not (stop and stop.is_set()):
                began = time.perf_counter()
                ok = call(client, i)
                latencies.append(time.perf_counter() - began)
                failures[0] += 0 if ok else 1
                i += clients

    started = time.perf_counter()
    _run_threads(worker, clients)
    elapsed = time.perf_counter() - started
    return {"rate": len(latencies) / elapsed, "failures": failures[0], **percentiles(latencies)}


def open_loop(call: Call, rate: float, seconds: float, clients: int = 8) -> dict[str, Any]:
    """Requests at a fixed ``rate`` (spread over ``clients`` threads); latency per request."""
    latencies: list[float] = []
    start = time.perf_counter() + 0.1
    total = int(rate * seconds)

    def worker(offset: int) -> None:
        with httpx.Client(timeout=60) as client:
            for k in range(offset, total, clients):
                delay = start + k / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                call(client, k)
                latencies.append(time.perf_counter() - began)

    _run_threads(worker, clients)
    return {"rate": rate, **percentiles(latencies)}


def idle_latency(call: Call, count: int) -> dict[str, float]:
    latencies = []
    with httpx.Client(timeout=60) as client:
        for i in range(count):
            began = time.perf_counter()
            call(client, i)
            latencies.append(time.perf_counter() - began)
            time.sleep(0.01)
    return percentiles(latencies)


def inprocess_best(bundle: Path, images: list[bytes], seconds: float) -> dict[str, Any]:
    """The fastest in-process pipeline (decode + preprocess + ORT + decode) of a few layouts."""
    best: dict[str, Any] = {"rate": 0.0}
    for workers, intra in ((2, 1), (1, 2), (3, 1)):
        rate = _inprocess(bundle, images, seconds / 2, workers, intra)
        if rate > best["rate"]:
            best = {"rate": rate, "config": f"{workers} threads x {intra} ORT thread(s)"}
    return best


def _inprocess(
    bundle: Path, images: list[bytes], seconds: float, workers: int, intra: int
) -> float:
    from visionyard.contract.preprocess import decode_for_contract, preprocess_image
    from visionyard.runtime.session import InferenceSession

    session = InferenceSession.open(bundle, intra_op_threads=intra)
    contract = session.contract
    counts = [0] * workers
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        i = index
        while time.perf_counter() < deadline:
            tensor, meta = preprocess_image(
                decode_for_contract(images[i % len(images)], contract), contract
            )
            session.decode(session.run(tensor[np.newaxis]), [meta])
            counts[index] += 1
            i += workers

    started = time.perf_counter()
    _run_threads(worker, workers)
    return sum(counts) / (time.perf_counter() - started)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_threads(worker: Callable[[int], None], count: int) -> None:
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
