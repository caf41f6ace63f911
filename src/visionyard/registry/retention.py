"""Retention: which versions ``visionyard gc`` may delete (pure policy).

A version is kept when it is among the ``keep_last`` newest, when an alias holds it, or when it
is named (as the holder before or after a move) in the last ``protect_events`` history events of
any alias, so a recent rollback target is never deleted. Everything else is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from visionyard.errors import RegistryError
from visionyard.registry.history import AliasEvent, recent_versions


@dataclass(frozen=True)
class RetentionPlan:
    delete: tuple[str, ...]
    keep: dict[str, str] = field(default_factory=dict)


def plan_retention(
    versions: Iterable[str],
    aliases: Mapping[str, str],
    history: Sequence[AliasEvent],
    *,
    keep_last: int,
    protect_events: int,
) -> RetentionPlan:
    """Split ``versions`` into those to delete (oldest first) and those kept, with why."""
    if keep_last < 0 or protect_events < 0:
        raise RegistryError("--keep-last and --protect-events must be >= 0")
    ordered = sorted(set(versions), key=int, reverse=True)
    keep: dict[str, str] = {}
    for alias, version in sorted(aliases.items()):
        keep.setdefault(version, f"held by alias {alias!r}")
    for version, why in recent_versions(history, protect_events).items():
        keep.setdefault(version, why)
    for version in ordered[:keep_last]:
        keep.setdefault(version, f"among the {keep_last} newest")
    delete = tuple(sorted((v for v in ordered if v not in keep), key=int))
    return RetentionPlan(delete, {v: keep[v] for v in ordered if v in keep})
