"""Experiment tracking on MLflow: runs, batched metrics, environment capture, artifacts.

This is the only package that imports mlflow. Embedded default: a SQLite store and an artifact
folder under the project's ``.visionyard/``; team mode: an ``http(s)://`` MLflow server or a
``postgresql://`` store, by configuration (``VISIONYARD_TRACKING__URI``).
"""

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
