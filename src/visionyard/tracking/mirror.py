"""Mirrors: a second tracker (Weights & Biases) that receives a copy of every tracked run.

MLflow stays the source of truth; a mirror only copies. So a mirror must never fail or slow
the run it copies: :class:`BackgroundMirror` puts each event on a bounded queue that ONE daemon
thread hands to the tracker's :class:`MirrorSink`. The caller never waits on the tracker while
the run is open; at the end it waits at most ``tracking.mirror_timeout_s`` for the queue to
drain, then logs one warning with the count of events that were not sent (a sink that raised,
a full queue, a timeout) and the first error. Nothing here imports the tracker's library: the
sink does, on the worker thread, only when a mirror is configured.

Events are small frozen values (:data:`MirrorEvent`) so that a sink is a plain dispatcher and
unit tests can drive it with a fake tracker. The standard library's ``queue`` and ``threading``
do the work; no library offers "fire and forget, then report what was lost" for this.
"""

from __future__ import annotations

import importlib.util
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from visionyard.errors import DependencyMissingError
from visionyard.settings import Settings

log = logging.getLogger("visionyard.tracking")
QUEUE_SIZE = 10_000
#: mirror name -> (module the sink needs, extra that installs it)
REQUIREMENTS = {"wandb": ("wandb", "wandb")}
TRACKER_NAMES = {"wandb": "W&B"}


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    experiment: str
    run_name: str | None
    tags: Mapping[str, str]
    environment: Mapping[str, Any]
    job_type: str = "train"


@dataclass(frozen=True)
class Params:
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Metrics:
    step: int
    values: Mapping[str, float]


@dataclass(frozen=True)
class Tags:
    values: Mapping[str, str]


@dataclass(frozen=True)
class DatasetLogged:
    """A dataset manifest: its digest, where its images are, and its entries as JSON text."""

    name: str
    digest: str
    context: str
    manifest_json: str


@dataclass(frozen=True)
class FilesLogged:
    path: Path
    artifact_path: str | None


@dataclass(frozen=True)
class BundleLogged:
    path: Path
    digest: str | None
    mlflow_uri: str


@dataclass(frozen=True)
class RunEnded:
    status: str


@dataclass(frozen=True)
class RegistryEvent:
    """A registration or an alias move (promote, force, rollback) of a registered version."""

    kind: str
    model: str
    version: str
    actor: str
    alias: str | None = None
    from_version: str | None = None
    reason: str = ""
    run_id: str | None = None
    bundle_digest: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


MirrorEvent = (
    RunStarted
    | Params
    | Metrics
    | Tags
    | DatasetLogged
    | FilesLogged
    | BundleLogged
    | RunEnded
    | RegistryEvent
)


class MirrorSink(Protocol):
    """One tracker. ``handle`` runs on the mirror's worker thread; raising = not sent."""

    def handle(self, event: MirrorEvent) -> None: ...


@dataclass
class MirrorReport:
    tracker: str
    sent: int = 0
    unsent: int = 0
    first_error: str | None = None

    def message(self, what: str) -> str:
        total = self.sent + self.unsent
        cause = f" (first error: {self.first_error})" if self.first_error else ""
        return (
            f"{self.tracker} mirror: {self.unsent} of {total} items were not sent to "
            f"{self.tracker}{cause}; {what} has everything"
        )


class BackgroundMirror:
    """A bounded queue in front of one sink, drained by a daemon thread (see module docs)."""

    def __init__(self, sink: MirrorSink, tracker: str, timeout_s: float) -> None:
        self._sink = sink
        self._timeout_s = timeout_s
        self._queue: queue.Queue[MirrorEvent | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self.report = MirrorReport(tracker)
        self._thread = threading.Thread(
            target=self._drain, name=f"visionyard-mirror-{tracker}", daemon=True
        )  # started by the first event

    def send(self, event: MirrorEvent) -> None:
        """Queue ``event``; never blocks (a full queue counts the event as not sent)."""
        try:
            with self._lock:
                if self._closed:
                    raise queue.Full
                self._queue.put_nowait(event)
                if not self._started:
                    self._started = True
                    self._thread.start()
        except queue.Full:
            self._failed("the mirror queue was full or closed")

    def close(self, what: str = "MLflow") -> MirrorReport:
        """Wait (bounded) for the queued events, then warn once if any were not sent."""
        with self._lock:
            self._closed, started = True, self._started
        if started:
            self._stop(time.monotonic() + self._timeout_s)
        if self.report.unsent:
            log.warning("%s", self.report.message(what))
        return self.report

    def _stop(self, deadline: float) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.05)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._count_left(f"gave up waiting after {self._timeout_s:g} s")

    def _drain(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._sink.handle(event)
            except Exception as exc:  # a tracker error must not reach the run
                self._failed(f"{type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    self.report.sent += 1

    def _count_left(self, why: str) -> None:
        left = 0
        while True:
            try:
                left += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        with self._lock:
            self.report.unsent += left
            self.report.first_error = self.report.first_error or why

    def _failed(self, why: str) -> None:
        with self._lock:
            self.report.unsent += 1
            self.report.first_error = self.report.first_error or why


class Mirror:
    """Every configured mirror of one run (or one registry event), fanned out."""

    def __init__(self, mirrors: list[BackgroundMirror]) -> None:
        self._mirrors = mirrors

    def send(self, event: MirrorEvent) -> None:
        for mirror in self._mirrors:
            mirror.send(event)

    def close(self, what: str = "MLflow") -> list[MirrorReport]:
        return [mirror.close(what) for mirror in self._mirrors]


def check_mirrors(settings: Settings) -> list[str]:
    """The configured mirror names; raises :class:`DependencyMissingError` up front (before
    any run or registry change) when a mirror's library is not installed."""
    names = list(settings.tracking.mirror)
    for name in names:
        module, extra = REQUIREMENTS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise DependencyMissingError(f"{module} (tracking.mirror = [{name!r}])", extra)
    return names


def open_mirror(settings: Settings) -> Mirror | None:
    """The mirrors of ``settings.tracking.mirror`` (None when there are none)."""
    names = check_mirrors(settings)
    if not names:
        return None
    return Mirror([_background(settings, name) for name in names])


def mirror_registry_event(mirror: Mirror | None, event: RegistryEvent) -> None:
    """Send one registry event and wait (bounded) for it: a registry command is short-lived."""
    if mirror is None:
        return
    mirror.send(event)
    mirror.close("the MLflow registry")


def _background(settings: Settings, name: str) -> BackgroundMirror:
    from visionyard.tracking.wandb_mirror import WandbSink  # no wandb import here

    sink = WandbSink(settings.tracking)
    return BackgroundMirror(sink, TRACKER_NAMES[name], settings.tracking.mirror_timeout_s)
