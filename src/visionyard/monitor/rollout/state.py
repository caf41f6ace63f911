"""A rollout as registry state: the :class:`Rollout` value, its JSON, and the cheap read.

The state lives on the registered model, so every replica following the model sees the same
rollout within its poll interval and a restarted replica resumes it:

- ``vy.rollout.event.<ns>.<hex>``: one tag per transition (start, advance, promote, rollback,
  abort), each holding the full state after it (:mod:`~visionyard.monitor.rollout.events`);
  the chain of winning events is the source of truth;
- ``vy.rollout``: the projection, the state of the last transition whose effects are complete
  (for the MLflow UI and stock clients).

:func:`read_rollout` costs one ``get_model`` (tags included) and returns the chain's head.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from visionyard.errors import RegistryError
from visionyard.monitor.rollout.policy import Policy

ROLLOUT_TAG = "vy.rollout"
SCHEMA = 1
#: The alias a rollout protects (the one ``visionyard promote`` moves by default).
PRODUCTION_ALIAS = "production"

Mode = Literal["canary", "shadow"]
Status = Literal["running", "promoted", "rolled_back", "aborted"]
MODES: tuple[str, ...] = ("canary", "shadow")
STATUSES: tuple[str, ...] = ("running", "promoted", "rolled_back", "aborted")


class RolloutStateError(RegistryError):
    """A rollout tag that cannot be read (edited by hand, or from a newer visionyard)."""

    def __init__(self, model: str, key: str, problem: str) -> None:
        super().__init__(
            f"rollout state {key!r} of {model!r} is unreadable ({problem}); restore or delete "
            "that registered-model tag (MLflow UI, or MlflowClient.delete_registered_model_tag)"
        )
        self.model = model
        self.key = key


@dataclass(frozen=True)
class Rollout:
    """One rollout of ``candidate`` against ``baseline`` (production's holder at the start).

    ``step`` indexes ``steps`` (traffic percentages; a shadow has one step, its sampled share).
    ``decided_at``, ``rule``, ``reason`` and ``figures`` describe the last recorded decision
    (None / empty before the first). ``basis`` is the key of the event this state comes from.
    """

    model: str
    rollout_id: str
    candidate: str
    baseline: str
    mode: Mode
    steps: tuple[int, ...]
    step: int
    step_started_at: float
    sticky_header: str | None
    policy: Policy
    status: Status
    started_at: float
    decided_at: float | None = None
    reason: str | None = None
    figures: dict[str, float] = field(default_factory=dict)
    rule: str | None = None
    basis: str | None = None

    @property
    def share(self) -> int:
        """The candidate's traffic (canary) or sampled (shadow) percentage now; 0 when over."""
        return self.steps[self.step] if self.running else 0

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def last_step(self) -> bool:
        return self.step >= len(self.steps) - 1

    def evolve(self, **changes: Any) -> Rollout:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["policy"] = self.policy.model_dump(mode="json")
        body["steps"] = list(self.steps)
        return {"schema": SCHEMA, **body}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Rollout:
        """Parse a stored state; ValueError/KeyError/TypeError when it is not one."""
        schema = body.get("schema")
        if schema != SCHEMA:
            raise ValueError(f"schema {schema!r}, this visionyard reads schema {SCHEMA}")
        mode, status = body["mode"], body["status"]
        if mode not in MODES or status not in STATUSES:
            raise ValueError(f"mode {mode!r} / status {status!r}")
        steps = tuple(int(s) for s in body["steps"])
        step = int(body["step"])
        if not 0 <= step < len(steps):
            raise ValueError(f"step {step} outside steps {list(steps)}")
        return cls(
            model=str(body["model"]), rollout_id=str(body["rollout_id"]),
            candidate=str(body["candidate"]), baseline=str(body["baseline"]), mode=mode,
            steps=steps, step=step, step_started_at=float(body["step_started_at"]),
            sticky_header=_opt_str(body.get("sticky_header")),
            policy=Policy.model_validate(body["policy"]), status=status,
            started_at=float(body["started_at"]), decided_at=_opt_float(body.get("decided_at")),
            reason=_opt_str(body.get("reason")),
            figures={str(k): float(v) for k, v in (body.get("figures") or {}).items()},
            rule=_opt_str(body.get("rule")), basis=_opt_str(body.get("basis")),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Rollout:
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return cls.from_dict(body)


class ModelReader(Protocol):
    """What :func:`read_rollout` needs: ``RegistryClient`` fits."""

    def get_model(self, name: str) -> Any: ...


class HasClient(Protocol):
    """``Registry`` fits: a service holding a registry client."""

    @property
    def client(self) -> Any: ...


def read_rollout(registry: ModelReader | HasClient, name: str) -> Rollout | None:
    """The model's current rollout (running or finished), or None when it never had one.

    One ``get_model`` call. Raises :class:`~visionyard.errors.NotFoundError` for an unknown
    model and :class:`RolloutStateError` (a :class:`RegistryError`) for an unreadable state.
    """
    from visionyard.monitor.rollout.events import head_of

    client = registry if hasattr(registry, "get_model") else registry.client
    tags: dict[str, str] = client.get_model(name).tags
    head = head_of(name, tags)
    if head is not None:
        return head.state
    return projection(name, tags)


def projection(name: str, tags: dict[str, str]) -> Rollout | None:
    """The ``vy.rollout`` tag parsed (None when absent)."""
    text = tags.get(ROLLOUT_TAG)
    if text is None:
        return None
    return parse_state(name, ROLLOUT_TAG, text)


def parse_state(name: str, key: str, text: str) -> Rollout:
    try:
        return Rollout.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise RolloutStateError(name, key, str(exc) or type(exc).__name__) from exc


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
