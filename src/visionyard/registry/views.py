"""Read-only views for ``models list``, ``models show`` and ``models history``.

Each view costs a fixed, small number of registry reads whatever the number of versions:
one registered-model read (tags = history, and aliases), one version read, one run read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from visionyard.errors import NotFoundError, RegistryError
from visionyard.registry import tags as T
from visionyard.registry.aliases import SyncState, sync_state
from visionyard.registry.evaluations import EvaluationRecord, parse_evaluations
from visionyard.registry.history import AliasEvent, last_event, parse_history
from visionyard.tracking.registry_records import ModelInfo, VersionInfo
from visionyard.tracking.run_records import RunInfo


class RegistryReads(Protocol):
    """The four reads the views make: the MLflow client, or the SQLite shortcut
    (:mod:`visionyard.tracking.sqlite_read`) that answers them without importing MLflow."""

    def get_model(self, name: str) -> ModelInfo: ...

    def list_models(self) -> list[ModelInfo]: ...

    def get_version(self, name: str, version: str) -> VersionInfo: ...

    def get_run(self, run_id: str) -> RunInfo: ...


@dataclass(frozen=True)
class Reference:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}/{self.version}" if self.version else self.name


def parse_reference(text: str) -> Reference:
    """Parse ``NAME[@ALIAS|/VERSION]``; :class:`RegistryError` on a malformed reference."""
    if "@" in text:
        name, alias = text.rsplit("@", 1)
        if name and alias:
            return Reference(name, alias=alias)
    elif "/" in text:
        name, version = text.rsplit("/", 1)
        if name and version.isdigit():
            return Reference(name, version=version)
    elif text:
        return Reference(text)
    raise RegistryError(f"bad model reference {text!r}; use NAME, NAME@ALIAS or NAME/VERSION")


def is_reference(text: str) -> bool:
    """``NAME/VERSION`` or ``NAME@ALIAS`` (what ``bundle verify`` takes besides a folder)."""
    try:
        reference = parse_reference(text)
    except RegistryError:
        return False
    return reference.alias is not None or reference.version is not None


@dataclass(frozen=True)
class AliasView:
    alias: str
    version: str
    sync: SyncState
    last: AliasEvent | None


@dataclass(frozen=True)
class ModelRow:
    """One line of ``models list``."""

    name: str
    latest_version: str | None
    task: str
    aliases: list[AliasView]
    events: int
    last_event: AliasEvent | None


@dataclass(frozen=True)
class VersionView:
    """Everything ``models show`` prints about one version (lineage in one screen)."""

    model: ModelInfo
    version: VersionInfo
    aliases: list[AliasView]
    run: RunInfo | None
    promotions: list[AliasEvent] = field(default_factory=list)
    evaluations: list[EvaluationRecord] = field(default_factory=list)


def list_models(client: RegistryReads) -> list[ModelRow]:
    """Every registered model with its aliases and last alias move."""
    rows = []
    for model in client.list_models():
        history = parse_history(model.tags)
        rows.append(
            ModelRow(
                name=model.name,
                latest_version=model.latest_version,
                task=model.tags.get(T.TASK, "-"),
                aliases=alias_views(model, history),
                events=len(history),
                last_event=history[-1] if history else None,
            )
        )
    return rows


def alias_views(model: ModelInfo, history: list[AliasEvent]) -> list[AliasView]:
    """The model's aliases with their relation to the history (pending/drift flagged)."""
    views = []
    for alias, version in sorted(model.aliases.items()):
        last = last_event(history, alias)
        views.append(AliasView(alias, version, sync_state(version, last), last))
    return views


def show(client: RegistryReads, reference: Reference) -> VersionView:
    """The version a reference points at (``NAME`` alone: the newest version)."""
    model = client.get_model(reference.name)
    version = _resolve(client, model, reference)
    history = parse_history(model.tags)
    run = _run(client, version.run_id)
    mine = [e for e in history if version.version in (e.to_version, e.from_version)]
    held = [a for a in alias_views(model, history) if a.version == version.version]
    return VersionView(model, version, held, run, mine, parse_evaluations(version.tags))


def history(
    client: RegistryReads, name: str, alias: str | None = None, limit: int | None = None
) -> tuple[list[AliasEvent], list[AliasView]]:
    """Events of ``name`` (of one alias), oldest first, the last ``limit``; and alias states."""
    model = client.get_model(name)
    events = parse_history(model.tags)
    if alias is not None:
        events = [e for e in events if e.alias == alias]
    shown = events[-limit:] if limit else events
    return shown, alias_views(model, parse_history(model.tags))


def resolve_version(client: RegistryReads, reference: Reference) -> VersionInfo:
    """The version a reference points at."""
    return _resolve(client, client.get_model(reference.name), reference)


def _resolve(client: RegistryReads, model: ModelInfo, reference: Reference) -> VersionInfo:
    if reference.alias is not None:
        version = model.aliases.get(reference.alias)
        if version is None:
            known = ", ".join(sorted(model.aliases)) or "none set"
            raise NotFoundError("alias", str(reference), f"aliases of {model.name}: {known}")
        return client.get_version(model.name, version)
    if reference.version is not None:
        return client.get_version(model.name, reference.version)
    if model.latest_version is None:
        raise NotFoundError("version", f"{model.name}/latest", "the model has no versions")
    return client.get_version(model.name, model.latest_version)


def _run(client: RegistryReads, run_id: str | None) -> RunInfo | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except NotFoundError:
        return None
