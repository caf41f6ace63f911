"""Optimised variants of a bundle's FP32 model, each measured against it and kept or refused.

:func:`build_variants` builds the requested variants (``int8`` static QDQ, ``fp16``, and from a
pruned model given in :attr:`VariantOptions.pruned` ``pruned<NN>`` and ``pruned<NN>-int8``; see
:mod:`visionyard.export.prune_spec`), runs each
and the FP32 reference over the same evaluation set and times them the same way on this
machine's execution provider, then decides: a variant whose headline metric (top-1 accuracy, or
COCO mAP for detectors) drops more than ``max_drop_points``, or whose predictions agree with
FP32's on fewer than ``min_agreement`` of the images (top-1 label, or matched boxes), is
**rejected** and not stored, unless ``force`` stores it with ``passed: false`` (so the runtime
never picks it on its own). An accuracy that holds while a tenth of the answers change is not a
faithful copy of the model: both checks apply. Without labels (an unlabelled image folder as the
evaluation set) only the agreement check applies, and the report says the comparison was
``"agreement with fp32"`` instead of ``"labels"``.

:func:`measure_variants` builds and measures without writing anything. :func:`build_variants`
then stores the kept ones in a local bundle as ``variants/<name>.onnx`` together with their
reports (:mod:`visionyard.export.reports`), through :func:`visionyard.bundle.add_files`, so the
manifest's checksums cover them. A registered version is never re-sealed: its variants are
stored beside it (:mod:`visionyard.export.registry`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from visionyard.bundle.store import Bundle, add_files, load_bundle, sha256_bytes
from visionyard.errors import DatasetError, ExportError
from visionyard.evaluate.latency import LatencyReport, measure_latency
from visionyard.export.evaluation import EvalSet, Evaluated, eval_ref, evaluate, quality
from visionyard.export.fp16 import convert_fp16
from visionyard.export.operators import check_operators, ort_load_error
from visionyard.export.prune_spec import PrunedModel, Pruning, is_pruned, parse_pruned
from visionyard.export.quantize import (
    CalibrationName,
    CalibrationSet,
    CalibrationSource,
    quantize_int8,
    select_calibration,
)
from visionyard.export.reports import (
    REPORTS_FILE,
    DataRef,
    Quality,
    Speed,
    VariantReport,
    report_files,
    tool_versions,
)
from visionyard.runtime.session import InferenceSession, session_options
from visionyard.runtime.variants import REFERENCE, Precision, resolve_providers

VARIANTS: dict[str, Precision] = {"fp32": "fp32", "int8": "int8", "fp16": "fp16"}
Latency = Callable[[InferenceSession], LatencyReport]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CalibrationOptions:
    count: int = 100
    method: CalibrationName = "minmax"
    seed: int = 0
    batch_size: int = 8


@dataclass(frozen=True)
class TimingOptions:
    """How latency is measured: ORT intra-op ``threads`` as the runtime opens sessions."""

    threads: int = 1
    warmup: int = 3
    iterations: int = 30
    throughput_batch_size: int = 16
    throughput_iterations: int = 5


@dataclass(frozen=True)
class VariantOptions:
    max_drop_points: float = 1.0
    min_agreement: float = 0.95
    force: bool = False
    eval_batch_size: int = 32
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    timing: TimingOptions = field(default_factory=TimingOptions)
    #: ``pruned<NN>`` -> its pruned, fine-tuned FP32 model, built beforehand from the torch
    #: model (:mod:`visionyard.train.prune_finetune`); ``pruned<NN>-int8`` quantizes it.
    pruned: Mapping[str, PrunedModel] = field(default_factory=dict)


@dataclass(frozen=True)
class _Measured:
    evaluated: Evaluated
    speed: Speed


@dataclass(frozen=True)
class _Context:
    bundle: Bundle
    eval_set: EvalSet
    eval_ref: DataRef
    options: VariantOptions
    latency: Latency
    progress: Progress


def parse_variants(names: str | Sequence[str]) -> list[str]:
    """``"fp32,int8"`` or a list -> validated, de-duplicated names (fp32 always first);
    ``pruned<NN>`` and ``pruned<NN>-int8`` (NN from 1 to 90) are pruned variants."""
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen = [n.strip().lower() for n in items if n.strip()]
    for name in filter(is_pruned, chosen):
        parse_pruned(name)  # one line for a ratio out of range
    unknown = [n for n in chosen if n not in VARIANTS and not is_pruned(n)]
    if unknown:
        raise ExportError(
            f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}, "
            "pruned<NN>, pruned<NN>-int8"
        )
    return [REFERENCE, *dict.fromkeys(n for n in chosen if n != REFERENCE)]


@dataclass(frozen=True)
class Built:
    """One measured variant: its report and, unless it is the FP32 reference, its model."""

    report: VariantReport
    model: bytes | None


def build_variants(
    bundle_or_path: Bundle | Path | str,
    *,
    variants: str | Sequence[str],
    eval_set: EvalSet,
    calibration_set: CalibrationSource | None = None,
    options: VariantOptions | None = None,
    latency: Latency | None = None,
    progress: Progress | None = None,
) -> list[VariantReport]:
    """Build, measure and decide every requested variant; store the kept ones in the bundle.

    Returns one report per variant, FP32 (the reference) first; rejected variants are
    reported (``stored=False``) but not written.
    """
    path = bundle_or_path.path if isinstance(bundle_or_path, Bundle) else Path(bundle_or_path)
    bundle = load_bundle(path)
    built = measure_variants(
        bundle, variants=variants, eval_set=eval_set, calibration_set=calibration_set,
        options=options, latency=latency, progress=progress,
    )  # fmt: skip
    store_variants(bundle, built)
    return [b.report for b in built]


def measure_variants(
    bundle: Bundle,
    *,
    variants: str | Sequence[str],
    eval_set: EvalSet,
    calibration_set: CalibrationSource | None = None,
    options: VariantOptions | None = None,
    latency: Latency | None = None,
    progress: Progress | None = None,
) -> list[Built]:
    """Build and measure every requested variant of a verified bundle; writes nothing."""
    opts = options or VariantOptions()
    names = parse_variants(variants)
    _check_pruned(names, opts.pruned)
    reference = bundle.model_path(REFERENCE).read_bytes()
    check_operators(onnx.load_from_string(reference), f"the FP32 model of {bundle.path}")
    calibration = _calibration(names, bundle, calibration_set, opts.calibration)
    say = progress or (lambda _message: None)
    say("checksumming the evaluation set")
    ctx = _Context(bundle, eval_set, eval_ref(eval_set), opts, latency or _latency(opts), say)
    base = _measure(ctx, REFERENCE, reference)
    built = [Built(_reference_report(ctx, base, reference), None)]
    for name in names[1:]:
        model = _build(name, _source(name, reference, opts), bundle, calibration, opts, say)
        built.append(Built(_judge(ctx, name, model, base, calibration), model))
    return built


def store_variants(bundle: Bundle, built: Sequence[Built]) -> Bundle:
    """Write the kept variants and the reports into a (local, unregistered) bundle, once."""
    kept = [b for b in built if b.report.stored]
    files: dict[str, bytes] = {b.report.file: b.model for b in kept if b.model is not None}
    names = {b.report.name: b.report.file for b in kept if b.model is not None}
    existing: dict[str, Any] = {}
    if REPORTS_FILE in bundle.files:
        existing = json.loads((bundle.path / REPORTS_FILE).read_text(encoding="utf-8"))
    files.update(report_files({b.report.name: b.report for b in kept}, existing))
    return add_files(bundle, files, names)


def _calibration(
    names: Sequence[str],
    bundle: Bundle,
    source: CalibrationSource | None,
    options: CalibrationOptions,
) -> CalibrationSet | None:
    if not needs_calibration(names):
        return None
    if source is None:
        raise DatasetError("int8 variants need a calibration set (training images)")
    return select_calibration(
        source, bundle.contract, count=options.count, method=options.method, seed=options.seed
    )


def needs_calibration(names: Sequence[str]) -> bool:
    """Whether any of the variants is quantized to INT8 (``int8``, ``pruned50-int8``)."""
    return any(n == "int8" or n.endswith("-int8") for n in names)


def _check_pruned(names: Sequence[str], pruned: Mapping[str, PrunedModel]) -> None:
    missing = sorted({parse_pruned(n).base for n in names if is_pruned(n)} - set(pruned))
    if missing:
        raise ExportError(
            f"no pruned model for {', '.join(missing)}: pruned variants are built from the "
            "torch model of a trained version (visionyard export NAME VERSION --variants "
            f"{missing[0]})"
        )


def _source(name: str, reference: bytes, options: VariantOptions) -> bytes:
    """The FP32 model a variant is built from: the pruned one for pruned variants."""
    return options.pruned[parse_pruned(name).base].model if is_pruned(name) else reference


def _pruning(name: str, options: VariantOptions) -> Pruning | None:
    return options.pruned[parse_pruned(name).base].pruning if is_pruned(name) else None


def _build(
    name: str,
    source: bytes,
    bundle: Bundle,
    calibration: CalibrationSet | None,
    options: VariantOptions,
    say: Progress,
) -> bytes:
    if name == "fp16":
        say("converting to fp16")
        return convert_fp16(source)
    if is_pruned(name) and not parse_pruned(name).int8:
        return source
    assert calibration is not None  # _calibration() demands it for int8
    say(f"quantizing {name} ({calibration.ref.count} calibration images)")
    batch = options.calibration.batch_size
    return quantize_int8(source, bundle.contract, calibration, batch_size=batch)


def _measure(ctx: _Context, name: str, model: bytes) -> _Measured:
    session = open_model(ctx.bundle, name, model, ctx.options.timing.threads)
    ctx.progress(f"evaluating {name} on {ctx.eval_ref.count} images")
    evaluated = evaluate(session, ctx.eval_set, ctx.options.eval_batch_size)
    ctx.progress(f"timing {name}")
    timed = ctx.latency(session)
    speed = Speed(
        provider=session.providers[0],
        threads=ctx.options.timing.threads,
        latency_p50_ms=timed.p50_ms,
        latency_p90_ms=timed.p90_ms,
        throughput_batch_size=timed.throughput_batch_size,
        throughput_images_per_s=timed.throughput_images_per_s,
    )
    return _Measured(evaluated, speed)


def open_model(bundle: Bundle, name: str, model: bytes, threads: int = 1) -> InferenceSession:
    """An :class:`InferenceSession` over model bytes not (yet) stored in ``bundle``."""
    providers = resolve_providers(None, ort.get_available_providers())
    options = session_options(threads, 1)
    try:
        raw = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's pybind errors share no useful base class
        raise ort_load_error(exc, f"the {name} variant") from exc
    return InferenceSession(bundle, name, raw)


def _latency(options: VariantOptions) -> Latency:
    timing = options.timing

    def run(session: InferenceSession) -> LatencyReport:
        return measure_latency(
            session,
            warmup=timing.warmup,
            iterations=timing.iterations,
            throughput_batch_size=timing.throughput_batch_size,
            throughput_iterations=timing.throughput_iterations,
        )

    return run


def _reference_report(ctx: _Context, base: _Measured, model: bytes) -> VariantReport:
    return _report(ctx, REFERENCE, model, base, base, None).model_copy(
        update={"status": "reference", "reason": "the FP32 reference"}
    )


def _judge(
    ctx: _Context, name: str, model: bytes, base: _Measured, calibration: CalibrationSet | None
) -> VariantReport:
    measured = _measure(ctx, name, model)
    ref = calibration.ref if calibration is not None and needs_calibration([name]) else None
    return _report(ctx, name, model, measured, base, ref)


def _report(
    ctx: _Context,
    name: str,
    model: bytes,
    measured: _Measured,
    base: _Measured,
    calibration: DataRef | None,
) -> VariantReport:
    result = quality(base.evaluated, measured.evaluated)
    passed, reason = judge(result, ctx.options)
    status = "passed" if passed else ("forced" if ctx.options.force else "rejected")
    return VariantReport(
        name=name,
        precision=VARIANTS.get(name, "int8" if needs_calibration([name]) else "fp32"),
        status=status,
        passed=passed,
        stored=passed or ctx.options.force,
        reason=reason,
        max_drop_points=ctx.options.max_drop_points,
        file=ctx.bundle.variants.get(name, f"variants/{name}.onnx"),
        file_size_bytes=len(model),
        sha256=sha256_bytes(model),
        quality=result,
        speed=measured.speed,
        speedup_vs_fp32=base.speed.latency_p50_ms / max(measured.speed.latency_p50_ms, 1e-9),
        eval_set=ctx.eval_ref,
        calibration=calibration,
        tool_versions=tool_versions(),
        pruning=_pruning(name, ctx.options),
    )


def judge(result: Quality, options: VariantOptions) -> tuple[bool, str]:
    """Whether a variant passes, and why: its metric may drop at most ``max_drop_points``
    (when labels measured one) AND its answers must agree with FP32's on at least
    ``min_agreement`` of the images -- an unmoved accuracy does not excuse changed answers."""
    delta = result.delta_points
    accurate = delta is None or -delta <= options.max_drop_points + 1e-9
    faithful = result.agreement >= options.min_agreement - 1e-9
    return accurate and faithful, _reason(result, accurate, faithful, options)


def _reason(result: Quality, accurate: bool, faithful: bool, options: VariantOptions) -> str:
    verb = "within the bound" if accurate else "exceeds the bound"
    bound, floor = options.max_drop_points, options.min_agreement
    relation = ">=" if faithful else "below"
    agreement = f"agreement with fp32 {result.agreement:.4f} {relation} {floor:g}"
    if result.delta_points is None:
        return f"no labels, accuracy not measured: {agreement}"
    return f"{result.metric} {result.delta_points:+.2f} points: {verb} of -{bound:g}; {agreement}"
