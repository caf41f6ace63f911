"""Which of a bundle's ONNX variants a session runs, and on which execution providers.

The choice is a pure function of the bundle's variant reports and the providers at hand, so it
is testable without a GPU. Reports are read from ``manifest.metadata["variant_reports"]`` or,
when absent, from the bundle file ``reports/variants.json``; both hold::

    {"int8": {"passed": true, "latency_p50_ms": 5.8, "provider": "CPUExecutionProvider",
              "precision": "int8"}, ...}

``provider`` is where the latency was measured (default ``CPUExecutionProvider``); ``precision``
defaults to what the variant's name says (``fp16``/``int8`` in the name, else ``fp32``).

Policy (:func:`choose_variant`):

1. An explicit name wins; it must exist in the bundle.
2. Otherwise the candidates are ``fp32`` (the reference, always allowed) and every variant whose
   report ``passed`` and whose precision suits the providers: ``fp16`` only with CUDA/TensorRT.
3. The fastest candidate wins, where "fastest" only compares latencies measured on the provider
   the session will actually use first; unmeasured candidates rank after measured ones.
   Ties (or no measurements) fall back to a preference order: on a GPU ``fp16 > fp32 > int8``,
   on a CPU ``int8 > fp32`` -- so an INT8 variant that turned out slower than FP32 (ORT's signed
   activations on x86) is not chosen when its report says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from visionyard.bundle.store import Bundle
from visionyard.errors import BundleError, ConfigError

REFERENCE = "fp32"
REPORTS_FILE = "reports/variants.json"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PROVIDER_PREFERENCE = (*GPU_PROVIDERS, CPU)
Precision = Literal["fp32", "fp16", "int8"]
_TIERS: dict[bool, tuple[Precision, ...]] = {
    True: ("fp16", "fp32", "int8"),
    False: ("int8", "fp32"),
}


class VariantReport(BaseModel):
    """The part of an export variant report that the variant choice reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    passed: bool
    latency_p50_ms: float | None = None
    provider: str = CPU
    precision: Precision | None = None


def precision_of(name: str, report: VariantReport | None = None) -> Precision:
    """A variant's numeric precision: from its report, else from its name."""
    if report is not None and report.precision is not None:
        return report.precision
    lowered = name.lower()
    if "fp16" in lowered:
        return "fp16"
    if "int8" in lowered:
        return "int8"
    return "fp32"


def resolve_providers(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Providers in preference order; requested ones must be available (CPU is always added)."""
    if requested is None:
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    else:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ConfigError(
                f"execution provider(s) {', '.join(missing)} are not available in this "
                f"onnxruntime build (available: {', '.join(available)})"
            )
        chosen = list(dict.fromkeys(requested))
    return chosen if CPU in chosen else [*chosen, CPU]


def read_variant_reports(bundle: Bundle) -> dict[str, VariantReport]:
    """The bundle's variant reports (metadata first, then ``reports/variants.json``)."""
    raw: Any = bundle.metadata.get("variant_reports")
    if raw is None and REPORTS_FILE in bundle.files:
        try:
            raw = json.loads((bundle.path / REPORTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(bundle.path, f"{REPORTS_FILE} is unreadable: {exc}") from exc
    return parse_variant_reports(raw or {}, source=str(bundle.path))


def parse_variant_reports(raw: Any, *, source: str = "<reports>") -> dict[str, VariantReport]:
    if not isinstance(raw, Mapping):
        raise BundleError(source, "variant_reports must map variant names to reports")
    try:
        return {str(name): VariantReport.model_validate(body) for name, body in raw.items()}
    except ValidationError as exc:
        raise BundleError(source, f"invalid variant report: {exc}") from exc


def choose_variant(
    bundle: Bundle, available_providers: Sequence[str], explicit: str | None = None
) -> str:
    """The variant a session should run (see the module docstring for the policy)."""
    if explicit is not None:
        bundle.model_path(explicit)  # raises BundleError naming the variants it has
        return explicit
    return pick_variant(list(bundle.variants), read_variant_reports(bundle), available_providers)


def pick_variant(
    names: Sequence[str], reports: Mapping[str, VariantReport], providers: Sequence[str]
) -> str:
    """Pure core of :func:`choose_variant` over variant names, reports and providers."""
    on_gpu = any(p in GPU_PROVIDERS for p in providers)
    primary = providers[0] if providers else CPU
    tiers = _TIERS[on_gpu]
    candidates = [n for n in names if _eligible(n, reports.get(n), tiers)] or [REFERENCE]

    def rank(name: str) -> tuple[float, int, str]:
        report = reports.get(name)
        latency = None
        if report is not None and report.provider == primary:
            latency = report.latency_p50_ms
        tier = tiers.index(precision_of(name, report))
        return (math.inf if latency is None else latency, tier, name)

    return min(candidates, key=rank)


def _eligible(name: str, report: VariantReport | None, tiers: tuple[Precision, ...]) -> bool:
    if name == REFERENCE:
        return True
    return report is not None and report.passed and precision_of(name, report) in tiers
