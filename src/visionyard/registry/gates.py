"""Promotion gates: the policy file, the checks and the report (pure; no model is run here).

A gate compares the candidate with the alias's current holder on one pinned evaluation dataset::

    dataset: ../data/eval          # ImageFolder root (or COCO root), relative to this file
    split: val                     # optional: only this split of an ImageFolder tree
    dataset_digest: 3f2a...        # optional pin: the manifest digest must match
    max_metric_drop: 0.01          # headline metric (accuracy / mAP) may drop at most this
    max_class_drop: 0.05           # no class's recall (AP for detection) may drop more
    min_metric: 0.5                # optional absolute floor for the candidate
    latency_p50_ms: 50             # optional budget, batch 1, candidate alone
    min_samples: 20                # the dataset must hold at least this many images
    min_variant_agreement: 0.95    # a serving INT8/FP16 variant must agree this often with FP32

Like with like: each side is evaluated on the variant it will serve when both serve the same
precision, else both on FP32; the report says which (``comparison``). When the candidate will
serve a variant other than FP32, its top-1 (box) agreement with its own FP32 is checked too:
an accuracy that holds while answers change is not the model that was measured.
Without a current holder (first promotion) only the absolute checks apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionyard.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatePolicy(_Frozen):
    dataset: Path
    split: str | None = None
    dataset_digest: str | None = None
    max_metric_drop: float = Field(0.0, ge=0)
    max_class_drop: float = Field(0.05, ge=0)
    min_metric: float | None = Field(None, ge=0, le=1)
    latency_p50_ms: float | None = Field(None, gt=0)
    min_samples: int = Field(1, ge=1)
    min_variant_agreement: float = Field(0.95, ge=0, le=1)


class EvalSummary(_Frozen):
    """What a gate reads from one model's evaluation."""

    version: str
    metric_name: str
    metric: float
    per_class: dict[str, float | None]
    samples: int
    variant: str = "fp32"
    latency_p50_ms: float | None = None


class GateCheck(_Frozen):
    name: str
    passed: bool
    detail: str


class ClassRow(_Frozen):
    label: str
    before: float | None
    after: float | None
    delta: float | None
    passed: bool


class GateReport(_Frozen):
    """The outcome: every check, the per-class table, and what was compared on what."""

    model: str
    alias: str
    candidate: str
    baseline: str | None
    dataset: str
    dataset_digest: str
    comparison: str = ""
    policy: GatePolicy
    before: EvalSummary | None
    after: EvalSummary
    checks: tuple[GateCheck, ...]
    classes: tuple[ClassRow, ...]
    passed: bool

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]


def load_policy(path: Path) -> GatePolicy:
    """Read a gate file (YAML); a relative ``dataset`` is resolved against the file's folder."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read gate file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"gate file {path} must hold a mapping of settings")
    try:
        policy = GatePolicy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid gate file {path}: {where}: {err['msg']}") from exc
    if not policy.dataset.is_absolute():
        policy = policy.model_copy(update={"dataset": (path.parent / policy.dataset).resolve()})
    return policy


def evaluate_gate(
    policy: GatePolicy,
    before: EvalSummary | None,
    after: EvalSummary,
    agreement: tuple[str, float] | None = None,
) -> tuple[list[GateCheck], list[ClassRow]]:
    """Every check of ``policy`` on the candidate (``after``) against the holder (``before``);
    ``agreement`` is (serving variant, its agreement with FP32) when it is not FP32."""
    checks = [_samples_check(policy, after)]
    if agreement is not None:
        variant, value = agreement
        floor = policy.min_variant_agreement
        ok = value >= floor - 1e-12
        checks.append(
            GateCheck(
                name="min_variant_agreement",
                passed=ok,
                detail=f"{variant} agrees with fp32 on {value:.4f} of the images "
                f"{_at_least(ok)} {floor:.4f}",
            )
        )
    if policy.min_metric is not None:
        ok = after.metric >= policy.min_metric
        checks.append(
            GateCheck(
                name="min_metric",
                passed=ok,
                detail=f"{after.metric_name} {after.metric:.4f} {_at_least(ok)} "
                f"{policy.min_metric:.4f}",
            )
        )
    if policy.latency_p50_ms is not None:
        checks.append(_latency_check(policy.latency_p50_ms, after))
    rows = class_rows(before, after, policy.max_class_drop)
    if before is not None:
        checks.append(_metric_check(policy.max_metric_drop, before, after))
        bad = [r.label for r in rows if not r.passed]
        detail = (
            f"drop > {policy.max_class_drop:.4f} for: {', '.join(bad)}"
            if bad
            else (f"no class dropped more than {policy.max_class_drop:.4f}")
        )
        checks.append(GateCheck(name="max_class_drop", passed=not bad, detail=detail))
    return checks, rows


def build_report(
    policy: GatePolicy,
    context: dict[str, Any],
    before: EvalSummary | None,
    after: EvalSummary,
    agreement: tuple[str, float] | None = None,
) -> GateReport:
    """Run the checks and assemble the report; ``context`` holds model, alias, dataset ids
    and the comparison made."""
    checks, rows = evaluate_gate(policy, before, after, agreement)
    return GateReport(
        model=context["model"],
        alias=context["alias"],
        candidate=after.version,
        baseline=before.version if before else None,
        dataset=context["dataset"],
        dataset_digest=context["dataset_digest"],
        comparison=context.get("comparison", ""),
        policy=policy,
        before=before,
        after=after,
        checks=tuple(checks),
        classes=tuple(rows),
        passed=all(c.passed for c in checks),
    )


def class_rows(before: EvalSummary | None, after: EvalSummary, max_drop: float) -> list[ClassRow]:
    """Per-class before/after/delta; a row fails when its value dropped more than ``max_drop``."""
    old = before.per_class if before else {}
    labels = list(after.per_class) + [label for label in old if label not in after.per_class]
    rows = []
    for label in labels:
        was, now = old.get(label), after.per_class.get(label)
        delta = None if was is None or now is None else now - was
        ok = delta is None or delta >= -max_drop - 1e-12
        rows.append(ClassRow(label=label, before=was, after=now, delta=delta, passed=ok))
    return rows


def _samples_check(policy: GatePolicy, after: EvalSummary) -> GateCheck:
    ok = after.samples >= policy.min_samples
    return GateCheck(
        name="min_samples",
        passed=ok,
        detail=f"{after.samples} images {_at_least(ok)} {policy.min_samples}",
    )


def _latency_check(budget: float, after: EvalSummary) -> GateCheck:
    if after.latency_p50_ms is None:
        return GateCheck(name="latency_p50_ms", passed=False, detail="latency was not measured")
    ok = after.latency_p50_ms <= budget
    return GateCheck(
        name="latency_p50_ms",
        passed=ok,
        detail=f"p50 {after.latency_p50_ms:.2f} ms {'<=' if ok else '>'} {budget:.2f} ms (batch 1)",
    )


def _at_least(ok: bool) -> str:
    """The relation a value stands in to a floor: what the check found, pass or fail."""
    return ">=" if ok else "<"


def _metric_check(max_drop: float, before: EvalSummary, after: EvalSummary) -> GateCheck:
    delta = after.metric - before.metric
    return GateCheck(
        name="max_metric_drop",
        passed=delta >= -max_drop - 1e-12,
        detail=(
            f"{after.metric_name} {before.metric:.4f} ({before.variant}) -> "
            f"{after.metric:.4f} ({after.variant}) ({delta:+.4f}, allowed drop {max_drop:.4f})"
        ),
    )
