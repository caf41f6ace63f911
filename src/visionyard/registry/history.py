"""Alias history: the event records, their tag encoding, and the pure policy read from them.

Every alias move (promote, force, rollback) is ONE event stored as a registered-model tag, so
the stock MLflow UI and clients see it::

    key   = "vy.event.<time in ns, 19 digits>.<8 random hex digits>"
    value = {"alias": ..., "from": ..., "to": ..., "actor": ..., "time_ms": ..., "kind": ...,
             "reason": ..., "gate_report": ..., "gate_passed": ...}       (compact JSON)

Keys are unique (a random suffix) and sort in time order (fixed-width nanoseconds), so writing
an event is an insert that can never overwrite another one, and "the last event of an alias"
is well defined for every reader: the greatest key among that alias's events.

Rollback targets come from replaying an alias's events as a stack of holders
(:func:`holder_stack`): promote and force push the new holder; a rollback truncates the stack
back to the version it moved to. So repeated rollbacks walk further back, and a rollback is
itself undone by the next promotion.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from visionyard.errors import NotFoundError, RegistryError

EVENT_PREFIX = "vy.event."
EventKind = Literal["promote", "force", "rollback"]
KINDS: tuple[str, ...] = ("promote", "force", "rollback")


@dataclass(frozen=True)
class AliasEvent:
    """One alias move. ``from_version`` is None when the alias was not set before."""

    key: str
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    time_ms: int
    kind: EventKind
    reason: str = ""
    gate_report: str | None = None
    gate_passed: bool | None = None

    def to_tag(self) -> tuple[str, str]:
        """The (key, value) of the registered-model tag that stores this event."""
        body = asdict(self)
        del body["key"]
        body["from"] = body.pop("from_version")
        body["to"] = body.pop("to_version")
        return self.key, json.dumps(body, separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_event_key(now_ns: int | None = None, suffix: str | None = None) -> str:
    """A unique key sorting in time order: nanoseconds, then a random tie-breaker."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{EVENT_PREFIX}{stamp:019d}.{suffix or secrets.token_hex(4)}"


def new_event(
    alias: str,
    from_version: str | None,
    to_version: str,
    *,
    actor: str,
    kind: EventKind,
    reason: str = "",
    gate_report: str | None = None,
    gate_passed: bool | None = None,
) -> AliasEvent:
    """A fresh event stamped now, with a new unique key."""
    key = new_event_key()
    time_ms = int(key.split(".")[2]) // 1_000_000
    return AliasEvent(
        key, alias, from_version, to_version, actor, time_ms, kind, reason, gate_report, gate_passed
    )


def decode_event(key: str, value: str) -> AliasEvent | None:
    """The event stored under a tag, or None when the tag is not a well-formed event."""
    if not key.startswith(EVENT_PREFIX):
        return None
    try:
        body = json.loads(value)
        event = AliasEvent(
            key=key,
            alias=str(body["alias"]),
            from_version=None if body.get("from") is None else str(body["from"]),
            to_version=str(body["to"]),
            actor=str(body.get("actor", "")),
            time_ms=int(body["time_ms"]),
            kind=body["kind"],
            reason=str(body.get("reason", "")),
            gate_report=body.get("gate_report"),
            gate_passed=body.get("gate_passed"),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return event if event.kind in KINDS else None


def parse_history(tags: Mapping[str, str]) -> list[AliasEvent]:
    """All well-formed events among a registered model's tags, oldest first."""
    events = (decode_event(k, v) for k, v in tags.items() if k.startswith(EVENT_PREFIX))
    return sorted((e for e in events if e is not None), key=lambda e: e.key)


def events_for(history: Iterable[AliasEvent], alias: str) -> list[AliasEvent]:
    """The events of one alias, keeping the history's order."""
    return [e for e in history if e.alias == alias]


def last_event(history: Sequence[AliasEvent], alias: str) -> AliasEvent | None:
    """The event with the greatest key for ``alias``: the move the alias must reflect."""
    for event in reversed(history):
        if event.alias == alias:
            return event
    return None


def holder_stack(events: Iterable[AliasEvent]) -> list[str]:
    """Replay one alias's events: the holders a rollback can return to, current one last.

    A rollback truncates the stack back to the version it moved to. A promotion first truncates
    back to its ``from`` version when that is not the top: it was planned against an older
    holder, so the move it raced with (and lost to) never really held the alias.
    """
    stack: list[str] = []
    for event in events:
        if event.kind == "rollback" and event.to_version in stack:
            del stack[_last_index(stack, event.to_version) + 1 :]
            continue
        base = event.from_version
        if base is not None and stack and stack[-1] != base and base in stack:
            del stack[_last_index(stack, base) + 1 :]
        if not stack or stack[-1] != event.to_version:
            stack.append(event.to_version)
    return stack


def superseded(history: Sequence[AliasEvent]) -> set[str]:
    """Keys of moves that lost a race: the next move of the same alias was planned against the
    same holder, so the alias never (or only for an instant) pointed at their target."""
    lost: set[str] = set()
    previous: dict[str, AliasEvent] = {}
    for event in history:
        before = previous.get(event.alias)
        if (
            before is not None
            and event.kind != "rollback"
            and event.from_version != before.to_version
            and event.from_version == before.from_version
        ):
            lost.add(before.key)
        previous[event.alias] = event
    return lost


def rollback_target(
    history: Sequence[AliasEvent], alias: str, exists: Callable[[str], bool]
) -> tuple[str, str]:
    """(current holder, previous holder) for a rollback of ``alias``: the newest earlier holder
    in the replayed stack that still ``exists``; :class:`RegistryError` when there is none."""
    stack = holder_stack(events_for(history, alias))
    if not stack:
        raise RegistryError(f"alias {alias!r} has no history to roll back")
    for candidate in reversed(stack[:-1]):
        if candidate != stack[-1] and exists(candidate):
            return stack[-1], candidate
    raise RegistryError(
        f"alias {alias!r} has no earlier holder to roll back to (holders so far: "
        f"{', '.join(stack)})"
    )


def recent_versions(history: Sequence[AliasEvent], last_k: int) -> dict[str, str]:
    """Versions named (from or to) in the last ``last_k`` events of each alias -> why."""
    named: dict[str, str] = {}
    for alias in sorted({e.alias for e in history}):
        for event in events_for(history, alias)[-last_k:] if last_k > 0 else []:
            for version in (event.from_version, event.to_version):
                if version is not None:
                    named.setdefault(version, f"in the last {last_k} events of {alias!r}")
    return named


def _last_index(stack: list[str], version: str) -> int:
    return len(stack) - 1 - stack[::-1].index(version)


def check_alias(alias: str, allowed: Sequence[str]) -> None:
    """:class:`NotFoundError` unless ``alias`` is one of the configured aliases."""
    if alias not in allowed:
        raise NotFoundError(
            "alias", alias, f"configured aliases: {', '.join(allowed)} (registry.aliases)"
        )
