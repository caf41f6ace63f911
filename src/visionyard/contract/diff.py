"""Field-level differences between two vision contracts, and whether they break compatibility.

A change is *breaking* when the same image would reach the model differently (any preprocessing
field, the input name, the task) or the model's outputs would be read differently (label names or
order, output layout and names, score type, box format or coordinates), or an embedding output
is removed or renamed. Postprocessing thresholds (``top_k``, ``score_threshold``, ``nms_iou``,
``max_detections``) and adding an embedding output are compatible changes. The registry uses
:attr:`ContractDiff.bump` for semantic version bumps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from visionyard.contract.schema import VisionContract

#: Changes to these paths keep old clients and old expectations working.
COMPATIBLE_FIELDS = frozenset(
    {"decoding.top_k", "decoding.score_threshold", "decoding.nms_iou", "decoding.max_detections"}
)
_ABSENT: Any = None


@dataclass(frozen=True)
class FieldChange:
    """One leaf that differs; ``old``/``new`` are JSON values (None when absent)."""

    path: str
    old: Any
    new: Any
    breaking: bool

    def __str__(self) -> str:
        mark = " (breaking)" if self.breaking else ""
        return f"{self.path}: {self.old!r} -> {self.new!r}{mark}"


@dataclass(frozen=True)
class ContractDiff:
    changes: tuple[FieldChange, ...]

    @property
    def breaking(self) -> bool:
        """True when inputs, labels or output reading changed (see the module docstring)."""
        return any(change.breaking for change in self.changes)

    @property
    def bump(self) -> Literal["major", "minor", "none"]:
        """The semantic version part a model with the new contract should bump."""
        if self.breaking:
            return "major"
        return "minor" if self.changes else "none"

    def __bool__(self) -> bool:
        return bool(self.changes)


def diff_contracts(old: VisionContract, new: VisionContract) -> ContractDiff:
    """Every differing leaf in document order (added list items last); lists compare by index."""
    before = flatten(old.model_dump(mode="json"))
    after = flatten(new.model_dump(mode="json"))
    paths = [*before, *(path for path in after if path not in before)]
    changes = (
        _change(path, before.get(path, _ABSENT), after.get(path, _ABSENT))
        for path in paths
        if before.get(path, _ABSENT) != after.get(path, _ABSENT)
    )
    return ContractDiff(tuple(changes))


def _change(path: str, old: Any, new: Any) -> FieldChange:
    return FieldChange(path, old, new, _is_breaking(path, old))


def _is_breaking(path: str, old: Any) -> bool:
    if path in COMPATIBLE_FIELDS:
        return False
    return not (path == "embedding_output" and old is None)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}``."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = list(value.items())
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return flat
