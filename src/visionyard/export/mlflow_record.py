"""Export variants as MLflow runs, so MLflow's UI and comparison views show them.

The variant reports live in packs beside the version (:mod:`visionyard.export.registry`);
this adds, for each measured variant (the FP32 reference included), one MLflow run named
``export <variant>`` in the experiment of the version's training run, so the runs table and
"Compare" put the variants beside the training runs:

- metrics: the headline metric (e.g. ``accuracy``), ``delta_points``, ``agreement``,
  ``max_abs_diff``, ``latency_p50_ms``, ``latency_p90_ms``, ``throughput_images_per_s``,
  ``speedup_vs_fp32``, ``file_size_bytes``, ``passed`` (1/0), and per class
  ``class_<recall|ap|agreement>/<label>`` and ``class_delta/<label>``;
- params: model, version, variant, precision, status, reason, provider, threads, evaluation and
  calibration data (digest, count), the accuracy budget and the tool versions;
- the full report as ``export/<variant>.json``;
- run tags ``visionyard.exported_model`` / ``visionyard.exported_version`` /
  ``visionyard.variant``, and on the version ``vy.export_run.<variant> = <run id>``
  (``models show`` lists it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionyard.export.reports import VariantReport
    from visionyard.settings import Settings

RUN_MODEL_TAG = "visionyard.exported_model"
RUN_VERSION_TAG = "visionyard.exported_version"
RUN_VARIANT_TAG = "visionyard.variant"
VERSION_TAG_PREFIX = "vy.export_run."


def record_export(
    settings: Settings, name: str, version: str, reports: Sequence[VariantReport]
) -> dict[str, str]:
    """One ``export <variant>`` run per report; returns ``{variant: run id}`` (also tagged on
    the version)."""
    from visionyard.tracking.experiments import experiment_of_run
    from visionyard.tracking.registry_client import RegistryClient

    client = RegistryClient.from_settings(settings)
    info = client.get_version(name, str(version))
    experiment = experiment_of_run(info.run_id, settings=settings) if info.run_id else None
    runs: dict[str, str] = {}
    for report in reports:
        runs[report.name] = _log_run(settings, experiment, name, str(version), report)
        client.set_version_tag(name, str(version), VERSION_TAG_PREFIX + report.name,
                               runs[report.name])  # fmt: skip
    return runs


def variant_metrics(report: VariantReport) -> dict[str, float]:
    """The report's numbers as MLflow metrics (see the module docstring)."""
    quality, speed = report.quality, report.speed
    metrics: dict[str, float | None] = {
        _key(quality.metric): quality.value,
        "delta_points": quality.delta_points,
        "agreement": quality.agreement,
        "max_abs_diff": quality.max_abs_diff,
        "latency_p50_ms": speed.latency_p50_ms,
        "latency_p90_ms": speed.latency_p90_ms,
        "throughput_images_per_s": speed.throughput_images_per_s,
        "speedup_vs_fp32": report.speedup_vs_fp32,
        "file_size_bytes": float(report.file_size_bytes),
        "passed": 1.0 if report.passed else 0.0,
    }
    for change in quality.per_class:
        metrics[f"class_{quality.class_metric}/{_key(change.label)}"] = change.after
        metrics[f"class_delta/{_key(change.label)}"] = change.delta
    return {k: float(v) for k, v in metrics.items() if v is not None}


def variant_params(name: str, version: str, report: VariantReport) -> dict[str, Any]:
    """The report's settings and provenance as MLflow params."""
    params: dict[str, Any] = {
        "model": name, "version": version, "variant": report.name,
        "precision": report.precision, "status": report.status, "reason": report.reason[:500],
        "metric": report.quality.metric, "comparison": report.quality.comparison,
        "max_drop_points": report.max_drop_points, "provider": report.speed.provider,
        "threads": report.speed.threads, "batch_size": report.speed.throughput_batch_size,
        "sha256": report.sha256, "eval_digest": report.eval_set.digest,
        "eval_images": report.eval_set.count,
    }  # fmt: skip
    if report.calibration is not None:
        params["calibration_digest"] = report.calibration.digest
        params["calibration_images"] = report.calibration.count
    params.update({f"tool.{k}": v for k, v in report.tool_versions.items()})
    return params


def _log_run(
    settings: Settings, experiment: str | None, name: str, version: str, report: VariantReport
) -> str:
    from visionyard.tracking.run import start_run

    tags = {RUN_MODEL_TAG: name, RUN_VERSION_TAG: version, RUN_VARIANT_TAG: report.name}
    with start_run(experiment, settings=settings, run_name=f"export {report.name}",
                   tags=tags) as run:  # fmt: skip
        run.log_params(variant_params(name, version, report))
        run.log_metrics(0, variant_metrics(report))
        run.log_dict(report.model_dump(mode="json"), f"export/{report.name}.json")
        return run.run_id


def _key(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . / `` and spaces in metric names."""
    return re.sub(r"[^\w\-./ ]", "_", name)
