"""The registry's plain values (:class:`VersionInfo`, :class:`ModelInfo`) and their making from
MLflow's records; :mod:`visionyard.tracking.registry_client` holds the calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from visionyard.errors import NotFoundError


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version; ``aliases`` is filled only by single-version reads."""

    name: str
    version: str
    run_id: str | None
    source: str
    model_id: str | None
    created_ms: int
    status: str
    description: str
    user_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its tags (including the alias history) and alias -> version."""

    name: str
    created_ms: int
    updated_ms: int
    description: str
    latest_version: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


def model_not_found(name: str) -> NotFoundError:
    """The error of every reader (MLflow's, SQLite's) for an unknown registered model."""
    return NotFoundError("registered model", name, "see `visionyard models list`")


def version_not_found(name: str, version: str) -> NotFoundError:
    """The error of every reader for an unknown version of a known model."""
    return NotFoundError("version", f"{name}/{version}", f"see `visionyard models show {name}`")


def version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or None,
        source=mv.source or "",
        model_id=getattr(mv, "model_id", None) or model_id_of(mv.source or ""),
        created_ms=int(mv.creation_timestamp or 0),
        status=str(mv.status),
        description=mv.description or "",
        user_id=mv.user_id or None,
        tags=dict(mv.tags or {}),
        aliases=tuple(mv.aliases or ()),
    )


def model_info(rm: Any) -> ModelInfo:
    latest = [int(v.version) for v in rm.latest_versions or []]
    return ModelInfo(
        name=rm.name,
        created_ms=int(rm.creation_timestamp or 0),
        updated_ms=int(rm.last_updated_timestamp or 0),
        description=rm.description or "",
        latest_version=str(max(latest)) if latest else None,
        tags=dict(rm.tags or {}),
        aliases={alias: str(v) for alias, v in (rm.aliases or {}).items()},
    )


def model_id_of(source: str) -> str | None:
    """``models:/m-<id>`` sources name the logged model (the SQL store omits ``model_id``)."""
    rest = source.removeprefix("models:/")
    return rest if rest != source and rest.startswith("m-") and "/" not in rest else None
