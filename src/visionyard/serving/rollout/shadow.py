"""Shadow traffic: a sampled share of requests is also run on the rollout's candidate, after the
client has production's answer, and the two answers are compared.

The request path only calls :meth:`ShadowRunner.offer` (a ``put_nowait`` on a bounded queue,
after production answered): the client never waits for the candidate, and nothing the candidate
does (errors, slowness, a crash of its session) can reach it. ``workers`` tasks take jobs from
the queue and run them on the candidate's own batcher, one job each at a time, so the candidate
never holds more than ``workers`` shadow requests. They run on the batcher's background lane
(:mod:`visionyard.serving.batching`): one thread at idle priority, so a shadow uses only cores
that production leaves idle and gives them back the moment production's next request needs them.
A shadow's latency (its role's p99, compared with production's by ``max_p99_latency_ratio``) is
therefore the CPU seconds its own work took on that thread, not the wall time, which would count
the time production took the cores back.

The shadow runs only in spare capacity and is shed first: a job is dropped, and counted in
``visionyard_shadow_shed_total{model,reason}``, when the queue is full (``queue_full``), when
production holds ``busy_in_flight`` requests or more as the job would start (``busy``: its
workers are all taken and a queue is forming), or when the candidate refuses it
(``candidate_busy``, ``unavailable``). A job that outlives ``timeout_s`` is abandoned (its
result, if any, is dropped): shed as ``busy`` when it never got a core in that time, else
counted as a candidate error (``timeout``).

Agreement (:mod:`.agreement`) is computed on the candidate's batcher worker,
from production's decoded answer kept with the job; disagreeing images go to the capture
writer (when one is configured) with reason ``shadow_disagreement``.
Written by hand: the queue, the shedding and the comparison are specific to this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from visionyard.contract.postprocess import ImageResult
from visionyard.contract.preprocess import ImageMeta
from visionyard.errors import VisionyardError
from visionyard.monitor import source_info
from visionyard.serving.batching import BatchResult
from visionyard.serving.capture import CaptureJob, CaptureWriter
from visionyard.serving.logs import request_id
from visionyard.serving.metrics import RolloutMetrics
from visionyard.serving.model import IMAGE_INPUT, LoadedModel
from visionyard.serving.pool import ModelPool
from visionyard.serving.rollout.agreement import Agreement, compare_results
from visionyard.serving.rollout.routing import Route
from visionyard.serving.rollout.stats import SHADOW
from visionyard.serving.types import InferRequest

log = logging.getLogger("visionyard.serving")
DISAGREEMENT = "shadow_disagreement"
#: Per image: the agreement with production, and the candidate's decoded answer.
Compared = tuple[list[Agreement], list[ImageResult]]


@dataclass(frozen=True)
class ShadowConfig:
    queue_size: int = 64
    workers: int = 1
    #: production in-flight requests at which shadows are shed (its workers are all busy)
    busy_in_flight: int = 2
    timeout_s: float = 10.0
    capture: bool = True


@dataclass(frozen=True)
class ShadowJob:
    """One request to mirror: the route and step it was sampled under, the request, and what
    production answered (decoded, image by image)."""

    route: Route
    request: InferRequest
    production: list[ImageResult]
    production_version: str
    request_id: str


class ShadowRunner:
    """The bounded shadow queue and its worker tasks (see the module docstring)."""

    def __init__(
        self,
        pool: ModelPool,
        metrics: RolloutMetrics,
        config: ShadowConfig,
        writer: CaptureWriter | None = None,
    ) -> None:
        self.pool, self.metrics, self.config = pool, metrics, config
        self.writer = writer if config.capture else None
        self._queue: asyncio.Queue[ShadowJob] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._queue = asyncio.Queue(self.config.queue_size)
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.config.workers)]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def offer(self, job: ShadowJob) -> bool:
        """Queue a job, or shed it when the queue is full; never waits."""
        if self._queue is None:
            return self._shed(job, "unavailable")
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            return self._shed(job, "queue_full")
        return True

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                await self.run(job)
            except Exception:  # a bug must not stop the worker
                log.exception("shadow request failed", extra={"fields": {"model": job.route.model}})

    async def run(self, job: ShadowJob) -> None:
        """Run one job on the candidate (unless shed), compare, count."""
        if self._busy(job.route.model):
            self._shed(job, "busy")
            return
        candidate = job.route.candidate
        try:
            self.pool.admit(candidate)
        except VisionyardError as exc:
            self._shed(job, "candidate_busy" if exc.code == "serving.busy" else "unavailable")
            return
        request_id(job.request_id)  # the candidate's monitor names captures after it
        started, began = time.perf_counter(), threading.Event()
        try:
            result = await asyncio.wait_for(
                self._infer(candidate, job, began), self.config.timeout_s
            )
        except Exception as exc:  # the candidate's failure: counted, never seen by a client
            if isinstance(exc, TimeoutError) and not began.is_set():
                self._shed(job, "busy")  # production kept every core all along
            else:
                self._outcome(job, _code(exc), time.perf_counter() - started)
            return
        finally:
            self.pool.release(candidate)
        spent = result.cpu_s if result.cpu_s is not None else time.perf_counter() - started
        self._outcome(job, "ok", spent)
        self._compared(job, result.value)

    async def _infer(
        self, candidate: LoadedModel, job: ShadowJob, began: threading.Event
    ) -> BatchResult:
        production = job.production

        def finish(raw: dict[str, np.ndarray], metas: list[ImageMeta]) -> Compared:
            answers = candidate.session.decode(raw, metas)
            return compare_results(production, answers), answers

        tensor = candidate.pick_input(job.request.inputs)
        work = candidate.work(tensor, self.pool.config.limits, finish)
        prepare = work.prepare

        def started() -> tuple[np.ndarray, Any]:
            began.set()
            return prepare()

        return await candidate.batcher.submit(replace(work, prepare=started), background=True)

    def _busy(self, model: str) -> bool:
        current = self.pool.entry(model).current
        return current is None or current.in_flight >= self.config.busy_in_flight

    def _outcome(self, job: ShadowJob, code: str, seconds: float) -> None:
        route = job.route
        job.route.stats.add(SHADOW, code, seconds)
        status = "ok" if code == "ok" else "error"
        self.metrics.observe(route.model, route.candidate.version, SHADOW, status, seconds)

    def _compared(self, job: ShadowJob, compared: Compared) -> None:
        found, answers = compared
        route, stats = job.route, job.route.stats
        stats.shadow.add(found)
        labels = (route.model, route.candidate.version)
        agreed = sum(one.agree for one in found)
        if agreed:
            self.metrics.shadow_compared.labels(*labels, "agree").inc(agreed)
        if agreed < len(found):
            self.metrics.shadow_compared.labels(*labels, "disagree").inc(len(found) - agreed)
            self._capture(job, found, answers)
        if stats.shadow.agreement is not None:
            self.metrics.shadow_agreement.labels(*labels).set(stats.shadow.agreement)
        if stats.shadow.confidence_delta is not None:
            delta = stats.shadow.confidence_delta
            self.metrics.shadow_confidence_delta.labels(*labels).set(delta)

    def _capture(self, job: ShadowJob, found: list[Agreement], answers: list[ImageResult]) -> None:
        items = _items(job.request)
        if self.writer is None or items is None:
            return
        for index, one in enumerate(found):
            if one.agree or index >= len(items):
                continue
            answer = _answer(job, index, one, answers[index])
            encoding = source_info(items[index]).encoding
            capture = CaptureJob(
                job.route.model, job.route.candidate.version, job.request_id, index,
                items[index], encoding, (DISAGREEMENT,), answer,
            )  # fmt: skip
            self.writer.offer(capture)

    def _shed(self, job: ShadowJob, reason: str) -> bool:
        job.route.stats.shed += 1
        self.metrics.shadow_shed.labels(job.route.model, reason).inc()
        return False


def _code(exc: Exception) -> str:
    if isinstance(exc, VisionyardError):
        return exc.code
    return "timeout" if isinstance(exc, TimeoutError) else "internal"


def _items(request: InferRequest) -> list[bytes] | None:
    """The request's encoded images (None for a preprocessed tensor)."""
    tensor = request.inputs[0] if len(request.inputs) == 1 else None
    if tensor is None or tensor.name != IMAGE_INPUT:
        return None
    with contextlib.suppress(Exception):
        return [bytes(item) for item in tensor.data.reshape(-1)]
    return None


def _answer(job: ShadowJob, index: int, one: Agreement, answer: ImageResult) -> dict[str, Any]:
    """The sidecar's answer: the candidate's and production's top-1 (or best box) and the
    agreement figures."""
    ours, theirs = _top(job.production[index]), _top(answer)
    return {
        "predicted": theirs[0],
        "confidence": theirs[1],
        "production_version": job.production_version,
        "production_predicted": ours[0],
        "production_confidence": ours[1],
        "agreement": one.score,
        "confidence_delta": one.confidence_delta,
    }


def _top(result: ImageResult) -> tuple[str | None, float | None]:
    if result.predictions:
        return result.predictions[0].label, float(result.predictions[0].score)
    boxes: Sequence[Any] = sorted(result.detections, key=lambda d: -d.score)
    return (boxes[0].label, float(boxes[0].score)) if boxes else (None, None)
