"""A run as plain values (:class:`RunInfo`), apart from MLflow: :mod:`visionyard.tracking.queries`
makes them from MLflow's runs, :mod:`visionyard.tracking.sqlite_read` from a SQLite store's rows,
and the registry's read views import them without importing MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from visionyard.errors import NotFoundError


@dataclass(frozen=True)
class DatasetRef:
    name: str
    digest: str
    context: str | None
    full_digest: str | None


@dataclass(frozen=True)
class RunInfo:
    """A run as plain values; ``metrics`` holds each metric's latest value."""

    run_id: str
    experiment_id: str
    name: str | None
    status: str
    start_time: datetime | None
    end_time: datetime | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[DatasetRef] = field(default_factory=list)


def ms_time(ms: int | None) -> datetime | None:
    """MLflow's epoch milliseconds as an aware datetime (0 or None: not set)."""
    return None if not ms else datetime.fromtimestamp(ms / 1000, tz=UTC)


def run_not_found(run_id: str) -> NotFoundError:
    """The error of every reader (MLflow's, SQLite's) for an unknown run."""
    return NotFoundError("run", run_id, "see `visionyard runs list`")
