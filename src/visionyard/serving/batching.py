"""Dynamic batching for one model version: queued requests run together on a few threads.

Written here rather than taken from a library because what matters on a CPU server is specific:
``workers`` inference threads (each with its own ONNX Runtime intra-op thread, so two workers on
two cores overlap instead of fighting), and NO added delay when idle. A worker takes whatever is
waiting, up to ``max_batch_size`` images; it waits up to ``max_queue_delay_s`` for more only while
another worker is busy (then the wait costs nothing: the cores are taken anyway). The queue's
bound is enforced by the model's admission counter (:meth:`LoadedModel.acquire`), before any
image is decoded, so an overloaded server refuses work early instead of growing latency.

The workers are plain threads, not event-loop tasks: a decode thread hands its tensor straight
to them (:meth:`Batcher.put`) and a worker wakes the event loop once, to resolve the caller's
future. A request thus costs the loop two wake-ups (arrival, answer) instead of four.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Outputs = dict[str, np.ndarray]
RunFn = Callable[[np.ndarray], Outputs]


@dataclass(frozen=True)
class BatchConfig:
    max_batch_size: int = 8
    max_queue_delay_s: float = 0.002
    workers: int = 2


@dataclass(frozen=True)
class BatchResult:
    outputs: Outputs
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass
class _Item:
    tensor: np.ndarray
    future: asyncio.Future[BatchResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float


class Batcher:
    """Queue tensors (``[n, ...]`` each) and run them in batches; :meth:`start` before use."""

    def __init__(
        self, run: RunFn, config: BatchConfig, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self._run = run
        self._config = config
        self._on_batch = on_batch or (lambda size: None)
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self._config.workers):
            thread = threading.Thread(target=self._worker, name=f"vy-infer-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def depth(self) -> int:
        """Requests waiting for a worker."""
        return len(self._items)

    async def submit(self, tensor: np.ndarray) -> BatchResult:
        """Queue one request's tensor and wait for its slice of the batch outputs."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        self.put(tensor, future, loop)
        return await future

    def put(
        self,
        tensor: np.ndarray,
        future: asyncio.Future[BatchResult],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Queue a tensor from any thread; ``future`` (of ``loop``) gets its result."""
        with self._cond:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._items.append(_Item(tensor, future, loop, time.perf_counter()))
            self._cond.notify()

    async def close(self) -> None:
        """Finish what is queued, then stop the worker threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _worker(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items) or self._closed)
            batch = self._take([])
            if not batch:
                return None
            if self._busy and self._config.max_queue_delay_s > 0 and _size(batch) < self._max:
                self._cond.wait(self._config.max_queue_delay_s)
                batch = self._take(batch)
            self._busy += 1
        return batch

    @property
    def _max(self) -> int:
        return self._config.max_batch_size

    def _take(self, batch: list[_Item]) -> list[_Item]:
        size = _size(batch)
        while self._items and (not batch or size + len(self._items[0].tensor) <= self._max):
            item = self._items.popleft()
            if item.future.done():  # the caller went away (cancelled)
                continue
            batch.append(item)
            size += len(item.tensor)
        return batch

    def _execute(self, batch: list[_Item]) -> None:
        tensors = [item.tensor for item in batch]
        tensor = tensors[0] if len(tensors) == 1 else np.concatenate(tensors)
        started = time.perf_counter()
        try:
            outputs = self._run(tensor)
        except Exception as exc:  # delivered to every caller of the batch
            _fail(batch, exc)
            return
        finally:
            with self._cond:
                self._busy -= 1
        self._on_batch(len(tensor))
        _deliver(batch, outputs, started, time.perf_counter() - started, len(tensor))


def _size(batch: list[_Item]) -> int:
    return sum(len(item.tensor) for item in batch)


def _fail(batch: list[_Item], exc: Exception) -> None:
    for item in batch:
        fail_threadsafe(item.loop, item.future, exc)


def _deliver(
    batch: list[_Item], outputs: Outputs, started: float, inference_s: float, size: int
) -> None:
    offset = 0
    for item in batch:
        count = len(item.tensor)
        part = {name: value[offset : offset + count] for name, value in outputs.items()}
        offset += count
        result = BatchResult(part, started - item.enqueued, inference_s, size)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            item.loop.call_soon_threadsafe(_set_result, item.future, result)


def fail_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[BatchResult], exc: Exception
) -> None:
    """Fail ``future`` (of ``loop``) from another thread."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        loop.call_soon_threadsafe(_set_exception, future, exc)


def _set_result(future: asyncio.Future[BatchResult], result: BatchResult) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[BatchResult], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
