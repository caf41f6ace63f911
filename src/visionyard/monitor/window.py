"""Sliding windows of feature records, by count and by time, for live traffic.

A :class:`SlidingWindow` keeps the newest records, at most ``max_images`` of them and none older
than ``max_age_s`` seconds (either limit may be None). Adding a record is O(1) amortised: append
to a deque, then drop what fell out from the old end. :meth:`SlidingWindow.snapshot` returns a
:class:`~visionyard.monitor.sample.FeatureSample`, which :func:`visionyard.monitor.compare`
takes. One lock guards the deque, so request threads may add while another thread snapshots.
Written by hand: ``collections.deque(maxlen=...)`` bounds the count but not the age.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from visionyard.errors import ConfigError
from visionyard.monitor.features import Record
from visionyard.monitor.sample import FeatureSample

Clock = Callable[[], float]


class SlidingWindow:
    """The newest records by count and/or age; thread-safe."""

    def __init__(
        self,
        max_images: int | None = 500,
        max_age_s: float | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_images is None and max_age_s is None:
            raise ConfigError("a monitoring window needs max_images, max_age_s or both")
        if (max_images is not None and max_images < 1) or (
            max_age_s is not None and max_age_s <= 0
        ):
            raise ConfigError("a monitoring window's max_images and max_age_s must be > 0")
        self.max_images = max_images
        self.max_age_s = max_age_s
        self._clock = clock
        self._items: deque[tuple[float, Record]] = deque()
        self._lock = threading.Lock()

    def add(self, record: Record) -> None:
        """Add one image's record (O(1) amortised)."""
        now = self._clock()
        with self._lock:
            self._items.append((now, record))
            self._evict(now)

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def __len__(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return len(self._items)

    def records(self) -> list[Record]:
        """The records now in the window, oldest first."""
        with self._lock:
            self._evict(self._clock())
            return [record for _, record in self._items]

    def snapshot(self) -> FeatureSample:
        """The window's records as a sample (what :func:`~visionyard.monitor.compare` takes)."""
        return FeatureSample.of(self.records())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def _evict(self, now: float) -> None:
        items = self._items
        if self.max_images is not None:
            while len(items) > self.max_images:
                items.popleft()
        if self.max_age_s is not None:
            oldest = now - self.max_age_s
            while items and items[0][0] < oldest:
                items.popleft()
