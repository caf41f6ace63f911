"""Dynamic batching for one model version: queued requests run together on a few threads.

Written here rather than taken from a library because what matters on a CPU server is specific:
``workers`` inference threads (each with its own ONNX Runtime intra-op thread, so two workers on
two cores overlap instead of fighting), and NO added delay when idle. A worker takes whatever is
waiting, up to ``max_batch_size`` images; it waits up to ``max_queue_delay_s`` for more only while
another worker is busy (then the wait costs nothing: the cores are taken anyway). The queue's
bound is enforced by the model's admission counter (:meth:`LoadedModel.acquire`), before any
image is decoded, so an overloaded server refuses work early instead of growing latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
        self._cond = asyncio.Condition()
        self._closed = False
        self._busy = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix="vy-infer")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._config.workers)]

    @property
    def depth(self) -> int:
        """Requests waiting for a worker."""
        return len(self._items)

    async def submit(self, tensor: np.ndarray) -> BatchResult:
        """Queue one request's tensor and wait for its slice of the batch outputs."""
        if self._closed:
            raise RuntimeError("batcher is closed")
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._items.append(_Item(tensor, future, time.perf_counter()))
        async with self._cond:
            self._cond.notify()
        return await future

    async def close(self) -> None:
        """Finish what is queued, stop the workers and release the threads."""
        self._closed = True
        async with self._cond:
            self._cond.notify_all()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False)

    async def _worker(self) -> None:
        while (batch := await self._next_batch()) is not None:
            await self._execute(batch)

    async def _next_batch(self) -> list[_Item] | None:
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items) or self._closed)
            batch = self._take([])
        if not batch:
            return None
        if self._busy and self._config.max_queue_delay_s > 0 and _size(batch) < self._max:
            await asyncio.sleep(self._config.max_queue_delay_s)
            batch = self._take(batch)
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

    async def _execute(self, batch: list[_Item]) -> None:
        tensors = [item.tensor for item in batch]
        tensor = tensors[0] if len(tensors) == 1 else np.concatenate(tensors)
        self._busy += 1
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self._run, tensor)
        except Exception as exc:  # delivered to every caller of the batch
            _fail(batch, exc)
            return
        finally:
            self._busy -= 1
        self._on_batch(len(tensor))
        _deliver(batch, outputs, started, time.perf_counter() - started, len(tensor))


def _size(batch: list[_Item]) -> int:
    return sum(len(item.tensor) for item in batch)


def _fail(batch: list[_Item], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _deliver(
    batch: list[_Item], outputs: Outputs, started: float, inference_s: float, size: int
) -> None:
    offset = 0
    for item in batch:
        count = len(item.tensor)
        part = {name: value[offset : offset + count] for name, value in outputs.items()}
        offset += count
        if not item.future.done():
            result = BatchResult(part, started - item.enqueued, inference_s, size)
            item.future.set_result(result)
