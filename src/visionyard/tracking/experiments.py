"""Experiments by name or id: what the CLI accepts wherever it takes an experiment.

MLflow's own CLI and UI mix names and ids; a person remembers names. :func:`resolve_experiment`
takes either (a name first, then an id) and answers with the name, so every command can keep
working with names; :func:`experiment_names` maps ids back to names for tables.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from visionyard.errors import NotFoundError
from visionyard.settings import Settings
from visionyard.tracking.store import TrackingConfig, connect
from visionyard.tracking.translate import translate_errors


def resolve_experiment(name_or_id: str, *, settings: Settings) -> str:
    """The name of the experiment called ``name_or_id``, else of the one with that id."""
    client, config = _client(settings)
    with translate_errors(config.tracking_uri, f"find experiment {name_or_id!r}"):
        found = client.get_experiment_by_name(name_or_id)
        if found is None and name_or_id.isdigit():
            try:
                found = client.get_experiment(name_or_id)
            except MlflowException:
                found = None
    if found is None:
        raise NotFoundError("experiment", name_or_id, "see `visionyard runs list`")
    return str(found.name)


def experiment_names(*, settings: Settings) -> dict[str, str]:
    """Every experiment's name by id (deleted ones included, so old runs still show one)."""
    from mlflow.entities import ViewType

    client, config = _client(settings)
    with translate_errors(config.tracking_uri, "list experiments"):
        found = client.search_experiments(view_type=ViewType.ALL)
    return {str(e.experiment_id): str(e.name) for e in found}


def experiment_of_run(run_id: str, *, settings: Settings) -> str | None:
    """The name of the experiment holding ``run_id``; None when the run is gone."""
    client, config = _client(settings)
    with translate_errors(config.tracking_uri, f"read run {run_id}"):
        try:
            experiment_id = client.get_run(run_id).info.experiment_id
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return str(client.get_experiment(experiment_id).name)


def _client(settings: Settings) -> tuple[MlflowClient, TrackingConfig]:
    config = TrackingConfig.from_settings(settings)
    return connect(config), config
