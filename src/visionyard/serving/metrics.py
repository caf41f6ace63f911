"""Prometheus metrics of the server, in their own registry (no process-global state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from visionyard.monitor.gpu import register_gpu_collector
from visionyard.serving.types import Timings

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STAGES = ("queue", "preprocess", "inference", "total")


class ServingMetrics:
    """Request counts, stage latencies, batch sizes, queue depth, loaded versions, failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "visionyard_requests",
            "Inference requests by outcome",
            ["model", "version", "protocol", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "visionyard_request_seconds",
            "Inference latency by stage (queue, preprocess, inference, total)",
            ["model", "protocol", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "visionyard_batch_size",
            "Images per executed batch",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "visionyard_queue_depth", "Requests admitted and not finished", ["model"], registry=reg
        )
        self.model_info = Gauge(
            "visionyard_model_info",
            "1 for the version being served",
            ["model", "version", "variant", "reference"],
            registry=reg,
        )
        self.load_failures = Counter(
            "visionyard_model_load_failures",
            "Versions that failed to resolve, load or verify",
            ["model"],
            registry=reg,
        )
        self.swaps = Counter("visionyard_model_swaps", "Version switches", ["model"], registry=reg)
        self.monitor = MonitorMetrics(reg)
        self.rollout = RolloutMetrics(reg)
        self.gpu = register_gpu_collector(reg)  # per-device gauges where NVML is present
        self._counters: dict[tuple[str, ...], Any] = {}
        self._stages: dict[tuple[str, str], tuple[Any, ...]] = {}

    def observe(self, model: str, version: str, protocol: str, status: str) -> None:
        key = (model, version, protocol, status)
        counter = self._counters.get(key)
        if counter is None:  # labels() validates and locks: look each child up once
            counter = self._counters.setdefault(key, self.requests.labels(*key))
        counter.inc()

    def observe_timings(self, model: str, protocol: str, timings: Timings, total: float) -> None:
        stages = self._stages.get((model, protocol))
        if stages is None:
            children = tuple(self.latency.labels(model, protocol, s) for s in _STAGES)
            stages = self._stages.setdefault((model, protocol), children)
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
        mv, mvf = ["model", "version"], ["model", "version", "feature"]
        self.drift_statistic = Gauge(
            "visionyard_drift_statistic", "Drift test statistic per feature", mvf, registry=reg
        )
        self.drift_p_value = Gauge(
            "visionyard_drift_p_value",
            "Drift p-value per feature, corrected for testing many features (Benjamini-Hochberg)",
            mvf,
            registry=reg,
        )
        self.drift_detected = Gauge(
            "visionyard_drift_detected", "1 when any feature drifts, else 0", mv, registry=reg
        )
        self.window_size = Gauge(
            "visionyard_monitor_window_size", "Images in the live window", mv, registry=reg
        )
        self.confidence_quantile = Gauge(
            "visionyard_confidence_quantile",
            "Top-1 confidence quantiles over the live window",
            [*mv, "quantile"],
            registry=reg,
        )
        self.class_share = Gauge(
            "visionyard_class_share",
            "Share of each predicted class in the live window",
            [*mv, "label"],
            registry=reg,
        )
        self.captured = Counter(
            "visionyard_captured", "Images written by the capture writer", ["model"], registry=reg
        )
        self.capture_dropped = Counter(
            "visionyard_capture_dropped",
            "Images the capture writer dropped (queue_full, rate_limit, quota, write_error)",
            ["model", "reason"],
            registry=reg,
        )


class RolloutMetrics:
    """Rollouts (canary and shadow): requests, errors and latency per version and role
    (production, canary, shadow) while a rollout runs, the shadow's agreement and shed requests,
    the step and share followed, and the decisions taken here. Versions come from the registry's
    rollout, never from clients."""

    def __init__(self, reg: CollectorRegistry) -> None:
        mvr = ["model", "version", "role"]
        self.requests = Counter(
            "visionyard_rollout_requests",
            "Requests during a rollout by version, role and outcome (ok, error, client_error)",
            [*mvr, "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "visionyard_rollout_request_seconds",
            "Latency during a rollout by version and role (a shadow's: its own inference)",
            mvr,
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.shadow_compared = Counter(
            "visionyard_shadow_compared",
            "Images answered by production and the shadow candidate, by result (agree, disagree)",
            ["model", "version", "result"],
            registry=reg,
        )
        self.shadow_agreement = Gauge(
            "visionyard_shadow_agreement",
            "Share of images of the current step on which the shadow agrees with production",
            ["model", "version"],
            registry=reg,
        )
        self.shadow_confidence_delta = Gauge(
            "visionyard_shadow_confidence_delta",
            "Mean top-1 confidence of the shadow minus production's over the current step",
            ["model", "version"],
            registry=reg,
        )
        self.shadow_shed = Counter(
            "visionyard_shadow_shed",
            "Shadow requests not run (busy: production needs the capacity, queue_full, "
            "candidate_busy, unavailable)",
            ["model", "reason"],
            registry=reg,
        )
        self.step = Gauge(
            "visionyard_rollout_step",
            "Index of the rollout step followed (present while a rollout runs)",
            ["model", "version", "mode"],
            registry=reg,
        )
        self.share = Gauge(
            "visionyard_rollout_share_percent",
            "Share of requests routed (canary) or mirrored (shadow) to the candidate",
            ["model", "version", "mode"],
            registry=reg,
        )
        self.decisions = Counter(
            "visionyard_rollout_decisions",
            "Rollout decisions recorded by this server (advance, promote, rollback)",
            ["model", "action"],
            registry=reg,
        )
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

    def following(self, model: str, version: str, mode: str, step: int, share: float) -> None:
        self.ended(model)
        self.step.labels(model, version, mode).set(step)
        self.share.labels(model, version, mode).set(share)

    def ended(self, model: str) -> None:
        """Remove the model's rollout gauges (no rollout is followed any more)."""
        for gauge in (self.step, self.share, self.shadow_agreement, self.shadow_confidence_delta):
            for metric in gauge.collect():
                for sample in metric.samples:
                    if sample.labels.get("model") == model:
                        gauge.remove(*sample.labels.values())
