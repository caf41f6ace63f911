"""Moving an alias and recording the move: a protocol that is safe under concurrency.

MLflow offers no transaction and no compare-and-set over aliases and tags: ``set alias`` is
last-writer-wins, and a tag write with a new key is an insert. The protocol is built on those two
facts. The alias *history* (events stored as uniquely keyed registered-model tags, see
:mod:`visionyard.registry.history`) is the source of truth, and the alias is its projection:

**Invariant** -- once no move is in progress, every alias equals the ``to`` version of its last
event (greatest key), and every event ever appended is still in the history.

A move of alias ``A`` to version ``V``:

1. *Plan*: read the holder ``H`` and the key ``K`` of ``A``'s last event (gates run against
   ``H`` after this).
2. *Compare*: read again; if the holder is no longer ``H`` or the last key is no longer ``K``,
   another move happened meanwhile: stop with a conflict (nothing written; run it again).
3. *Append* the event ``H -> V`` under a fresh key (time in ns + random suffix). An insert of a
   unique key: it cannot overwrite or lose another event, whatever runs concurrently.
4. *Converge*: repeat { read holder and history in ONE read; if the holder equals the last
   event's ``to``, stop; else set the alias to the last event's ``to`` }.
5. *Report*: if the last event is ours the move is applied; otherwise a concurrent move with a
   greater key won, our event stays in the history (nothing is lost) and the caller reports a
   conflict.

Why the invariant holds: consider the last ``set alias`` of all processes, made by P. Every
event was appended before its writer's first ``set alias`` (step 3 precedes step 4), hence
before P's last write, hence P's verifying read after that write sees every event and the final
alias value; P stops only when the value equals the greatest event's ``to``. Steps 2-3 are not
atomic, so two moves can both pass the comparison; step 4 then settles them by key order, the
same order every reader uses, and clock skew between clients can only change which of two racing
moves wins, never the invariant.

Crash or lost server between steps 3 and 4: the event exists but the alias still shows ``H``
(never a third value: an alias write is atomic). :func:`reconcile`, run first by every promote and
rollback, completes such an interrupted move (holder == last event's ``from``); ``show`` and
``history`` flag it as pending. A rollback that completes an interrupted rollback stops there:
that move started from the holder the user saw, so it is the rollback asked for (a retry after a
kill must go back one step, not two). An alias moved with a stock MLflow client (holder matching
neither side of the last event) is reported as drift and left alone; the next move records it as
``from``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from visionyard.errors import RegistryError, TrackingUnavailableError, VisionyardError
from visionyard.registry.history import AliasEvent, last_event, parse_history
from visionyard.tracking.registry_records import ModelInfo

MAX_ROUNDS = 25
SyncState = Literal["in-sync", "pending", "drift", "no-history"]


class MoveInterruptedError(TrackingUnavailableError):
    """The store went away after the event was recorded and before the alias was verified."""

    def __init__(self, cause: TrackingUnavailableError, event: AliasEvent) -> None:
        VisionyardError.__init__(
            self,
            f"{cause.message}. The move of {event.alias!r} from {_show(event.from_version)} "
            f"to version {event.to_version} is recorded; the alias is either unchanged or "
            f"moved, never half-moved. The next promote or rollback of {event.alias!r} "
            "completes it.",
        )
        self.uri = cause.uri
        self.event = event


class AliasStore(Protocol):
    """What the protocol needs from the registry (``RegistryClient`` fits)."""

    def get_model(self, name: str) -> ModelInfo: ...

    def set_model_tag(self, name: str, key: str, value: str) -> None: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...


@dataclass(frozen=True)
class AliasState:
    """One consistent read of an alias: its holder and the whole history."""

    holder: str | None
    history: list[AliasEvent]
    alias: str

    @property
    def last(self) -> AliasEvent | None:
        return last_event(self.history, self.alias)

    @property
    def sync(self) -> SyncState:
        return sync_state(self.holder, self.last)


@dataclass(frozen=True)
class MoveResult:
    event: AliasEvent
    holder: str
    winner: AliasEvent

    @property
    def applied(self) -> bool:
        return self.winner.key == self.event.key


def read_state(store: AliasStore, name: str, alias: str) -> AliasState:
    model = store.get_model(name)
    return AliasState(model.aliases.get(alias), parse_history(model.tags), alias)


def sync_state(holder: str | None, last: AliasEvent | None) -> SyncState:
    """How the alias relates to its last event (see the module docstring)."""
    if last is None:
        return "no-history"
    if holder == last.to_version:
        return "in-sync"
    return "pending" if holder == last.from_version else "drift"


def move_alias(
    store: AliasStore, name: str, event: AliasEvent, expected_key: str | None
) -> MoveResult:
    """Steps 2-5 of the protocol for a planned ``event``; ``expected_key`` is the key of the
    alias's last event when the move was planned (None: no event yet)."""
    state = read_state(store, name, event.alias)
    last_key = state.last.key if state.last else None
    if state.holder != event.from_version or last_key != expected_key:
        raise RegistryError(
            f"alias {event.alias!r} of {name!r} moved while this command ran (now at "
            f"{_show(state.holder)}); nothing was changed: run the command again"
        )
    store.set_model_tag(name, *event.to_tag())
    try:
        holder, winner = converge(store, name, event.alias)
    except TrackingUnavailableError as exc:
        raise MoveInterruptedError(exc, event) from exc
    return MoveResult(event, holder, winner)


def converge(store: AliasStore, name: str, alias: str) -> tuple[str, AliasEvent]:
    """Step 4: make the alias equal its last event's ``to``, verified by a read after the write."""
    for _ in range(MAX_ROUNDS):
        state = read_state(store, name, alias)
        last = state.last
        if last is None:
            raise RegistryError(f"alias {alias!r} of {name!r} has no history to converge to")
        if state.holder == last.to_version:
            return last.to_version, last
        store.set_alias(name, alias, last.to_version)
    raise RegistryError(
        f"alias {alias!r} of {name!r} kept changing for {MAX_ROUNDS} rounds; run the command again"
    )


def reconcile(store: AliasStore, name: str, alias: str) -> tuple[AliasState, bool]:
    """Complete an interrupted move of ``alias`` (state ``pending``); returns the fresh state
    and whether a move was completed."""
    state = read_state(store, name, alias)
    if state.sync != "pending":
        return state, False
    converge(store, name, alias)
    return read_state(store, name, alias), True


def _show(version: str | None) -> str:
    return "no version" if version is None else f"version {version}"
