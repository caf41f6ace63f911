"""Registry reads straight from an MLflow SQLite store, without importing MLflow.

Why by hand: ``import mlflow`` with its SQL stores costs 1.3-2.5 s on a 2-core machine (its
package ``__init__`` imports genai, pandas through ``mlflow.data``, and more), which is more
than the whole budget of ``visionyard models show`` (1.5 s cold); and no library reads MLflow's
store without MLflow. The read views (``models show | list | history``) need four calls
(:meth:`get_model`, :meth:`list_models`, :meth:`get_version`, :meth:`get_run`); this module
answers them with the standard library's ``sqlite3`` on a read-only connection, as the same
plain values the MLflow client gives (a test compares them field by field).

It is only a shortcut, never a second source of truth, so :func:`open_reader` gives ``None``
(and the caller uses the MLflow client) unless every condition holds: the tracking and
registry URIs are one ``sqlite:///`` file that exists; its schema revision is one this module
was checked against (:data:`SCHEMA_REVISIONS`; a test compares it with the head revision of
the installed MLflow, so an upgrade that changes the schema fails CI instead of misreading);
no MLflow workspace is selected. Writes never go through here. A store that cannot be read
(locked past the timeout, corrupt) also falls back to MLflow, which gives its own error.
"""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from visionyard.tracking.registry_records import (
    ModelInfo,
    VersionInfo,
    model_id_of,
    model_not_found,
    version_not_found,
)
from visionyard.tracking.run_records import DatasetRef, RunInfo, ms_time, run_not_found

#: Alembic revisions of MLflow's SQL schema whose tables this module reads as MLflow does.
SCHEMA_REVISIONS = frozenset({"dc11669786a5"})
WORKSPACE = "default"
#: MLflow marks deleted versions with this stage and hides them from every read.
DELETED_STAGE = "Deleted_Internal"
_WORKSPACE_ENV = ("MLFLOW_WORKSPACE", "MLFLOW_ENABLE_WORKSPACES")
_BUSY_TIMEOUT_S = 5.0


class SqliteRegistryReader:
    """Read-only registry and run reads on one MLflow SQLite file (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, uri: str) -> None:
        self._db = connection
        self.uri = uri

    def close(self) -> None:
        self._db.close()

    # -- registered models --------------------------------------------------------------------

    def get_model(self, name: str) -> ModelInfo:
        """The model ``name`` with its tags and aliases; :class:`NotFoundError` if unknown."""
        found = self._models(name)
        if not found:
            raise model_not_found(name)
        return found[0]

    def list_models(self) -> list[ModelInfo]:
        """Every registered model, sorted by name."""
        return sorted(self._models(None), key=lambda m: m.name)

    def _models(self, name: str | None) -> list[ModelInfo]:
        where, args = ("AND name = ?", (name,)) if name is not None else ("", ())
        rows = self._rows(
            "SELECT name, creation_time, last_updated_time, description FROM registered_models "
            f"WHERE workspace = ? {where}", (WORKSPACE, *args),
        )  # fmt: skip
        return [self._model(*row) for row in rows]

    def _model(self, name: str, created: Any, updated: Any, description: Any) -> ModelInfo:
        latest = self._rows(
            "SELECT MAX(version) FROM model_versions WHERE workspace = ? AND name = ? "
            "AND current_stage != ?", (WORKSPACE, name, DELETED_STAGE),
        )[0][0]  # fmt: skip
        return ModelInfo(
            name=name,
            created_ms=int(created or 0),
            updated_ms=int(updated or 0),
            description=description or "",
            latest_version=None if latest is None else str(latest),
            tags=self._pairs("registered_model_tags", "key, value", name),
            aliases=self._pairs("registered_model_aliases", "alias, version", name),
        )

    # -- versions -----------------------------------------------------------------------------

    def get_version(self, name: str, version: str) -> VersionInfo:
        """One version, with its aliases; :class:`NotFoundError` if the model or it is unknown."""
        rows = self._rows(
            "SELECT name, version, run_id, source, creation_time, status, description, user_id "
            "FROM model_versions WHERE workspace = ? AND name = ? AND version = ? "
            "AND current_stage != ?", (WORKSPACE, name, _version_number(version), DELETED_STAGE),
        )  # fmt: skip
        if not rows:
            self.get_model(name)
            raise version_not_found(name, version)
        name, number, run_id, source, created, status, description, user_id = rows[0]
        number = str(number)
        tags = self._rows(
            "SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? "
            "AND version = ?", (WORKSPACE, name, int(number)),
        )  # fmt: skip
        aliases = self._rows(
            "SELECT alias FROM registered_model_aliases WHERE workspace = ? AND name = ? "
            "AND version = ?", (WORKSPACE, name, int(number)),
        )  # fmt: skip
        return VersionInfo(
            name=name,
            version=number,
            run_id=run_id or None,
            source=source or "",
            model_id=model_id_of(source or ""),
            created_ms=int(created or 0),
            status=str(status),
            description=description or "",
            user_id=user_id or None,
            tags=dict(tags),
            aliases=tuple(alias for (alias,) in aliases),
        )

    # -- runs ---------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """The run ``run_id`` as plain values; :class:`NotFoundError` when unknown."""
        rows = self._rows(
            "SELECT run_uuid, experiment_id, name, status, start_time, end_time, artifact_uri "
            "FROM runs WHERE run_uuid = ?", (run_id,),
        )  # fmt: skip
        if not rows:
            raise run_not_found(run_id)
        uuid, experiment, name, status, start, end, artifact_uri = rows[0]
        metrics = self._rows(
            "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (uuid,)
        )
        return RunInfo(
            run_id=uuid,
            experiment_id=str(experiment),
            name=name,
            status=status,
            start_time=ms_time(start),
            end_time=ms_time(end),
            artifact_uri=artifact_uri,
            params=dict(self._rows("SELECT key, value FROM params WHERE run_uuid = ?", (uuid,))),
            metrics={k: math.nan if nan else float(v) for k, v, nan in metrics},
            tags=dict(self._rows("SELECT key, value FROM tags WHERE run_uuid = ?", (uuid,))),
            datasets=self._datasets(uuid),
        )

    def _datasets(self, run_id: str) -> list[DatasetRef]:
        inputs = self._rows(
            "SELECT i.input_uuid, d.name, d.digest FROM inputs i JOIN datasets d "
            "ON d.dataset_uuid = i.source_id WHERE i.source_type = 'DATASET' "
            "AND i.destination_type = 'RUN' AND i.destination_id = ?", (run_id,),
        )  # fmt: skip
        refs = []
        for input_id, name, digest in inputs:
            tags = dict(
                self._rows("SELECT name, value FROM input_tags WHERE input_uuid = ?", (input_id,))
            )
            context, full = tags.get("mlflow.data.context"), tags.get("visionyard.digest")
            refs.append(DatasetRef(name, digest, context, full))
        return refs

    # -- plumbing -----------------------------------------------------------------------------

    def _pairs(self, table: str, columns: str, name: str) -> dict[str, str]:
        rows = self._rows(
            f"SELECT {columns} FROM {table} WHERE workspace = ? AND name = ?", (WORKSPACE, name)
        )
        return {str(k): str(v) for k, v in rows}

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, args).fetchall()


def open_reader(tracking_uri: str, registry_uri: str | None) -> SqliteRegistryReader | None:
    """A reader on the store, or ``None`` when the MLflow client must answer instead."""
    if registry_uri not in (None, tracking_uri) or any(os.environ.get(v) for v in _WORKSPACE_ENV):
        return None
    path = _sqlite_path(tracking_uri)
    if path is None or not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None
    try:
        revision = db.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        revision = []
    if [r for (r,) in revision] not in ([r] for r in SCHEMA_REVISIONS):
        db.close()
        return None
    return SqliteRegistryReader(db, tracking_uri)


def _sqlite_path(uri: str) -> Path | None:
    """``sqlite:////abs/path`` or ``sqlite:///rel/path`` -> the file; None for anything else
    (another scheme, in-memory, URI parameters)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or "?" in uri:
        return None
    rest = uri[len(prefix) :]
    return Path(rest) if rest and rest != ":memory:" else None


def _version_number(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return -1
