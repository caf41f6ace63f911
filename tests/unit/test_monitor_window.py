"""Sliding windows by count and by age: what they keep, their snapshot, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from visionyard.errors import ConfigError
from visionyard.monitor import Record, SlidingWindow, compare


def record(value: float, label: str = "a", embedding: bool = False) -> Record:
    row = np.full(3, value, dtype=np.float32) if embedding else None
    return Record({"x": (value,), "score": (value, value)}, {"class": (label,)}, row)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_count_window_keeps_the_newest_records() -> None:
    window = SlidingWindow(max_images=3)
    window.extend(record(v) for v in range(10))
    assert len(window) == 3
    snap = window.snapshot()
    assert snap.images == 3
    assert snap.continuous["x"].tolist() == [7.0, 8.0, 9.0]
    assert snap.continuous["score"].tolist() == [7.0, 7.0, 8.0, 8.0, 9.0, 9.0]
    assert snap.categorical == {"class": {"a": 3}}
    assert snap.embeddings is None


def test_a_time_window_forgets_records_older_than_its_age() -> None:
    clock = FakeClock()
    window = SlidingWindow(max_images=None, max_age_s=600, clock=clock)
    window.add(record(1, "old"))
    clock.now = 300
    window.add(record(2, "new"))
    clock.now = 601
    snap = window.snapshot()
    assert snap.continuous["x"].tolist() == [2.0]
    assert snap.categorical == {"class": {"new": 1}}
    clock.now = 2000
    assert len(window) == 0
    assert window.snapshot().images == 0


def test_both_limits_apply_together() -> None:
    clock = FakeClock()
    window = SlidingWindow(max_images=2, max_age_s=10, clock=clock)
    for v in range(5):
        clock.now = float(v)
        window.add(record(v, embedding=True))
    snap = window.snapshot()
    assert snap.continuous["x"].tolist() == [3.0, 4.0]
    assert snap.embeddings is not None
    assert snap.embeddings.shape == (2, 3)


def test_a_window_without_limits_or_with_bad_limits_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_images, max_age_s"):
        SlidingWindow(max_images=None, max_age_s=None)
    with pytest.raises(ConfigError, match="> 0"):
        SlidingWindow(max_images=0)


def test_threads_add_while_another_snapshots() -> None:
    window = SlidingWindow(max_images=500)
    errors: list[BaseException] = []

    def feed(offset: int) -> None:
        for i in range(2000):
            window.add(record(offset + i))

    def watch() -> None:
        try:
            for _ in range(50):
                assert window.snapshot().images <= 500
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(k * 10_000,)) for k in range(4)]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(window) == 500
    assert window.snapshot().categorical["class"]["a"] == 500


def test_a_snapshot_is_what_compare_takes() -> None:
    rng = np.random.default_rng(0)
    reference, live = SlidingWindow(max_images=5000), SlidingWindow(max_images=200)
    reference.extend(record(float(v)) for v in rng.normal(0, 1, 2000))
    live.extend(record(float(v)) for v in rng.normal(2, 1, 300))
    result = compare(reference.snapshot(), live.snapshot())
    assert result.verdict == "drift"
    assert "x" in result.drifting
