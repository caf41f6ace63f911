"""The model registry lifecycle on top of MLflow's registry: register, aliases with a durable
history, promotion gates, rollback, diff and retention.

Policy (semantic versions, gate checks, retention, rollback targets, the alias-move protocol)
lives in pure modules here; everything MLflow-specific in
:mod:`visionyard.tracking.registry_client`.
"""

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
