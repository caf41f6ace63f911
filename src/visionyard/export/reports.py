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

from visionyard.export.prune_spec import Pruning, lineage_text
from visionyard.runtime.variants import Precision

REPORTS_FILE = "reports/variants.json"
REPORT_DIR = "reports/variants"
Status = Literal["passed", "rejected", "forced", "reference"]
#: What a variant was measured against: the evaluation set's labels, or (no labels given) the
#: FP32 model's own answers on images held out from calibration.
Comparison = Literal["labels", "agreement with fp32"]
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
    unreadable: int = 0


class Speed(_Frozen):
    """Model time alone on ``provider``: batch-1 percentiles and batch-N throughput."""

    provider: str
    threads: int
    latency_p50_ms: float
    latency_p90_ms: float
    throughput_batch_size: int
    throughput_images_per_s: float


class Quality(_Frozen):
    """The variant's headline metric against the FP32 reference on the same evaluation set.

    With ``comparison == "agreement with fp32"`` there were no labels: the metric IS the
    agreement (``top1_agreement``, ``box_agreement``), ``delta_points`` is None (no accuracy
    was measured) and ``per_class`` holds, per class FP32 answered, the share the variant
    answered alike."""

    metric: str
    value: float
    reference: float
    delta_points: float | None
    agreement: float
    max_abs_diff: float | None
    class_metric: Literal["recall", "ap", "agreement"]
    per_class: list[ClassChange]
    comparison: Comparison = "labels"


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
    pruning: Pruning | None = None  # pruned variants: configuration, fine-tuning run, result

    def summary(self) -> dict[str, Any]:
        """The ``reports/variants.json`` entry: the runtime's fields plus the headline."""
        return {
            "passed": self.passed,
            "latency_p50_ms": self.speed.latency_p50_ms,
            "provider": self.speed.provider,
            "precision": self.precision,
            "status": self.status,
            "metric": self.quality.metric,
            "comparison": self.quality.comparison,
            "delta_points": self.quality.delta_points,
            "agreement": self.quality.agreement,
            "speedup_vs_fp32": self.speedup_vs_fp32,
            "throughput_images_per_s": self.speed.throughput_images_per_s,
            "file": self.file,
            "file_size_bytes": self.file_size_bytes,
        }


def tag_summary(report: VariantReport) -> str:
    """One line for a registry tag: ``passed accuracy -0.3pt 2.80x 11.2MB`` (with labels) or
    ``passed top1_agreement 0.9900 2.80x 11.2MB`` (compared with FP32's answers)."""
    quality = report.quality
    change = (
        f"{quality.value:.4f}" if quality.delta_points is None else f"{quality.delta_points:+.1f}pt"
    )
    line = (
        f"{report.status} {quality.metric} {change} "
        f"{report.speedup_vs_fp32:.2f}x {report.file_size_bytes / 1e6:.1f}MB"
    )
    return line if report.pruning is None else f"{line}; {lineage_text(report.pruning)}"


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
