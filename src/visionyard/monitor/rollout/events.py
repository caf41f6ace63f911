"""Rollout transitions as registry history events, and the chain every reader agrees on.

Each transition is ONE registered-model tag, written the way alias moves are
(:mod:`visionyard.registry.history`): a fresh unique key that sorts in time order, so the write
is an insert that cannot overwrite or lose another event::

    key   = "vy.rollout.event.<time in ns, 19 digits>.<8 random hex digits>"
    value = {"prev": <key of the event it follows, or null>, "kind": "start" | "advance" |
             "promote" | "rollback" | "abort", "actor": ..., "time_ms": ...,
             "gate_report": ..., "state": <the full rollout state after it>}   (compact JSON)

A writer appends its event with ``prev`` = the head it read. Two writers that read the same
head both append; the **chain** settles them: starting from ``prev = null``, follow at each
link the event with the SMALLEST key among those naming the current one as ``prev``. The first
writer wins: a writer that appends after another's verifying read has a greater key (see
:mod:`visionyard.monitor.rollout.record` on clocks), so it sees it lost and stops. Events off
the chain are superseded: kept (nothing is deleted), never applied.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from visionyard.monitor.rollout.state import Rollout, RolloutStateError

EVENT_PREFIX = "vy.rollout.event."
EventKind = Literal["start", "advance", "promote", "rollback", "abort"]
KINDS: tuple[str, ...] = ("start", "advance", "promote", "rollback", "abort")


@dataclass(frozen=True)
class RolloutEvent:
    """One transition; ``state`` is the rollout after it (``state.basis == key``)."""

    key: str
    prev: str | None
    kind: EventKind
    actor: str
    time_ms: int
    state: Rollout
    gate_report: str | None = None

    def to_tag(self) -> tuple[str, str]:
        body = {
            "prev": self.prev, "kind": self.kind, "actor": self.actor, "time_ms": self.time_ms,
            "gate_report": self.gate_report, "state": self.state.to_dict(),
        }  # fmt: skip
        return self.key, json.dumps(body, separators=(",", ":"), sort_keys=True)


def new_key(now_ns: int | None = None) -> str:
    """A unique key sorting in time order: nanoseconds, then a random tie-breaker."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{EVENT_PREFIX}{stamp:019d}.{secrets.token_hex(4)}"


def new_event(
    prev: str | None, kind: EventKind, state: Rollout, actor: str, gate_report: str | None = None
) -> RolloutEvent:
    """A fresh event stamped now; its state's ``basis`` is its own key."""
    key = new_key()
    time_ms = int(key.removeprefix(EVENT_PREFIX).split(".")[0]) // 1_000_000
    return RolloutEvent(key, prev, kind, actor, time_ms, state.evolve(basis=key), gate_report)


def decode_event(model: str, key: str, value: str) -> RolloutEvent:
    """The event stored under ``key``; :class:`RolloutStateError` when it is not one."""
    try:
        body = json.loads(value)
        kind = body["kind"]
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}")
        state = Rollout.from_dict(body["state"]).evolve(basis=key)
        prev = body.get("prev")
        return RolloutEvent(
            key, None if prev is None else str(prev), kind, str(body.get("actor", "")),
            int(body["time_ms"]), state, body.get("gate_report"),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RolloutStateError(model, key, str(exc) or type(exc).__name__) from exc


def all_events(model: str, tags: Mapping[str, str]) -> list[RolloutEvent]:
    """Every rollout event among a registered model's tags, oldest first."""
    found = [decode_event(model, k, v) for k, v in tags.items() if k.startswith(EVENT_PREFIX)]
    return sorted(found, key=lambda e: e.key)


def chain(events: list[RolloutEvent]) -> list[RolloutEvent]:
    """The winning events in order (see the module docstring)."""
    followers: dict[str | None, RolloutEvent] = {}
    for event in events:  # oldest first: the first follower kept is the smallest key
        followers.setdefault(event.prev, event)
    out: list[RolloutEvent] = []
    seen: set[str] = set()
    current = followers.get(None)
    while current is not None and current.key not in seen:
        out.append(current)
        seen.add(current.key)
        current = followers.get(current.key)
    return out


def superseded(events: list[RolloutEvent]) -> list[RolloutEvent]:
    """Events that lost a race (off the chain)."""
    on_chain = {e.key for e in chain(events)}
    return [e for e in events if e.key not in on_chain]


def head_of(model: str, tags: Mapping[str, str]) -> RolloutEvent | None:
    """The last event of the chain: the current rollout state (None: no rollout ever)."""
    found = chain(all_events(model, tags))
    return found[-1] if found else None
