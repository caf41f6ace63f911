"""The model registry lifecycle on top of MLflow's registry: register, aliases with a durable
history, promotion gates, rollback, diff and retention.

Policy (semantic versions, gate checks, retention, rollback targets, the alias-move protocol)
lives in pure modules here; everything MLflow-specific in
:mod:`visionyard.tracking.registry_client`.

Names are imported lazily (PEP 562): a command that needs one sub-module (``models show``
needs the views, not the gate's evaluation and onnxruntime) imports only that one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionyard.registry.aliases import MoveResult, converge, move_alias, reconcile
    from visionyard.registry.cleanup import GcReport
    from visionyard.registry.diffing import VersionDiff
    from visionyard.registry.gates import EvalSummary, GatePolicy, GateReport, load_policy
    from visionyard.registry.history import AliasEvent, holder_stack, parse_history
    from visionyard.registry.lookup import resolve_version_number
    from visionyard.registry.promote import MoveOutcome
    from visionyard.registry.register import Registration
    from visionyard.registry.retention import RetentionPlan, plan_retention
    from visionyard.registry.semver import next_semver
    from visionyard.registry.service import Registry, default_actor, resolve_bundle
    from visionyard.registry.views import ModelRow, Reference, VersionView, parse_reference

_EXPORTS: dict[str, str] = {
    "MoveResult": "visionyard.registry.aliases",
    "converge": "visionyard.registry.aliases",
    "move_alias": "visionyard.registry.aliases",
    "reconcile": "visionyard.registry.aliases",
    "GcReport": "visionyard.registry.cleanup",
    "VersionDiff": "visionyard.registry.diffing",
    "EvalSummary": "visionyard.registry.gates",
    "GatePolicy": "visionyard.registry.gates",
    "GateReport": "visionyard.registry.gates",
    "load_policy": "visionyard.registry.gates",
    "AliasEvent": "visionyard.registry.history",
    "holder_stack": "visionyard.registry.history",
    "parse_history": "visionyard.registry.history",
    "resolve_version_number": "visionyard.registry.lookup",
    "MoveOutcome": "visionyard.registry.promote",
    "Registration": "visionyard.registry.register",
    "RetentionPlan": "visionyard.registry.retention",
    "plan_retention": "visionyard.registry.retention",
    "next_semver": "visionyard.registry.semver",
    "Registry": "visionyard.registry.service",
    "default_actor": "visionyard.registry.service",
    "resolve_bundle": "visionyard.registry.service",
    "ModelRow": "visionyard.registry.views",
    "Reference": "visionyard.registry.views",
    "VersionView": "visionyard.registry.views",
    "parse_reference": "visionyard.registry.views",
}

__all__ = [
    "AliasEvent",
    "EvalSummary",
    "GatePolicy",
    "GateReport",
    "GcReport",
    "ModelRow",
    "MoveOutcome",
    "MoveResult",
    "Reference",
    "Registration",
    "Registry",
    "RetentionPlan",
    "VersionDiff",
    "VersionView",
    "converge",
    "default_actor",
    "holder_stack",
    "load_policy",
    "move_alias",
    "next_semver",
    "parse_history",
    "parse_reference",
    "plan_retention",
    "reconcile",
    "resolve_bundle",
    "resolve_version_number",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
