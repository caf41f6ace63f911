"""The rollout policy: when a canary or shadow candidate is held, advanced, promoted or rolled
back. A YAML file, validated by pydantic (unknown keys and impossible values are refused with one
line that names the key and the fix)::

    min_requests: 200            # candidate requests in a step before ANY decision (never less)
    min_step_seconds: 60         # a step lasts at least this long before it advances
    max_error_rate: 0.02         # candidate errors / candidate requests, 0..1
    max_p99_latency_ratio: 1.5   # candidate p99 / production p99, > 1
    min_agreement: 0.9           # shadow: share of images where candidate top-1 = production's
    max_drift: 0.25              # share of the drift features flagged (see below), 0..1
    max_duration_seconds: 3600   # optional: a rollout still running after this is rolled back
    steps: [5, 25, 50, 100]      # canary traffic percentages (optional; the CLI can set them)
    gate: gate.yaml              # optional promotion gate file, relative to this file

``max_drift`` is the share of the features tested by :func:`visionyard.monitor.compare` whose
Benjamini-Hochberg-adjusted p-value is at most the monitor's ``alpha`` (``len(drifting) /
features tested``): a share, not a p-value, so it reads the same whatever the feature count and
keeps the multiple-testing correction where it already lives. ``0`` rolls back on any flagged
feature; ``1`` switches the rule off.

``max_duration_seconds`` (default: none) bounds a rollout that cannot finish: a shadow is shed
first while production is busy, so under sustained load it may never reach ``min_requests``,
and a rollout held that long is rolled back with rule ``max_duration`` (its figures, the shed
shadows included, recorded with it) instead of holding for ever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from visionyard.errors import ConfigError

DEFAULT_STEPS: tuple[int, ...] = (5, 25, 50, 100)

#: How to fix each key, quoted in the one-line error.
FIXES: dict[str, str] = {
    "min_requests": "a whole number of requests >= 1, e.g. 200",
    "min_step_seconds": "seconds >= 0, e.g. 60",
    "max_error_rate": "a share between 0 and 1, e.g. 0.02 for 2 %",
    "max_p99_latency_ratio": "a ratio above 1, e.g. 1.5 for 50 % slower than production",
    "min_agreement": "a share between 0 and 1, e.g. 0.9",
    "max_drift": "a share of drift features between 0 and 1, e.g. 0.25",
    "max_duration_seconds": "seconds > 0 from the start of the rollout, e.g. 3600, or null",
    "steps": "increasing traffic percentages between 1 and 100, e.g. [5, 25, 50, 100]",
    "gate": "the path of a promotion gate file (YAML), relative to the policy file",
}


class Policy(BaseModel):
    """A validated rollout policy (frozen; JSON-serialisable into the rollout's state)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_requests: int = Field(100, ge=1)
    min_step_seconds: float = Field(60.0, ge=0)
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_p99_latency_ratio: float = Field(1.5, gt=1)
    min_agreement: float = Field(0.9, ge=0, le=1)
    max_drift: float = Field(0.25, ge=0, le=1)
    max_duration_seconds: float | None = Field(None, gt=0)
    steps: tuple[int, ...] | None = None
    gate: str | None = None

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if steps is not None:
            check_steps(steps)
        return steps


def check_steps(steps: tuple[int, ...]) -> tuple[int, ...]:
    """Steps are 1..100 and strictly increasing; ValueError otherwise."""
    if not steps:
        raise ValueError("needs at least one step")
    if any(not 1 <= s <= 100 for s in steps):
        raise ValueError(f"every step must be between 1 and 100 (got {list(steps)})")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"steps must increase (got {list(steps)})")
    return steps


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; :class:`ConfigError` (one line) when it is wrong. A
    relative ``gate`` is resolved against the file's folder."""
    policy = parse_policy(_read(path), str(path))
    if policy.gate is not None and not Path(policy.gate).is_absolute():
        policy = policy.model_copy(update={"gate": str((path.parent / policy.gate).resolve())})
    return policy


def parse_policy(data: Any, where: str = "rollout policy") -> Policy:
    """Validate a mapping as a policy; ``where`` names it in the error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must hold a mapping of policy keys ({', '.join(FIXES)})")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, where)) from exc


def describe(exc: ValidationError, where: str) -> str:
    """One line naming every bad key, what was given and the fix."""
    parts = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r} (allowed: {', '.join(FIXES)})")
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        fix = FIXES.get(key, "")
        parts.append(f"{key}: {msg} (got {err.get('input')!r}); use {fix}")
    return f"invalid rollout policy {where}: " + "; ".join(parts)


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).replace("\n", " ")
        raise ConfigError(f"cannot read rollout policy {path}: {detail}") from exc
