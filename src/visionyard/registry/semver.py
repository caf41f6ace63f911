"""Semantic versions of registered model versions (pure policy).

A new version bumps MAJOR when the labels or the input contract change against the newest
registered version (old clients would send the wrong tensor or read the wrong class), MINOR
otherwise; PATCH is kept for explicit versions (``--semver 1.4.1``). The first version is
``1.0.0``. What counts as the "input contract" is everything that decides the tensor the model
receives: the task, the input name and the whole preprocessing section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from visionyard.contract.schema import VisionContract, canonical_sha256
from visionyard.errors import RegistryError

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
FIRST = "1.0.0"


@dataclass(frozen=True, order=True)
class SemVer:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_semver(text: str) -> SemVer:
    """``"1.2.3"`` -> ``SemVer(1, 2, 3)``; :class:`RegistryError` for anything else."""
    match = _SEMVER.match(text.strip())
    if match is None:
        raise RegistryError(f"{text!r} is not a semantic version (expected MAJOR.MINOR.PATCH)")
    major, minor, patch = (int(part) for part in match.groups())
    return SemVer(major, minor, patch)


@dataclass(frozen=True)
class Fingerprint:
    """What the semver rule compares between two versions."""

    task: str
    labels_digest: str
    input_digest: str


def fingerprint(contract: VisionContract) -> Fingerprint:
    """Digests of the labels (names and order) and of the input side of ``contract``."""
    data = contract.model_dump(mode="json")
    inputs = {k: data[k] for k in ("task", "input_name", "preprocessing")}
    return Fingerprint(contract.task, _digest(list(contract.labels)), _digest(inputs))


def next_semver(
    previous: str | None,
    old: Fingerprint | None,
    new: Fingerprint,
    *,
    explicit: str | None = None,
    taken: Iterable[str] = (),
) -> tuple[str, str]:
    """The semantic version of a new version, and why (for the report)."""
    if explicit is not None:
        chosen = str(parse_semver(explicit))
        if chosen in set(taken):
            raise RegistryError(f"semantic version {chosen} is already used by another version")
        return chosen, "given explicitly"
    if previous is None or old is None:
        return FIRST, "first version"
    base = parse_semver(previous)
    reasons = breaking_reasons(old, new)
    if reasons:
        return str(SemVer(base.major + 1, 0, 0)), "major: " + ", ".join(reasons)
    return str(SemVer(base.major, base.minor + 1, 0)), "minor: same labels and input contract"


def breaking_reasons(old: Fingerprint, new: Fingerprint) -> list[str]:
    """Why ``new`` is not a drop-in replacement of ``old`` (empty when it is)."""
    reasons = []
    if old.task != new.task:
        reasons.append(f"task changed ({old.task} -> {new.task})")
    if old.labels_digest != new.labels_digest:
        reasons.append("labels changed")
    if old.input_digest != new.input_digest:
        reasons.append("input contract changed")
    return reasons


def _digest(value: object) -> str:
    return "sha256:" + canonical_sha256(value)
