"""Every series on the server's ``/metrics``: name, type, labels, meaning and when it is there.

The one list: :mod:`visionyard.serving.metrics` builds its metrics from it, the README's metrics
table is generated from it (:func:`markdown_table`), and a test compares the README table, this
list and a live server's ``/metrics``. Names follow Prometheus' conventions: base units
(seconds, bytes, ratios 0-1), ``_duration_seconds`` histograms, counters end in ``_total``, no
``_created`` series. Label values are bounded: models and versions are the served ones (others
count as ``_unknown``), the rest come from fixed sets, the contract or the reference profile,
never from clients.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDoc:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    help: str
    present: str = "always"

    def spec(self) -> tuple[str, str, tuple[str, ...]]:
        """(name, help, labels) as prometheus_client's constructors take them."""
        return self.name, self.help, self.labels


_MV = ("model", "version")
_MONITOR = "monitor.enabled (series: per served version, once it has data)"
_ROLLOUT = "series while a rollout runs"
_GPU = "with an NVIDIA GPU and NVML"

SERVING = (
    MetricDoc("visionyard_requests_total", "counter", (*_MV, "protocol", "status"),
              "Inference requests by outcome (status: ok, the domain error code, or internal: "
              "a server bug)"),
    MetricDoc("visionyard_request_duration_seconds", "histogram", (*_MV, "protocol", "stage"),
              "Inference latency by stage (queue, preprocess, inference, total)"),
    MetricDoc("visionyard_batch_size", "histogram", ("model",), "Images per executed batch"),
    MetricDoc("visionyard_queue_depth", "gauge", ("model",),
              "Requests admitted and not finished"),
    MetricDoc("visionyard_model_info", "gauge", (*_MV, "variant", "reference"),
              "1 for the version being served"),
    MetricDoc("visionyard_model_load_failures_total", "counter", ("model",),
              "Versions that failed to resolve, load or verify"),
    MetricDoc("visionyard_model_swaps_total", "counter", ("model",), "Version switches"),
)  # fmt: skip
MONITOR = (
    MetricDoc("visionyard_drift_statistic", "gauge", (*_MV, "feature"),
              "Drift test statistic per feature", _MONITOR),
    MetricDoc("visionyard_drift_p_value", "gauge", (*_MV, "feature"),
              "Drift p-value per feature, corrected for testing many features "
              "(Benjamini-Hochberg)", _MONITOR),
    MetricDoc("visionyard_drift_detected", "gauge", _MV,
              "1 when any feature drifts, else 0", _MONITOR),
    MetricDoc("visionyard_monitor_window_size", "gauge", _MV,
              "Images in the live window", _MONITOR),
    MetricDoc("visionyard_confidence_quantile", "gauge", (*_MV, "quantile"),
              "Top-1 confidence quantiles over the live window", _MONITOR),
    MetricDoc("visionyard_class_share", "gauge", (*_MV, "label"),
              "Share of each predicted class in the live window", _MONITOR),
    MetricDoc("visionyard_captured_total", "counter", ("model",),
              "Images written by the capture writer", "monitor.capture.dir set"),
    MetricDoc("visionyard_capture_dropped_total", "counter", ("model", "reason"),
              "Images the capture writer dropped (queue_full, rate_limit, quota, write_error)",
              "monitor.capture.dir set"),
)  # fmt: skip
ROLLOUT = (
    MetricDoc("visionyard_rollout_requests_total", "counter", (*_MV, "role", "status"),
              "Requests during a rollout by version, role and outcome (ok, error, "
              "client_error)", _ROLLOUT),
    MetricDoc("visionyard_rollout_request_duration_seconds", "histogram", (*_MV, "role"),
              "Latency during a rollout by version and role (a shadow's: its own inference)",
              _ROLLOUT),
    MetricDoc("visionyard_shadow_compared_total", "counter", (*_MV, "result"),
              "Images answered by production and the shadow candidate, by result (agree, "
              "disagree)", _ROLLOUT),
    MetricDoc("visionyard_shadow_agreement", "gauge", _MV,
              "Share of images of the current step on which the shadow agrees with production",
              _ROLLOUT),
    MetricDoc("visionyard_shadow_confidence_delta", "gauge", _MV,
              "Mean top-1 confidence of the shadow minus production's over the current step",
              _ROLLOUT),
    MetricDoc("visionyard_shadow_shed_total", "counter", ("model", "reason"),
              "Shadow requests not run (busy: production needs the capacity, queue_full, "
              "candidate_busy, unavailable)", _ROLLOUT),
    MetricDoc("visionyard_rollout_step", "gauge", (*_MV, "mode"),
              "Index of the rollout step followed", _ROLLOUT),
    MetricDoc("visionyard_rollout_share_ratio", "gauge", (*_MV, "mode"),
              "Share (0-1) of requests routed (canary) or mirrored (shadow) to the candidate",
              _ROLLOUT),
    MetricDoc("visionyard_rollout_decisions_total", "counter", ("model", "action"),
              "Rollout decisions recorded by this server (advance, promote, rollback)",
              _ROLLOUT),
)  # fmt: skip
GPU = (
    MetricDoc("visionyard_gpu_utilization_ratio", "gauge", ("device",),
              "Share (0-1) of the last sample period the GPU was busy", _GPU),
    MetricDoc("visionyard_gpu_memory_used_bytes", "gauge", ("device",),
              "GPU memory in use, bytes", _GPU),
    MetricDoc("visionyard_gpu_memory_total_bytes", "gauge", ("device",),
              "GPU memory installed, bytes", _GPU),
    MetricDoc("visionyard_gpu_temperature_celsius", "gauge", ("device",),
              "GPU core temperature, degrees Celsius", _GPU),
    MetricDoc("visionyard_gpu_power_watts", "gauge", ("device",), "GPU power draw, watts", _GPU),
)  # fmt: skip
_LINUX = "Linux (prometheus_client's process collector)"
_GEN = ("generation",)
PROCESS = (
    MetricDoc("process_cpu_seconds_total", "counter", (), "CPU time, seconds", _LINUX),
    MetricDoc("process_virtual_memory_bytes", "gauge", (), "Virtual memory, bytes", _LINUX),
    MetricDoc("process_resident_memory_bytes", "gauge", (), "Resident memory, bytes", _LINUX),
    MetricDoc("process_start_time_seconds", "gauge", (),
              "Start time, seconds since the Unix epoch", _LINUX),
    MetricDoc("process_open_fds", "gauge", (), "Open file descriptors", _LINUX),
    MetricDoc("process_max_fds", "gauge", (), "Maximum open file descriptors", _LINUX),
    MetricDoc("python_info", "gauge", ("implementation", "major", "minor", "patchlevel",
              "version"), "Python platform information (value 1)"),
    MetricDoc("python_gc_objects_collected_total", "counter", _GEN,
              "Objects collected during GC, by generation"),
    MetricDoc("python_gc_objects_uncollectable_total", "counter", _GEN,
              "Uncollectable objects found during GC, by generation"),
    MetricDoc("python_gc_collections_total", "counter", _GEN,
              "Times each generation was collected"),
)  # fmt: skip
METRICS = SERVING + MONITOR + ROLLOUT + GPU + PROCESS
BY_NAME = {doc.name: doc for doc in METRICS}


def spec(name: str) -> tuple[str, str, tuple[str, ...]]:
    """(name, help, labels) of a documented metric (KeyError: document it here first)."""
    return BY_NAME[name].spec()


def markdown_table() -> str:
    """The README's metrics table."""
    rows = ["| metric | type | labels | meaning | present |", "|---|---|---|---|---|"]
    for doc in METRICS:
        labels = ", ".join(f"`{label}`" for label in doc.labels) or "-"
        rows.append(f"| `{doc.name}` | {doc.kind} | {labels} | {doc.help} | {doc.present} |")
    return "\n".join(rows)


def parse_markdown_table(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{name: (type, labels)} from a table :func:`markdown_table` wrote (e.g. in README.md)."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            labels = tuple(c.strip("` ") for c in cells[2].split(",") if c.strip("` -"))
            found[cells[0].strip("`")] = (cells[1], labels)
    return found
