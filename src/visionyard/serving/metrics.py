"""Prometheus metrics of the server, in their own registry, built from the documented list
(:mod:`visionyard.serving.metric_names`), with the process, platform and GC collectors.

``_created`` series are switched off (:func:`prometheus_client.disable_created_metrics`, a
process-wide setting of the client library: nothing in visionyard reads them, and they double
the series of every counter and histogram).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from visionyard.monitor.gpu import register_gpu_collector
from visionyard.serving.metric_names import spec
from visionyard.serving.types import Timings

disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STAGES = ("queue", "preprocess", "inference", "total")
#: ``visionyard_requests_total``'s status of a request that failed on a server bug (REST 500,
#: gRPC INTERNAL), counted by the adapters, which catch such exceptions
INTERNAL = "internal"


class ServingMetrics:
    """Request counts, stage latencies, batch sizes, queue depth, loaded versions, failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(*spec("visionyard_requests_total"), registry=reg)
        self.latency = Histogram(
            *spec("visionyard_request_duration_seconds"),
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            *spec("visionyard_batch_size"),
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(*spec("visionyard_queue_depth"), registry=reg)
        self.model_info = Gauge(*spec("visionyard_model_info"), registry=reg)
        self.load_failures = Counter(*spec("visionyard_model_load_failures_total"), registry=reg)
        self.swaps = Counter(*spec("visionyard_model_swaps_total"), registry=reg)
        self.monitor = MonitorMetrics(reg)
        self.rollout = RolloutMetrics(reg)
        self.gpu = register_gpu_collector(reg)  # per-device gauges where NVML is present
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self._counters: dict[tuple[str, ...], Any] = {}
        self._stages: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def observe(self, model: str, version: str, protocol: str, status: str) -> None:
        key = (model, version, protocol, status)
        counter = self._counters.get(key)
        if counter is None:  # labels() validates and locks: look each child up once
            counter = self._counters.setdefault(key, self.requests.labels(*key))
        counter.inc()

    def observe_timings(
        self, model: str, version: str, protocol: str, timings: Timings, total: float
    ) -> None:
        key = (model, version, protocol)
        stages = self._stages.get(key)
        if stages is None:
            children = tuple(self.latency.labels(*key, s) for s in _STAGES)
            stages = self._stages.setdefault(key, children)
        queue, preprocess, inference, whole = stages
        queue.observe(timings.queue)
        preprocess.observe(timings.preprocess)
        inference.observe(timings.inference)
        whole.observe(total)

    def loaded(self, model: str, version: str, variant: str, reference: str) -> None:
        for labels in list(self._info_labels(model)):
            self.model_info.remove(*labels)
        self.model_info.labels(model, version, variant, reference).set(1)

    def unloaded(self, model: str) -> None:
        for labels in list(self._info_labels(model)):
            self.model_info.remove(*labels)

    def _info_labels(self, model: str) -> list[tuple[str, ...]]:
        found: list[tuple[str, ...]] = []
        for metric in self.model_info.collect():
            for sample in metric.samples:
                if sample.labels.get("model") == model:
                    labels = sample.labels
                    found.append(
                        (labels["model"], labels["version"], labels["variant"], labels["reference"])
                    )
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MonitorMetrics:
    """Live monitoring: drift per feature against the version's reference profile, the window,
    confidence quantiles, class shares, and the capture writer's counts. Feature and label
    values come from the profile and the contract, never from clients (bounded label sets)."""

    def __init__(self, reg: CollectorRegistry) -> None:
        self.drift_statistic = Gauge(*spec("visionyard_drift_statistic"), registry=reg)
        self.drift_p_value = Gauge(*spec("visionyard_drift_p_value"), registry=reg)
        self.drift_detected = Gauge(*spec("visionyard_drift_detected"), registry=reg)
        self.window_size = Gauge(*spec("visionyard_monitor_window_size"), registry=reg)
        self.confidence_quantile = Gauge(*spec("visionyard_confidence_quantile"), registry=reg)
        self.class_share = Gauge(*spec("visionyard_class_share"), registry=reg)
        self.captured = Counter(*spec("visionyard_captured_total"), registry=reg)
        self.capture_dropped = Counter(*spec("visionyard_capture_dropped_total"), registry=reg)


class RolloutMetrics:
    """Rollouts (canary and shadow): requests, errors and latency per version and role
    (production, canary, shadow) while a rollout runs, the shadow's agreement and shed requests,
    the step and share followed, and the decisions taken here. Versions come from the registry's
    rollout, never from clients."""

    def __init__(self, reg: CollectorRegistry) -> None:
        self.requests = Counter(*spec("visionyard_rollout_requests_total"), registry=reg)
        self.latency = Histogram(
            *spec("visionyard_rollout_request_duration_seconds"),
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.shadow_compared = Counter(*spec("visionyard_shadow_compared_total"), registry=reg)
        self.shadow_agreement = Gauge(*spec("visionyard_shadow_agreement"), registry=reg)
        self.shadow_confidence_delta = Gauge(
            *spec("visionyard_shadow_confidence_delta"), registry=reg
        )
        self.shadow_shed = Counter(*spec("visionyard_shadow_shed_total"), registry=reg)
        self.step = Gauge(*spec("visionyard_rollout_step"), registry=reg)
        self.share = Gauge(*spec("visionyard_rollout_share_ratio"), registry=reg)
        self.decisions = Counter(*spec("visionyard_rollout_decisions_total"), registry=reg)
        self._children: dict[tuple[str, ...], Any] = {}

    def observe(self, model: str, version: str, role: str, status: str, seconds: float) -> None:
        key = (model, version, role, status)
        child = self._children.get(key)
        if child is None:
            child = (self.requests.labels(*key), self.latency.labels(model, version, role))
            self._children[key] = child
        child[0].inc()
        if status == "ok":
            child[1].observe(seconds)

    def following(
        self, model: str, version: str, mode: str, step: int, share_percent: float
    ) -> None:
        self.ended(model)
        self.step.labels(model, version, mode).set(step)
        self.share.labels(model, version, mode).set(share_percent / 100)  # base unit: a ratio

    def ended(self, model: str) -> None:
        """Remove the model's rollout gauges (no rollout is followed any more)."""
        for gauge in (self.step, self.share, self.shadow_agreement, self.shadow_confidence_delta):
            for metric in gauge.collect():
                for sample in metric.samples:
                    if sample.labels.get("model") == model:
                        gauge.remove(*sample.labels.values())
