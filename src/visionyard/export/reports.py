"""The measured report every export variant carries, and the forms it is stored in.

One :class:`VariantReport` per variant (the FP32 reference included, so the runtime compares
latencies measured the same way). Stored inside the bundle, covered by its checksums:

- ``reports/variants.json``: ``{name: summary}``, in the shape
  :func:`visionyard.runtime.choose_variant` reads (``passed``, ``latency_p50_ms``, ``provider``,
  ``precision``) plus the headline numbers;
- ``reports/variants/<name>.json``: the full report (per-class table, tool versions, data
  digests).

On a registered version, :func:`tag_summary` gives the one-line tag value
(``vy.variant.int8 = "passed accuracy -0.3pt 2.80x 11.2MB"``).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from visionyard.runtime.variants import Precision

REPORTS_FILE = "reports/variants.json"
REPORT_DIR = "reports/variants"
Status = Literal["passed", "rejected", "forced", "reference"]
_TOOLS = ("visionyard", "onnx", "onnxruntime", "numpy")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClassChange(_Frozen):
    """One class's metric (recall for classifiers, AP for detectors) before and after."""

    label: str
    before: float | None
    after: float | None
    delta: float | None


class DataRef(_Frozen):
    """The images a number was measured on: content digest, count and where they came from."""

    digest: str
    count: int
    source: str | None = None
    method: str | None = None


class Speed(_Frozen):
    """Model time alone on ``provider``: batch-1 percentiles and batch-N throughput."""

    provider: str
    threads: int
    latency_p50_ms: float
    latency_p90_ms: float
    throughput_batch_size: int
    throughput_images_per_s: float


class Quality(_Frozen):
    """The variant's headline metric against the FP32 reference on the same evaluation set."""

    metric: str
    value: float
    reference: float
    delta_points: float
    agreement: float
    max_abs_diff: float | None
    class_metric: Literal["recall", "ap"]
    per_class: list[ClassChange]


class VariantReport(_Frozen):
    """Everything measured about one variant, and the decision taken on it."""

    name: str
    precision: Precision
    status: Status
    passed: bool
    stored: bool
    reason: str
    max_drop_points: float
    file: str
    file_size_bytes: int
    sha256: str
    quality: Quality
    speed: Speed
    speedup_vs_fp32: float
    eval_set: DataRef
    calibration: DataRef | None = None
    tool_versions: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """The ``reports/variants.json`` entry: the runtime's fields plus the headline."""
        return {
            "passed": self.passed,
            "latency_p50_ms": self.speed.latency_p50_ms,
            "provider": self.speed.provider,
            "precision": self.precision,
            "status": self.status,
            "metric": self.quality.metric,
            "delta_points": self.quality.delta_points,
            "agreement": self.quality.agreement,
            "speedup_vs_fp32": self.speedup_vs_fp32,
            "throughput_images_per_s": self.speed.throughput_images_per_s,
            "file": self.file,
            "file_size_bytes": self.file_size_bytes,
        }


def tag_summary(report: VariantReport) -> str:
    """One line for a registry tag: ``passed accuracy -0.3pt 2.80x 11.2MB``."""
    return (
        f"{report.status} {report.quality.metric} {report.quality.delta_points:+.1f}pt "
        f"{report.speedup_vs_fp32:.2f}x {report.file_size_bytes / 1e6:.1f}MB"
    )


def report_path(name: str) -> str:
    return f"{REPORT_DIR}/{name}.json"


def report_files(
    reports: Mapping[str, VariantReport], existing: Mapping[str, Any]
) -> dict[str, bytes]:
    """Bundle files for ``reports`` (stored variants only), merged into existing summaries."""
    summaries = dict(existing)
    files: dict[str, bytes] = {}
    for name, report in reports.items():
        summaries[name] = report.summary()
        files[report_path(name)] = _dump(report.model_dump(mode="json"))
    files[REPORTS_FILE] = _dump(summaries)
    return files


def tool_versions() -> dict[str, str]:
    """Versions of the tools that produced and measured a variant."""
    versions = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
