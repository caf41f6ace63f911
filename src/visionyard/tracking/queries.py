"""Read runs back: summaries for the CLI and the registry, metric histories, artifacts.

Everything returned is a plain value object, so callers never handle mlflow entities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from visionyard.errors import NotFoundError
from visionyard.settings import Settings, load_settings
from visionyard.tracking.run_records import DatasetRef as DatasetRef
from visionyard.tracking.run_records import RunInfo as RunInfo
from visionyard.tracking.run_records import ms_time, run_not_found
from visionyard.tracking.store import TrackingConfig, connect
from visionyard.tracking.translate import translate_errors


def get_run_info(run_id: str, *, settings: Settings | None = None) -> RunInfo:
    """The run ``run_id``; :class:`NotFoundError` when the store has no such run."""
    client, config = _client(settings)
    return _run_info(fetch_run(client, config, run_id))


def list_runs(
    experiment: str | None = None, *, settings: Settings | None = None, max_results: int = 50
) -> list[RunInfo]:
    """Newest runs first, in ``experiment`` (default: every active experiment)."""
    client, config = _client(settings)
    with translate_errors(config.tracking_uri, "search runs"):
        if experiment is None:
            ids = [e.experiment_id for e in client.search_experiments()]
        else:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise NotFoundError("experiment", experiment, "see `visionyard runs list`")
            ids = [found.experiment_id]
        runs = client.search_runs(ids, max_results=max_results, order_by=["start_time DESC"])
    return [_run_info(run) for run in runs]


def metric_history(
    run_id: str, key: str, *, settings: Settings | None = None
) -> list[tuple[int, float]]:
    """Every ``(step, value)`` of metric ``key`` in ``run_id``, by step."""
    client, config = _client(settings)
    with translate_errors(config.tracking_uri, f"read metric {key!r}"):
        history = client.get_metric_history(run_id, key)
    return sorted((int(m.step), float(m.value)) for m in history)


def download_artifacts(
    run_id: str, path: str, dst: Path, *, settings: Settings | None = None
) -> Path:
    """Download artifact ``path`` (file or folder, e.g. ``bundle``) of ``run_id`` into ``dst``."""
    client, config = _client(settings)
    fetch_run(client, config, run_id)
    dst.mkdir(parents=True, exist_ok=True)
    with translate_errors(config.tracking_uri, f"download {path!r} of run {run_id}"):
        return Path(client.download_artifacts(run_id, path, str(dst)))


def fetch_run(client: MlflowClient, config: TrackingConfig, run_id: str) -> Any:
    """The mlflow ``Run``; :class:`NotFoundError` for an unknown id."""
    with translate_errors(config.tracking_uri, f"read run {run_id}"):
        try:
            return client.get_run(run_id)
        except Exception as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise run_not_found(run_id) from exc
            raise


def _client(settings: Settings | None) -> tuple[MlflowClient, TrackingConfig]:
    config = TrackingConfig.from_settings(settings or load_settings().settings)
    return connect(config), config


def _run_info(run: Any) -> RunInfo:
    info, data = run.info, run.data
    return RunInfo(
        run_id=info.run_id,
        experiment_id=str(info.experiment_id),
        name=info.run_name,
        status=info.status,
        start_time=ms_time(info.start_time),
        end_time=ms_time(info.end_time),
        artifact_uri=info.artifact_uri,
        params=dict(data.params),
        metrics={k: float(v) for k, v in data.metrics.items()},
        tags=dict(data.tags),
        datasets=[_dataset_ref(d) for d in (run.inputs.dataset_inputs if run.inputs else [])],
    )


def _dataset_ref(dataset_input: Any) -> DatasetRef:
    tags = {t.key: t.value for t in dataset_input.tags}
    ds = dataset_input.dataset
    return DatasetRef(
        ds.name, ds.digest, tags.get("mlflow.data.context"), tags.get("visionyard.digest")
    )
