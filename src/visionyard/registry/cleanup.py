"""``visionyard gc``: delete old versions (artifacts and metadata), never a live one.

The plan comes from :func:`visionyard.registry.retention.plan_retention`. Right before each
deletion the aliases and history are read again and the version is skipped if it became
protected meanwhile (a promotion racing with gc). MLflow offers no lock, so a promotion that
lands between that re-check and the delete itself (milliseconds) can still lose its version;
the history then shows it, and the alias is removed by MLflow rather than left dangling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from visionyard.registry.history import parse_history, recent_versions
from visionyard.registry.retention import plan_retention
from visionyard.tracking.registry_client import RegistryClient

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GcReport:
    name: str
    dry_run: bool
    deleted: dict[str, int]
    kept: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def bytes_reclaimed(self) -> int:
        return sum(self.deleted.values())


def collect_garbage(
    client: RegistryClient,
    name: str,
    *,
    keep_last: int,
    protect_events: int = 10,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> GcReport:
    """Delete the versions of ``name`` the retention policy does not keep."""
    model = client.get_model(name)
    versions = {v.version: v for v in client.list_versions(name)}
    history = parse_history(model.tags)
    plan = plan_retention(
        versions, model.aliases, history, keep_last=keep_last, protect_events=protect_events
    )
    deleted: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for done, number in enumerate(plan.delete, start=1):
        why = None if dry_run else _now_protected(client, name, number, protect_events)
        if why:
            skipped[number] = why
        elif dry_run:
            deleted[number] = client.artifact_bytes(versions[number])
        else:
            deleted[number] = client.delete_version(versions[number])
        if progress is not None:
            progress(done, len(plan.delete))
    return GcReport(name, dry_run, deleted, plan.keep, skipped)


def _now_protected(client: RegistryClient, name: str, version: str, protect: int) -> str | None:
    model = client.get_model(name)
    for alias, holder in model.aliases.items():
        if holder == version:
            return f"alias {alias!r} moved to it during gc"
    return recent_versions(parse_history(model.tags), protect).get(version)
