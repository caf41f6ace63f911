"""Experiment tracking on MLflow: runs, batched metrics, environment capture, artifacts.

This is the only package that imports mlflow. Embedded default: a SQLite store and an artifact
folder under the project's ``.visionyard/``; team mode: an ``http(s)://`` MLflow server or a
``postgresql://`` store, by configuration (``VISIONYARD_TRACKING__URI``).

Names are imported lazily (PEP 562), so importing one sub-module (``tracking.store``) does not
import every other (runs, payloads and the contract schema).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionyard.tracking.environment import capture_environment
    from visionyard.tracking.queries import (
        DatasetRef,
        RunInfo,
        download_artifacts,
        get_run_info,
        list_runs,
        metric_history,
    )
    from visionyard.tracking.run import RunStatus, TrackedRun, start_run
    from visionyard.tracking.store import (
        TrackingConfig,
        connect,
        ensure_experiment,
        mlflow_globals,
        ui_command,
    )

_EXPORTS: dict[str, str] = {
    "capture_environment": "visionyard.tracking.environment",
    "DatasetRef": "visionyard.tracking.queries",
    "RunInfo": "visionyard.tracking.queries",
    "download_artifacts": "visionyard.tracking.queries",
    "get_run_info": "visionyard.tracking.queries",
    "list_runs": "visionyard.tracking.queries",
    "metric_history": "visionyard.tracking.queries",
    "RunStatus": "visionyard.tracking.run",
    "TrackedRun": "visionyard.tracking.run",
    "start_run": "visionyard.tracking.run",
    "TrackingConfig": "visionyard.tracking.store",
    "connect": "visionyard.tracking.store",
    "ensure_experiment": "visionyard.tracking.store",
    "mlflow_globals": "visionyard.tracking.store",
    "ui_command": "visionyard.tracking.store",
}

__all__ = [
    "DatasetRef",
    "RunInfo",
    "RunStatus",
    "TrackedRun",
    "TrackingConfig",
    "capture_environment",
    "connect",
    "download_artifacts",
    "ensure_experiment",
    "get_run_info",
    "list_runs",
    "metric_history",
    "mlflow_globals",
    "start_run",
    "ui_command",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
