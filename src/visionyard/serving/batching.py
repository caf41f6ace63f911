"""Dynamic batching for one model version: workers that decode, batch, infer and decode outputs.

Written here rather than taken from a library because what matters on a CPU server is specific:
``workers`` plain threads per model (each with its own ONNX Runtime intra-op thread, so two
workers on two cores overlap instead of fighting) and NO added delay when idle. A worker takes
its share of what is waiting (idle workers split it evenly), up to ``max_batch_size`` images;
it waits up to ``max_queue_delay_s`` for more only while every other worker is busy (then the
wait costs nothing: the cores are taken).

A lone request would leave the other cores idle (one intra-op thread per worker), so a batcher
may also be given ``run_alone``: the same model in a session with as many intra-op threads as
there are cores. A worker uses it when, as it starts inference, no other worker (of any batcher
in the process: a canary's, another model's) holds a batch and nothing is queued; while it runs,
the other workers take no batch, and what queued meanwhile is split between them afterwards.
Under load the queue is never empty: saturated throughput keeps one thread per worker.

Each request is a :class:`Work`: how many rows it adds, how to make them (``prepare``: image
decoding and preprocessing) and what to make of its slice of the outputs (``finish``: the
contract's output decoding), then, once the answers are handed over, ``after`` (monitoring: off
the answer's latency). All run on the worker that runs the batch, the layout of the
fastest in-process pipeline: one thread decodes its batch while the other runs inference, with
no hand-over between a decoding thread and an inference thread and one wake-up of the event loop
per batch (not per request). A request whose ``prepare`` or ``finish`` fails gets its own error;
the rest of its batch is served. The queue's bound is enforced before a request is queued (the
model's admission counter, :meth:`LoadedModel.acquire`), so an overloaded server refuses work
early instead of growing latency.

Work submitted with ``background=True`` (a shadow's) goes to a lane of its own: one thread at
idle priority (:func:`~visionyard.serving.threads.idle_priority`: only cores nothing else wants),
one request at a time, on the narrow session (its only ORT thread is the calling one). It is
never a busy worker, so it changes none of the decisions above; its result carries the thread's
CPU seconds for the request (``cpu_s``), whatever it waited for a free core.

Each executed batch is also reported to ``on_executed`` (an :class:`Executed`: its size and the
seconds its rows spent in decoding, inference and output decoding), which Triton-style
statistics count (:mod:`visionyard.serving.statistics`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from visionyard.serving.threads import HELD, idle_priority, name_os_thread
from visionyard.serving.work import (
    BatchConfig,
    BatchResult,
    Executed,
    Outputs,
    Settled,
    Work,
    settle,
)  # fmt: skip

__all__ = ["BatchConfig", "BatchResult", "Batcher", "Executed", "Outputs", "RunFn", "Work"]

RunFn = Callable[[np.ndarray], Outputs]
#: how long a worker with nothing queued lets the event loop answer before its after-work
ANSWERED_WAIT_S = 0.02
#: a batch's after-work: its requests' ``after`` calls and the loop's "answered" event
_After = tuple[list[Callable[[], None]], threading.Event | None]

log = logging.getLogger("visionyard.serving")


@dataclass
class _Item:
    work: Work
    future: asyncio.Future[BatchResult]
    enqueued: float
    rows: np.ndarray | None = None
    context: Any = None
    preprocess_s: float = 0.0


class Batcher:
    """Queue :class:`Work` and run it in batches on worker threads; :meth:`start` before use."""

    def __init__(
        self,
        run: RunFn,
        config: BatchConfig,
        on_batch: Callable[[int], None] | None = None,
        name: str = "vy-infer",
        run_alone: RunFn | None = None,
        on_executed: Callable[[Executed], None] | None = None,
    ) -> None:
        self._run = run
        self._on_executed = on_executed
        self._run_alone = run_alone
        self._config = config
        self._on_batch = on_batch or (lambda size: None)
        self._name = name
        self._items: deque[_Item] = deque()
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._lane = threading.Condition(lock)  # the background lane's
        self._closed = False
        self._busy = 0
        self._alone = False  # a worker runs a batch on every core (run_alone)
        self._threads: list[threading.Thread] = []
        self._background: deque[_Item] = deque()
        self._background_thread: threading.Thread | None = None
        self._after_pending = 0  # batches answered whose after-work still runs
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the workers; results are delivered to the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._worker, name=f"{self._name}-{i}", daemon=True)
            for i in range(self._config.workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting for a worker."""
        return len(self._items)

    async def submit(self, work: Work, background: bool = False) -> BatchResult:
        """Queue one request and wait for its result (``background``: the idle-priority lane)."""
        if self._closed:
            raise RuntimeError("batcher is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError("submit from the event loop the batcher was started on")
        future: asyncio.Future[BatchResult] = loop.create_future()
        item = _Item(work, future, time.perf_counter())
        with self._cond:
            if background:
                self._background.append(item)
                if self._background_thread is None:  # the lane starts on first use
                    name = f"{self._name}-bg"
                    lane = threading.Thread(target=self._background_worker, name=name, daemon=True)
                    self._background_thread = lane
                    lane.start()
                self._lane.notify()
            else:
                self._items.append(item)
                self._cond.notify()
        return await future

    async def close(self) -> None:
        """Finish what is queued, then stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._lane.notify_all()
        lane = [self._background_thread] if self._background_thread is not None else []
        await asyncio.to_thread(_join, self._threads + lane)

    def _background_worker(self) -> None:
        name_os_thread(threading.current_thread().name)
        idle_priority()
        while True:
            with self._cond:
                while not self._background and not self._closed:
                    self._lane.wait()
                if not self._background:
                    return
                item = self._background.popleft()
            if item.future.done():  # the caller went away (cancelled, timed out)
                continue
            settled = Settled()
            began = time.thread_time()
            try:
                if self._prepare(item, settled):
                    self._infer([item], time.perf_counter(), settled, background=True)
            except Exception as exc:  # a bug: this request's error, the lane goes on
                log.exception("background request failed", extra={"fields": {"worker": self._name}})
                settled.done = [(item.future, exc)]
            cpu_s = time.thread_time() - began
            settled.done = [
                (f, replace(done, cpu_s=cpu_s) if isinstance(done, BatchResult) else done)
                for f, done in settled.done
            ]
            if (pending := self._deliver_batch([item], settled)) is not None:
                self._run_after(pending)

    def _worker(self) -> None:
        name_os_thread(threading.current_thread().name)
        while (batch := self._next_batch()) is not None:
            pending = None
            try:
                pending = self._execute(batch)
            except BaseException as exc:  # a bug: fail this batch, log it, keep the worker alive
                log.exception("batch failed", extra={"fields": {"worker": self._name}})
                settled = Settled()
                settled.done.extend((item.future, exc) for item in batch)
                self._deliver(settled)
                if not isinstance(exc, Exception):
                    raise
            finally:
                with self._cond:
                    self._busy -= 1
                    HELD.add(-1)
            if pending is not None:
                self._run_after(pending)

    def _next_batch(self) -> list[_Item] | None:
        """The next batch; None once closed and drained. Requests whose caller went away
        (cancelled) are dropped here, so a queue holding only those is an empty queue."""
        with self._cond:
            while True:
                while (not self._items or self._alone) and not self._closed:
                    self._cond.wait()
                batch = self._take([], self._share())
                if batch:
                    break
                if self._closed:
                    return None
            self._busy += 1  # from here on this worker holds a batch
            HELD.add(1)
            delay = self._config.max_queue_delay_s
            if delay > 0 and self._others_busy():
                deadline = time.perf_counter() + delay
                while _rows(batch) < self._max and not self._closed and self._others_busy():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    batch = self._take(batch, self._max)
                    if self._items:  # a wake-up meant for an idle worker: pass it on
                        self._cond.notify()
            return batch

    def _others_busy(self) -> bool:
        """Every other worker holds a batch (called by a worker counted busy)."""
        others = self._busy - 1
        return others > 0 and others >= self._config.workers - 1

    @property
    def _max(self) -> int:
        return self._config.max_batch_size

    def _share(self) -> int:
        """This worker's part of what is waiting: the idle workers split it evenly, so that
        one does not take all of it while another stays idle."""
        idle = self._config.workers - self._busy
        waiting = sum(item.work.count for item in self._items)
        return min(self._max, max(1, -(-waiting // max(1, idle))))

    def _take(self, batch: list[_Item], limit: int) -> list[_Item]:
        size = _rows(batch)
        while self._items and (not batch or size + self._items[0].work.count <= limit):
            item = self._items.popleft()
            if item.future.done():  # the caller went away (cancelled)
                continue
            batch.append(item)
            size += item.work.count
        return batch

    def _execute(self, batch: list[_Item]) -> _After | None:
        settled = Settled()
        started = time.perf_counter()
        ready = [item for item in batch if self._prepare(item, settled)]
        if ready:
            self._infer(ready, started, settled)
        return self._deliver_batch(batch, settled)

    def _deliver_batch(self, batch: list[_Item], settled: Settled) -> _After | None:
        """Hand the results over; the requests' ``after`` work, if any, is then pending (see
        :meth:`settled`) until :meth:`_run_after`, which the worker calls once it no longer
        counts as busy (a lone request next may take every core meanwhile)."""
        afters = [item.work.after for item in batch if item.work.after is not None]
        if afters:
            with self._cond:
                self._after_pending += 1
                if not self._items and self._busy == 1 and HELD.count == 1:
                    # a lone request (nothing waits, no other batch anywhere): the answers may
                    # go first; under load the worker goes straight on (no wait on the loop)
                    settled.answered = threading.Event()
        self._deliver(settled)
        return (afters, settled.answered) if afters else None

    def _run_after(self, pending: _After) -> None:
        afters, answered = pending
        try:
            if answered is not None:
                # the event loop needs the GIL to send the answers; the after-work would hold
                # it for most of its ~0.6 ms (measured: +1.2 ms p50 at one client)
                answered.wait(ANSWERED_WAIT_S)
            for after in afters:
                try:
                    after()
                except Exception:  # it must not raise; a bug must not stop the worker
                    log.exception("after-work failed", extra={"fields": {"worker": self._name}})
        finally:
            with self._cond:
                self._after_pending -= 1

    async def settled(self, timeout_s: float = 1.0) -> None:
        """Wait (at most ``timeout_s``) until no request answered before this call still has
        ``after`` work running, so that what it records (monitoring) includes them."""
        deadline = time.monotonic() + timeout_s
        while self._after_pending and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    def _prepare(self, item: _Item, settled: Settled) -> bool:
        began = time.perf_counter()
        try:
            item.rows, item.context = item.work.prepare()
        except Exception as exc:  # this request's own error (a bad image): the batch goes on
            settled.done.append((item.future, exc))
            return False
        item.preprocess_s = time.perf_counter() - began
        return True

    def _infer(
        self, ready: list[_Item], started: float, settled: Settled, background: bool = False
    ) -> None:
        rows = [item.rows for item in ready if item.rows is not None]
        tensor = rows[0] if len(rows) == 1 else np.concatenate(rows)
        began = time.perf_counter()
        alone = not background and self._claim_alone()
        try:
            outputs = (self._run_alone if alone and self._run_alone else self._run)(tensor)
        except Exception as exc:  # delivered to every caller of the batch
            settled.done.extend((item.future, exc) for item in ready)
            return
        finally:
            if alone:
                self._release_alone()
        inference_s = time.perf_counter() - began
        self._on_batch(len(tensor))
        offset, output_s = 0, 0.0
        for item in ready:
            count = len(item.rows) if item.rows is not None else 0
            part = {name: value[offset : offset + count] for name, value in outputs.items()}
            offset += count
            finishing = time.perf_counter()
            try:
                value = item.work.finish(part, item.context)
            except Exception as exc:
                settled.done.append((item.future, exc))
                continue
            spent = time.perf_counter() - finishing
            output_s += spent
            result = BatchResult(
                value, started - item.enqueued, item.preprocess_s, inference_s, len(tensor), spent
            )
            settled.done.append((item.future, result))
        if self._on_executed is not None:
            input_s = sum(item.preprocess_s for item in ready)
            self._on_executed(Executed(len(tensor), input_s, inference_s, output_s))

    def _claim_alone(self) -> bool:
        """Whether this worker may run its batch on every core: it is the only one holding a
        batch and nothing waits (then the other workers wait until :meth:`_release_alone`)."""
        if self._run_alone is None:
            return False
        with self._cond:
            self._alone = self._busy == 1 and not self._items and HELD.count == 1
            return self._alone

    def _release_alone(self) -> None:
        with self._cond:
            self._alone = False
            if self._items:  # queued while this batch had every core: the others may take it
                self._cond.notify_all()

    def _deliver(self, settled: Settled) -> None:
        if not settled.done or self._loop is None:
            if settled.answered is not None:
                settled.answered.set()
            return
        try:
            self._loop.call_soon_threadsafe(settle, settled)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.debug("event loop closed; %d results dropped", len(settled.done))


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def _rows(batch: list[_Item]) -> int:
    return sum(item.work.count for item in batch)
