"""Evaluation records: ``visionyard evaluate --log`` results kept beside a registered version.

A version's files never change, so an evaluation is recorded in two places that add to it:

- an MLflow run named ``evaluate`` holding the metrics, the parameters (model, version, variant,
  data folder, split, dataset digest) and the report files (``evaluation/report.json``, and the
  confusion-matrix PNG for a classifier);
- one version tag per evaluation, so several accumulate and ``models show`` lists them::

    key   = "vy.eval.<time in ns, 19 digits>.<8 random hex digits>"
    value = {"time_ms": ..., "task": ..., "dataset_digest": ..., "dataset": ..., "split": ...,
             "variant": ..., "samples": ..., "metrics": {...}, "run_id": ...}   (compact JSON)

Keys are unique and sort in time order, like the alias history's events.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionyard.evaluate.classification import ClassificationReport
    from visionyard.evaluate.detection import DetectionReport
    from visionyard.settings import Settings
    from visionyard.tracking.registry_client import VersionInfo

    Report = ClassificationReport | DetectionReport

EVAL_PREFIX = "vy.eval."
RUN_NAME = "evaluate"
ARTIFACT_DIR = "evaluation"
#: Run tags naming the version an ``evaluate`` run scored.
RUN_MODEL_TAG = "visionyard.evaluated_model"
RUN_VERSION_TAG = "visionyard.evaluated_version"
#: Metrics kept in the tag (the run holds every metric, per class included).
SUMMARY = ("accuracy", "top5_accuracy", "macro_f1", "map_50_95", "map_50")
MAX_PATH = 200


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation of a version; ``metrics`` holds the headline figures."""

    key: str
    time_ms: int
    task: str
    dataset_digest: str | None
    dataset: str
    split: str | None
    variant: str | None
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def primary(self) -> tuple[str, float] | None:
        """(name, value) of the headline metric: accuracy, or mAP@[.5:.95]."""
        name = "accuracy" if self.task == "classification" else "map_50_95"
        return (name, self.metrics[name]) if name in self.metrics else None

    def to_tag(self) -> tuple[str, str]:
        """The (key, value) of the version tag that stores this record."""
        body = asdict(self)
        del body["key"]
        return self.key, json.dumps(body, separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_key(now_ns: int | None = None, suffix: str | None = None) -> str:
    """A unique tag key sorting in time order."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{EVAL_PREFIX}{stamp:019d}.{suffix or secrets.token_hex(4)}"


def new_record(
    report: Report, dataset: Path | str, split: str | None, run_id: str | None, key: str = ""
) -> EvaluationRecord:
    """The record of ``report`` (stamped now unless ``key`` is given)."""
    key = key or new_key()
    flat = report.metrics()
    samples = report.sample_count if report.task == "classification" else report.image_count
    return EvaluationRecord(
        key=key, time_ms=_key_ms(key), task=report.task, dataset_digest=report.dataset_digest,
        dataset=_short(str(dataset)), split=split, variant=report.variant, samples=samples,
        metrics={k: round(flat[k], 6) for k in SUMMARY if k in flat}, run_id=run_id,
    )  # fmt: skip


def decode_record(key: str, value: str) -> EvaluationRecord | None:
    """The record stored under ``key``; None for a value that is not one (never raises)."""
    try:
        body = json.loads(value)
        return EvaluationRecord(
            key=key, time_ms=int(body["time_ms"]), task=str(body["task"]),
            dataset_digest=body.get("dataset_digest"), dataset=str(body.get("dataset", "")),
            split=body.get("split"), variant=body.get("variant"), samples=int(body["samples"]),
            metrics={str(k): float(v) for k, v in dict(body.get("metrics", {})).items()},
            run_id=body.get("run_id"),
        )  # fmt: skip
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def parse_evaluations(tags: Mapping[str, str]) -> list[EvaluationRecord]:
    """Every readable evaluation record among a version's tags, oldest first."""
    found = (decode_record(k, v) for k, v in sorted(tags.items()) if k.startswith(EVAL_PREFIX))
    return [record for record in found if record is not None]


def log_evaluation(
    settings: Settings,
    version: VersionInfo,
    report: Report,
    files: Sequence[Path],
    *,
    dataset: Path,
    split: str | None,
) -> EvaluationRecord:
    """Record an evaluation of ``version``: an ``evaluate`` run (metrics, parameters, report
    files), then the version tag naming that run. The version's files are not touched."""
    from visionyard.tracking.registry_client import RegistryClient
    from visionyard.tracking.run import start_run

    about = {RUN_MODEL_TAG: version.name, RUN_VERSION_TAG: version.version}
    with start_run(settings=settings, run_name=RUN_NAME, tags=about) as run:
        params = {"model": version.name, "version": version.version, "variant": report.variant,
                  "dataset": str(dataset), "split": split, "task": report.task,
                  "dataset_digest": report.dataset_digest}  # fmt: skip
        run.log_params({k: v for k, v in params.items() if v is not None})
        run.log_metrics(0, {_metric_key(k): v for k, v in report.metrics().items()})
        for path in files:
            run.log_artifact(path, ARTIFACT_DIR)
        run_id = run.run_id
    record = new_record(report, dataset, split, run_id)
    client = RegistryClient.from_settings(settings)
    client.set_version_tag(version.name, version.version, *record.to_tag())
    return record


def _metric_key(name: str) -> str:
    """MLflow accepts letters, digits, ``_ - . / `` and spaces in metric names."""
    return re.sub(r"[^\w\-./ ]", "_", name)


def _key_ms(key: str) -> int:
    return int(key.removeprefix(EVAL_PREFIX).split(".")[0]) // 1_000_000


def _short(text: str) -> str:
    return text if len(text) <= MAX_PATH else "..." + text[-(MAX_PATH - 3) :]
