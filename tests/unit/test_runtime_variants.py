"""The variant choice policy: a pure function of variant reports and execution providers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.runtime import colour_classifier_onnx, colour_contract, write_colour_bundle
from visionyard.bundle.store import write_bundle
from visionyard.errors import BundleError, ConfigError
from visionyard.runtime.variants import (
    CPU,
    REPORTS_FILE,
    VariantReport,
    choose_variant,
    parse_variant_reports,
    pick_variant,
    precision_of,
    read_variant_reports,
    resolve_providers,
)

CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
ALL = ["fp32", "int8", "fp16"]


def report(passed: bool = True, latency: float | None = None, provider: str = CPU) -> VariantReport:
    return VariantReport(passed=passed, latency_p50_ms=latency, provider=provider)


def test_only_the_reference_without_reports() -> None:
    assert pick_variant(ALL, {}, [CPU]) == "fp32"
    assert pick_variant(ALL, {}, [CUDA, CPU]) == "fp32"


def test_passed_int8_preferred_on_cpu_without_latencies() -> None:
    assert pick_variant(ALL, {"int8": report(), "fp16": report()}, [CPU]) == "int8"


def test_failed_int8_is_never_chosen() -> None:
    assert pick_variant(ALL, {"int8": report(passed=False, latency=1.0)}, [CPU]) == "fp32"


def test_int8_slower_than_fp32_on_cpu_loses() -> None:
    reports = {"fp32": report(latency=15.0), "int8": report(latency=20.0)}
    assert pick_variant(ALL, reports, [CPU]) == "fp32"


def test_fastest_measured_wins_on_cpu() -> None:
    reports = {"fp32": report(latency=15.0), "int8": report(latency=5.8)}
    assert pick_variant(ALL, reports, [CPU]) == "int8"


def test_fp16_only_with_a_gpu_provider() -> None:
    reports = {"fp16": report(latency=0.5, provider=CPU)}
    assert pick_variant(ALL, reports, [CPU]) == "fp32"
    assert pick_variant(ALL, {"fp16": report(provider=CUDA)}, [CUDA, CPU]) == "fp16"
    assert pick_variant(ALL, {"fp16": report(provider=TRT)}, [TRT, CUDA, CPU]) == "fp16"


def test_cpu_latencies_are_ignored_on_a_gpu() -> None:
    reports = {"int8": report(latency=5.8, provider=CPU), "fp16": report(provider=CUDA)}
    assert pick_variant(ALL, reports, [CUDA, CPU]) == "fp16"


def test_gpu_latencies_decide_on_a_gpu() -> None:
    reports = {
        "fp32": report(latency=2.0, provider=CUDA),
        "fp16": report(latency=3.0, provider=CUDA),
    }
    assert pick_variant(ALL, reports, [CUDA, CPU]) == "fp32"


def test_report_precision_overrides_the_name() -> None:
    body = {"passed": True, "precision": "int8"}
    reports = parse_variant_reports({"fast": body})
    assert precision_of("fast", reports["fast"]) == "int8"
    assert pick_variant(["fp32", "fast"], reports, [CPU]) == "fast"


def test_precision_from_the_name() -> None:
    assert precision_of("model_FP16") == "fp16"
    assert precision_of("int8_qdq") == "int8"
    assert precision_of("fp32_opt") == "fp32"


def test_invalid_reports_are_refused() -> None:
    with pytest.raises(BundleError, match="invalid variant report"):
        parse_variant_reports({"int8": {"latency_p50_ms": 3.0}})
    with pytest.raises(BundleError, match="must map"):
        parse_variant_reports(["int8"])


def test_resolve_providers() -> None:
    available = [CPU, "AzureExecutionProvider", CUDA]
    assert resolve_providers(None, available) == [CUDA, CPU]
    assert resolve_providers([CUDA], available) == [CUDA, CPU]
    with pytest.raises(ConfigError, match=TRT):
        resolve_providers([TRT], available)


def test_choose_variant_reads_reports_from_metadata(tmp_path: Path) -> None:
    bundle = write_colour_bundle(
        tmp_path / "b",
        variants={"int8": colour_classifier_onnx(sharpness=5.0)},
        metadata={"variant_reports": {"int8": {"passed": True}}},
    )
    assert choose_variant(bundle, [CPU]) == "int8"
    assert choose_variant(bundle, [CPU], explicit="fp32") == "fp32"
    with pytest.raises(BundleError, match=r"no variant 'fp16' \(it has: fp32, int8\)"):
        choose_variant(bundle, [CPU], explicit="fp16")


def test_reports_file_is_read_when_metadata_has_none(tmp_path: Path) -> None:
    reports = json.dumps({"int8": {"passed": False}}).encode()
    bundle = write_bundle(
        tmp_path / "b",
        model=colour_classifier_onnx(),
        contract=colour_contract(),
        variants={"int8": colour_classifier_onnx(sharpness=5.0)},
        extra_files={REPORTS_FILE: reports},
    )
    assert read_variant_reports(bundle) == {"int8": VariantReport(passed=False)}
    assert choose_variant(bundle, [CPU]) == "fp32"
