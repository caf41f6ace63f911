"""The metric buffer: size, time and explicit flushes; nothing lost when a write fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from visionyard.tracking.buffer import MetricBuffer, Point


class Recorder:
    """A batch writer that records every call and can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[Point]] = []
        self.threads: list[str] = []
        self.fail = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, points: Sequence[Point]) -> None:
        self.gate.wait(10)
        with self.lock:
            self.threads.append(threading.current_thread().name)
            if self.fail:
                self.fail -= 1
                raise OSError("store is down")
            self.batches.append(list(points))

    @property
    def written(self) -> list[Point]:
        return [p for batch in self.batches for p in batch]


def points(start: int, stop: int) -> list[Point]:
    return [("loss", float(i), 1000 + i, i) for i in range(start, stop)]


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Wait for a background thread; the bound only stops a hung test (a loaded CI machine
    took over 5 s)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_full_buffers_are_written_by_the_writer_thread_in_batches() -> None:
    writer = Recorder()
    buffer = MetricBuffer(writer, max_points=1000, interval_s=60)
    for i in range(2500):
        buffer.add(points(i, i + 1))
    wait_for(lambda: len(writer.written) >= 2000)
    assert len(buffer) <= 500
    buffer.close()
    assert writer.written == points(0, 2500)
    assert all(len(b) <= 1000 for b in writer.batches)
    assert len(writer.batches) <= 5
    assert writer.threads[0] == "visionyard-metric-flush"


def test_the_training_loop_does_not_wait_for_a_slow_store() -> None:
    writer = Recorder()
    writer.gate.clear()  # the store hangs until the gate opens
    buffer = MetricBuffer(writer, max_points=10, interval_s=60)
    started = time.monotonic()
    buffer.add(points(0, 10))
    buffer.add(points(10, 15))
    assert time.monotonic() - started < 1.0
    writer.gate.set()
    buffer.close()
    assert writer.written == points(0, 15)


def test_a_writer_too_far_behind_makes_the_caller_wait_and_write() -> None:
    writer = Recorder()
    writer.gate.clear()
    buffer = MetricBuffer(writer, max_points=10, interval_s=60, backlog=30)
    buffer.add(points(0, 10))  # wakes the writer thread, which hangs in the store
    wait_for(buffer._flush_lock.locked)
    buffer.add(points(10, 29))  # below the backlog: returns at once
    threading.Timer(0.3, writer.gate.set).start()
    started = time.monotonic()
    buffer.add(points(29, 30))  # at the backlog: back-pressure until the store caught up
    assert time.monotonic() - started >= 0.25
    assert len(buffer) == 0
    buffer.close()
    assert writer.written == points(0, 30)


def test_without_a_writer_thread_full_buffers_are_written_by_the_caller() -> None:
    writer = Recorder()
    buffer = MetricBuffer(writer, max_points=10, interval_s=60)
    buffer._stop.set()
    buffer.add(points(0, 9))
    assert writer.batches == []
    buffer.add(points(9, 10))
    assert writer.written == points(0, 10)
    assert writer.threads == [threading.current_thread().name]


def test_large_buffers_are_written_in_chunks_of_batch_size() -> None:
    writer = Recorder()
    buffer = MetricBuffer(writer, max_points=10_000, interval_s=60, batch_size=1000)
    buffer.add(points(0, 2500))
    assert writer.batches == []
    buffer.flush()
    assert [len(b) for b in writer.batches] == [1000, 1000, 500]
    buffer.close()
    assert len(writer.batches) == 3


def test_points_are_written_after_the_interval_without_a_flush_call() -> None:
    writer = Recorder()
    buffer = MetricBuffer(writer, max_points=1000, interval_s=0.3)
    buffer.add(points(0, 3))
    assert writer.batches == []
    deadline = time.monotonic() + 5
    while not writer.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.written == points(0, 3)
    buffer.close()
    assert len(writer.batches) == 1


def test_an_overdue_buffer_is_written_on_the_next_add() -> None:
    writer = Recorder()
    buffer = MetricBuffer(writer, max_points=1000, interval_s=0.05)
    buffer._stop.set()  # no timer thread: only the check on write can flush
    buffer.add(points(0, 1))
    time.sleep(0.1)
    buffer.add(points(1, 2))
    assert writer.written == points(0, 2)


def test_a_failed_write_keeps_the_points_for_the_next_flush() -> None:
    writer = Recorder()
    writer.fail = 1
    buffer = MetricBuffer(writer, max_points=10, interval_s=60)
    buffer._stop.set()  # write in the caller, to see the failure deterministically
    buffer.add(points(0, 10))  # size flush fails quietly: training goes on
    assert len(buffer) == 10
    assert isinstance(buffer.last_error, OSError)
    buffer.add(points(10, 12))
    assert writer.written == points(0, 12)
    assert buffer.last_error is None
    buffer.close()


def test_flush_and_close_raise_when_the_write_fails() -> None:
    writer = Recorder()
    writer.fail = 2
    buffer = MetricBuffer(writer, max_points=100, interval_s=60)
    buffer.add(points(0, 5))
    with pytest.raises(OSError, match="store is down"):
        buffer.flush()
    with pytest.raises(OSError, match="store is down"):
        buffer.close()
    buffer.flush()
    assert writer.written == points(0, 5)


def test_close_stops_the_timer_thread() -> None:
    buffer = MetricBuffer(Recorder(), max_points=100, interval_s=0.1)
    buffer.add(points(0, 1))
    thread = buffer._thread
    assert thread is not None
    assert thread.is_alive()
    buffer.close()
    assert not thread.is_alive()
