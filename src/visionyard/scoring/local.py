"""The local engine: chunks of files scored on a thread pool, rows handed on in input order.

The layout is the in-process pipeline the server measured best on CPUs (see
``bench/bench_serving_load.py``, ``inprocess_best``): one ONNX Runtime session with ONE intra-op
thread, shared by as many threads as there are usable cores, each reading, decoding and
preprocessing its own chunk of ``batch_size`` files and running them as one batch. Decoding,
resizing and ORT release the GIL, so the threads overlap; ORT's ``run`` is thread-safe. The
caller gets every chunk's rows in input order (a bounded reorder window keeps at most
``2 x threads`` chunks in flight), so output files list images in the order they were found.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from visionyard.errors import ConfigError
from visionyard.runtime.session import InferenceSession
from visionyard.scoring.core import Row, Summary, score_paths

Progress = Callable[[int, int], None]
Sink = Callable[[list[Row]], None]


@dataclass(frozen=True)
class Plan:
    """How to cut the work: images per ORT run, threads (0: one per usable core), top-k."""

    batch_size: int = 8
    threads: int = 0
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.threads < 0:
            raise ConfigError("--batch-size must be >= 1 and --threads >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("--top-k must be >= 1")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def score_local(
    session: InferenceSession,
    paths: Sequence[Path],
    sink: Sink,
    plan: Plan,
    progress: Progress | None = None,
) -> Summary:
    """Score ``paths`` with ``session``; ``sink`` receives each chunk's rows in input order."""
    size = plan.batch_size
    chunks = [list(paths[i : i + size]) for i in range(0, len(paths), size)]
    threads = plan.threads or usable_cores()
    work = partial(score_paths, session, top_k=plan.top_k)
    started, done, failed = time.perf_counter(), 0, 0
    with ThreadPoolExecutor(threads, thread_name_prefix="vy-predict") as pool:
        for rows in in_order(pool, work, chunks, window=2 * threads):
            sink(rows)
            done += len(rows)
            failed += sum(row.error is not None for row in rows)
            if progress is not None:
                progress(done, len(paths))
    elapsed = time.perf_counter() - started
    return Summary(len(paths), failed, elapsed, session.variant, "local")


def in_order(
    pool: ThreadPoolExecutor,
    work: Callable[[list[Path]], list[Row]],
    chunks: Sequence[list[Path]],
    window: int,
) -> Iterator[list[Row]]:
    """Results of ``work`` over ``chunks`` in order, with at most ``window`` chunks submitted
    ahead; on an error the chunks not yet started are cancelled."""
    pending: deque[Future[list[Row]]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(work, chunk))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
