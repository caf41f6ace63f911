"""Live monitoring in the server: a sliding window per served version, compared with the
version's reference profile on a background thread, shown as Prometheus gauges and through
``GET /v2/models/{name}/monitor``.

- :class:`Monitoring` (one per server) owns the ``vy-monitor`` thread and the capture writer.
  The pool :meth:`~Monitoring.attach` es a :class:`VersionMonitor` to each version it loads and
  :meth:`~Monitoring.detach` es it when the version leaves (its gauges go with it).
- Records come from the batcher workers (:mod:`visionyard.serving.watch`): nothing here runs
  on the event loop or per request except adding to the window (a deque append under a lock).
- The ``vy-monitor`` thread computes the pixel statistics waiting in each version's backlog
  once a batch has gathered (:mod:`visionyard.serving.watch`), loads each version's reference
  profile (:mod:`visionyard.serving.reference`), and refreshes a version's gauges (window size,
  confidence quantiles, class shares and, with a profile and at least ``min_samples`` images,
  drift per feature) after every ``compare_every_images`` new images or ``compare_every_s``,
  but never sooner than the last refresh's duration divided by ``compare_budget`` after it
  started: at a high request rate the drift tests would otherwise run back to back and take
  the CPU that serving needs.

Gauges: ``visionyard_drift_statistic`` and ``visionyard_drift_p_value`` (corrected) per feature
of the profile, ``visionyard_drift_detected`` (present only while there is a verdict),
``visionyard_monitor_window_size``, ``visionyard_confidence_quantile`` (0.1, 0.5, 0.9 of top-1
confidence; a detector's box scores) and ``visionyard_class_share`` (contract labels), kept by
:mod:`visionyard.serving.monitor_gauges`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from visionyard.errors import NotFoundError
from visionyard.monitor import (
    CompareOptions,
    Comparison,
    FeatureSample,
    Profile,
    Record,
    SlidingWindow,
    compare,
)
from visionyard.monitor.saved_window import window_bytes
from visionyard.runtime.session import InferenceSession
from visionyard.serving.capture import CapturePolicy, CaptureWriter
from visionyard.serving.logs import current_request_id
from visionyard.serving.metrics import MonitorMetrics
from visionyard.serving.monitor_gauges import Gauges, quantiles, shares
from visionyard.serving.reference import load_reference, profile_command
from visionyard.serving.sources import ModelSource, Resolved
from visionyard.serving.threads import name_os_thread
from visionyard.serving.watch import (
    BEHIND_BATCHES,
    Pending,
    PixelBacklog,
    Watch,
    WatchTarget,
    complete,
)
from visionyard.settings import MonitorSettings

log = logging.getLogger("visionyard.serving")


class TimedWindow:
    """A :class:`~visionyard.monitor.SlidingWindow` that also knows the time span it covers
    (the monitor core's window keeps its timestamps private): the arrival times of its records,
    trimmed to the window's length."""

    def __init__(self, settings: MonitorSettings) -> None:
        self.window = SlidingWindow(settings.window_size, settings.window_seconds)
        self._times: list[float] = []
        self._lock = threading.Lock()

    def extend(self, records: list[Record], times: list[float] | None = None) -> None:
        """Add ``records``, served at ``times`` (default: now)."""
        stamps = times if times is not None else [time.time()] * len(records)
        with self._lock:
            self.window.extend(records)
            self._times.extend(stamps)
            del self._times[: -max(1, len(self.window))]

    def snapshot(self) -> tuple[FeatureSample, tuple[float, float] | None]:
        """The window's sample and (oldest, newest) arrival times (None when empty)."""
        with self._lock:
            records = self.window.records()
            times = self._times[-len(records) :] if records else []
        return FeatureSample.of(records), ((times[0], times[-1]) if times else None)


@dataclass
class Reference:
    """The state of a version's reference profile: loading, ready, none or error."""

    state: str = "loading"
    message: str = "loading the reference profile"
    profile: Profile | None = None


class VersionMonitor:
    """Window, reference, last comparison and gauges of one served version."""

    def __init__(self, name: str, version: str, source: ModelSource, parent: Monitoring) -> None:
        self.name, self.version, self.source = name, version, source
        self.settings = parent.settings
        self.window = TimedWindow(parent.settings)
        self.backlog = PixelBacklog()
        self.reference = Reference()
        self.gauges = Gauges(parent.metrics, name, version)
        self.last: dict[str, Any] | None = None
        self.detached = False  # the version left: its gauges are (being) removed
        self.requests = itertools.count()
        self._new = 0
        self._refreshed = time.monotonic()
        self._earliest = 0.0  # no drift test before this (monotonic): the compare budget
        self._lock = threading.Lock()
        self._warned = False
        self._wake = parent.wake

    def observe(self, records: list[Record], waiting: list[Pending]) -> None:
        """Add a request's records, and those awaiting pixel statistics (worker thread)."""
        if records:
            self.window.extend(records)
        if waiting:
            count = self.backlog.add(waiting)
            if count >= BEHIND_BATCHES * self.backlog.batch:  # the monitor thread is behind
                self._complete(self.backlog.take())
            elif count >= self.backlog.batch:
                self._wake()
        self._new += len(records) + len(waiting)
        if self._new >= self.settings.compare_every_images:
            self._wake()

    def snapshot(self) -> tuple[FeatureSample, tuple[float, float] | None]:
        """The window, with the images still waiting for their pixel statistics added."""
        self._complete(self.backlog.take())
        return self.window.snapshot()

    def complete_batch(self) -> None:
        """Compute the waiting pixel statistics once a batch has gathered (monitor thread)."""
        if len(self.backlog) >= self.backlog.batch:
            self._complete(self.backlog.take())

    def _complete(self, items: list[Pending]) -> None:
        if not items:
            return
        try:
            records = complete(items)
        except Exception as exc:  # neither a request nor the monitor thread may fail on it
            self.failed(exc)
            return
        self.window.extend(records, [item.at for item in items])

    def failed(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "monitoring failed on a request; the request was served (logged once)",
                extra={"fields": {"model": self.name, "version": self.version, "error": str(exc)}},
            )

    def due(self, now: float) -> bool:
        every = self.settings.compare_every_s
        if now < self._earliest:
            return False
        return self._new >= self.settings.compare_every_images or now - self._refreshed >= every

    def load_reference(self, resolved: Resolved) -> None:
        """Find the version's profile (background thread)."""
        try:
            profile = load_reference(self.source, resolved)
        except NotFoundError:
            command = profile_command(self.source, self.name, self.version)
            self.reference = Reference("none", f"no reference profile: run {command}")
        except Exception as exc:  # a tampered profile, an unreachable registry: keep serving
            self.reference = Reference("error", f"reference profile unusable: {exc}")
            log.error(self.reference.message, extra={"fields": {"model": self.name}})
        else:
            self.reference = Reference("ready", "", profile)

    def refresh(self) -> dict[str, Any]:
        """Compare the window with the reference now; update the gauges; return the report."""
        with self._lock:
            started = time.monotonic()
            self._new, self._refreshed = 0, started
            sample, span = self.snapshot()
            comparison = self._compare(sample)
            took = time.monotonic() - started
            self._earliest = started + took / self.settings.compare_budget
            if not self.detached:
                self.gauges.window(sample)
                self.gauges.drift(comparison)
            self.last = self._report(sample, span, comparison)
            return self.last

    def saved(self) -> bytes:
        """The window as one file (:mod:`visionyard.monitor.saved_window`)."""
        sample, span = self.snapshot()
        about = {"model": self.name, "version": self.version, "span": list(span) if span else None}
        return window_bytes(sample, about)

    def retire(self) -> None:
        """Remove this version's series (after :attr:`detached` is set)."""
        with self._lock:
            self.gauges.remove_all()

    def _compare(self, sample: FeatureSample) -> Comparison | None:
        profile = self.reference.profile
        if profile is None or sample.images < self.settings.min_samples:
            return None
        options = CompareOptions(alpha=self.settings.alpha, min_samples=self.settings.min_samples)
        return compare(profile.sample, sample, options)

    def _report(
        self, sample: FeatureSample, span: tuple[float, float] | None, result: Comparison | None
    ) -> dict[str, Any]:
        state, message = self._state(sample, result)
        body: dict[str, Any] = {
            "model": self.name, "version": self.version, "enabled": True, "state": state,
            "message": message, "verdict": result.verdict if result else None,
            "window": _window(sample, span, self.settings),
            "reference": {"state": self.reference.state, "message": self.reference.message,
                          "images": self.reference.profile.images if self.reference.profile
                          else None},
            "confidence_quantiles": quantiles(sample), "class_share": shares(sample),
        }  # fmt: skip
        body.update(result.to_dict() if result else {"features": [], "drifting": []})
        return body

    def _state(self, sample: FeatureSample, result: Comparison | None) -> tuple[str, str]:
        if self.reference.profile is None:
            return ("no reference profile", self.reference.message)
        if result is None or result.verdict == "not enough data":
            need = self.settings.min_samples
            return ("not enough data", f"not enough data (n={sample.images} < {need})")
        drifting = ", ".join(result.drifting)
        return (result.verdict, f"drift in {drifting}" if drifting else "no drift detected")


class Monitoring:
    """The server's monitoring: versions' monitors, the ``vy-monitor`` thread, capture."""

    def __init__(self, settings: MonitorSettings, metrics: MonitorMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.writer = CaptureWriter(settings.capture, metrics) if settings.capture.dir else None
        self.policy = CapturePolicy(settings.capture)
        self._monitors: dict[int, VersionMonitor] = {}
        self._pending: list[tuple[VersionMonitor, Resolved]] = []
        self._retired: list[VersionMonitor] = []
        self._event = threading.Event()
        self._stop = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vy-monitor", daemon=True)

    def start(self) -> None:
        if self.writer is not None:
            self.writer.start()
        self._thread.start()

    def wake(self) -> None:
        self._event.set()

    def attach(
        self, name: str, version: str, session: InferenceSession, source: ModelSource,
        resolved: Resolved,
    ) -> Watcher:  # fmt: skip
        monitor = VersionMonitor(name, version, source, self)
        with self._lock:
            self._monitors[id(monitor)] = monitor
            self._pending.append((monitor, resolved))
        self.wake()
        target = WatchTarget(
            name, version, session, monitor.observe, monitor.failed, self.writer, self.policy
        )
        return Watcher(monitor, target)

    def detach(self, watcher: Watcher | None) -> None:
        if watcher is None:
            return
        monitor = watcher.monitor
        monitor.detached = True
        with self._lock:
            self._monitors.pop(id(monitor), None)
            if self._thread.is_alive():  # a refresh may be running: remove after it, there
                self._retired.append(monitor)
        if self._thread.is_alive():
            self.wake()
        else:
            monitor.retire()

    def close(self) -> None:
        self._stop = True
        self.wake()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.writer is not None:
            self.writer.close()

    def _run(self) -> None:
        name_os_thread("vy-monitor")  # its CPU shows apart in per-thread readings (/proc, top -H)
        while not self._stop:
            self._event.wait(min(self.settings.compare_every_s, 1.0))  # budget waits end
            self._event.clear()
            self._tick()

    def _tick(self) -> None:
        """Retire left versions' series, load new versions' profiles, compute full pixel
        backlogs, refresh what is due."""
        with self._lock:
            pending, self._pending = self._pending, []
            retired, self._retired = self._retired, []
            monitors = list(self._monitors.values())
        for monitor in retired:
            monitor.retire()
        for monitor, resolved in pending:
            monitor.load_reference(resolved)
        for monitor in monitors:
            monitor.complete_batch()
        now = time.monotonic()
        for monitor in monitors:
            if self._stop or not (monitor.due(now) or any(m is monitor for m, _ in pending)):
                continue
            try:
                monitor.refresh()
            except Exception:  # a bug must not stop the thread
                log.exception("monitor refresh failed", extra={"fields": {"model": monitor.name}})


@dataclass(frozen=True)
class Watcher:
    """What a loaded version holds: its monitor, and how to watch one of its requests."""

    monitor: VersionMonitor
    target: WatchTarget

    def watch(self, items: list[bytes] | None) -> Watch:
        """A request's watch (event loop: only references are kept); image statistics for one
        request in ``monitor.image_every``."""
        every = self.monitor.settings.image_every
        pixels = every == 1 or next(self.monitor.requests) % every == 0
        return Watch(self.target, current_request_id(), items, pixels=pixels)


def _window(
    sample: FeatureSample, span: tuple[float, float] | None, settings: MonitorSettings
) -> dict[str, Any]:
    now = time.time()
    return {
        "images": sample.images, "max_images": settings.window_size,
        "max_age_s": settings.window_seconds, "min_samples": settings.min_samples,
        "oldest_age_s": round(now - span[0], 3) if span else None,
        "span_s": round(span[1] - span[0], 3) if span else None,
    }  # fmt: skip
