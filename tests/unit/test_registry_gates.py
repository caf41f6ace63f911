"""Gate policy: the file format and every check, on hand-made evaluation summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionyard.errors import ConfigError
from visionyard.registry.gates import EvalSummary, GatePolicy, build_report, class_rows, load_policy


def summary(
    version: str, metric: float, per_class: dict[str, float | None], **kw: object
) -> EvalSummary:
    return EvalSummary(
        version=version, metric_name="accuracy", metric=metric, per_class=per_class,
        samples=int(kw.get("samples", 100)), latency_p50_ms=kw.get("latency"),  # type: ignore[arg-type]
    )  # fmt: skip


def report(policy: GatePolicy, before: EvalSummary | None, after: EvalSummary) -> dict[str, bool]:
    context = {"model": "m", "alias": "production", "dataset": "d", "dataset_digest": "x" * 64}
    built = build_report(policy, context, before, after)
    checks = {c.name: c.passed for c in built.checks}
    assert built.passed == all(checks.values())
    return checks


POLICY = GatePolicy(dataset=Path("/data"), max_metric_drop=0.01, max_class_drop=0.05)


def test_better_candidate_passes_every_check() -> None:
    before = summary("1", 0.80, {"a": 0.7, "b": 0.9})
    after = summary("2", 0.85, {"a": 0.75, "b": 0.88})
    assert report(POLICY, before, after) == {
        "min_samples": True, "max_metric_drop": True, "max_class_drop": True,
    }  # fmt: skip


def test_overall_drop_beyond_the_allowance_fails() -> None:
    checks = report(POLICY, summary("1", 0.80, {"a": 0.8}), summary("2", 0.78, {"a": 0.8}))
    assert checks["max_metric_drop"] is False
    assert checks["max_class_drop"] is True


def test_drop_within_the_allowance_passes_at_the_boundary() -> None:
    checks = report(POLICY, summary("1", 0.80, {"a": 0.80}), summary("2", 0.79, {"a": 0.75}))
    assert checks == {"min_samples": True, "max_metric_drop": True, "max_class_drop": True}


def test_one_class_dropping_fails_even_when_the_average_improves() -> None:
    before = summary("1", 0.80, {"a": 0.9, "b": 0.5})
    after = summary("2", 0.90, {"a": 0.8, "b": 0.95})
    assert report(POLICY, before, after)["max_class_drop"] is False
    rows = {r.label: r for r in class_rows(before, after, 0.05)}
    assert rows["a"].passed is False
    assert rows["a"].delta == pytest.approx(-0.1)
    assert rows["b"].passed is True


def test_classes_missing_on_one_side_do_not_fail() -> None:
    rows = class_rows(summary("1", 0.8, {"a": 0.9}), summary("2", 0.8, {"b": 0.1}), 0.0)
    assert [(r.label, r.before, r.after, r.delta, r.passed) for r in rows] == [
        ("b", None, 0.1, None, True),
        ("a", 0.9, None, None, True),
    ]


def test_first_promotion_only_runs_absolute_checks() -> None:
    policy = POLICY.model_copy(update={"min_metric": 0.9, "min_samples": 200})
    checks = report(policy, None, summary("1", 0.85, {"a": 0.85}, samples=100))
    assert checks == {"min_samples": False, "min_metric": False}


def test_latency_budget() -> None:
    policy = POLICY.model_copy(update={"latency_p50_ms": 10.0})
    assert report(policy, None, summary("1", 0.9, {}, latency=9.5))["latency_p50_ms"] is True
    assert report(policy, None, summary("1", 0.9, {}, latency=10.5))["latency_p50_ms"] is False
    assert report(policy, None, summary("1", 0.9, {}))["latency_p50_ms"] is False


def test_policy_file_resolves_the_dataset_next_to_it(tmp_path: Path) -> None:
    gate = tmp_path / "gates" / "prod.yaml"
    gate.parent.mkdir()
    gate.write_text("dataset: ../eval\nmax_class_drop: 0.02\nlatency_p50_ms: 30\n")
    policy = load_policy(gate)
    assert policy.dataset == (tmp_path / "eval").resolve()
    assert (policy.max_class_drop, policy.latency_p50_ms, policy.max_metric_drop) == (0.02, 30, 0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("max_class_drop: 0.1\n", "dataset"),
        ("dataset: d\nmax_metric_drop: -1\n", "max_metric_drop"),
        ("dataset: d\nmin_recall: 0.5\n", "min_recall"),
        ("- a\n", "mapping"),
        ("dataset: [\n", "cannot read"),
    ],
)
def test_bad_policy_files_are_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    gate = tmp_path / "gate.yaml"
    gate.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_policy(gate)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read gate file"):
        load_policy(tmp_path / "nope.yaml")


def test_a_serving_variant_must_agree_with_fp32_and_the_report_names_the_variants() -> None:
    context = {"model": "m", "alias": "production", "dataset": "d", "dataset_digest": "x" * 64,
               "comparison": "each side's serving variant (int8 vs int8)"}  # fmt: skip
    before = summary("1", 0.80, {"a": 0.8}).model_copy(update={"variant": "int8"})
    after = summary("2", 0.80, {"a": 0.8}).model_copy(update={"variant": "int8"})
    built = build_report(POLICY, context, before, after, ("int8", 0.90))
    checks = {c.name: c for c in built.checks}
    assert not checks["min_variant_agreement"].passed
    assert "int8 agrees with fp32 on 0.9000" in checks["min_variant_agreement"].detail
    assert checks["min_variant_agreement"].detail.endswith("< 0.9500")  # the relation found
    passing = build_report(POLICY, context, before, after, ("int8", 1.0)).checks
    assert [c.detail for c in passing if c.name == "min_variant_agreement"] == [
        "int8 agrees with fp32 on 1.0000 of the images >= 0.9500"
    ]
    assert checks["max_metric_drop"].detail.startswith("accuracy 0.8000 (int8) -> 0.8000 (int8)")
    assert built.comparison == context["comparison"]
    assert not built.passed
    agreeing = build_report(POLICY, context, before, after, ("int8", 0.99))
    assert agreeing.passed
