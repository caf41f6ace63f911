"""``visionyard export``: add measured ONNX variants (int8, fp16, pruned<NN>[-int8]) to a bundle
or model version.

Heavy imports (onnxruntime, onnx) happen inside the command so ``visionyard --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from visionyard.cli.console import app_context, err, out, registry
from visionyard.errors import ConfigError, ExportError

if TYPE_CHECKING:
    from visionyard.export.evaluation import EvalSet
    from visionyard.export.prune_spec import PrunedModel
    from visionyard.export.quantize import CalibrationSource
    from visionyard.export.reports import VariantReport
    from visionyard.export.variants import VariantOptions


class Method(StrEnum):
    minmax = "minmax"
    percentile = "percentile"
    entropy = "entropy"


def export(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Registered model name (with VERSION)."),
    version: str | None = typer.Argument(None, help="Version number of the registered model."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Export a bundle directory."),
    variants: str = typer.Option(
        "fp32,int8", "--variants", help="fp32,int8[,fp16][,pruned50][,pruned50-int8]"
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled dataset folder (eval: val, calib: train)."
    ),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Any folder of images (recursive, no labels) to calibrate INT8 on; without "
        "--data, held-out images of it compare the variants with FP32's answers.",
    ),
    eval_split: str | None = typer.Option(None, "--eval-split", help="Default: val or test."),
    calibration_split: str = typer.Option("train", "--calibration-split"),
    calibration_data: Path | None = typer.Option(
        None, "--calibration-data", help="A labelled dataset to calibrate on (with --data)."
    ),
    calibration_count: int = typer.Option(100, "--calibration-count", min=1),
    method: Method = typer.Option(Method.minmax, "--calibration-method"),
    max_drop: float = typer.Option(1.0, "--max-drop", min=0.0, help="Points of top-1/mAP."),
    min_agreement: float = typer.Option(
        0.95, "--min-agreement", min=0.0, max=1.0, help="Share of answers equal to FP32's."
    ),
    force: bool = typer.Option(False, "--force", help="Store variants that exceed --max-drop."),
    threads: int = typer.Option(1, "--threads", min=0, help="ONNX Runtime threads for timing."),
    profile: bool = typer.Option(
        True, "--profile/--no-profile", help="Profile a version that has no reference profile."
    ),
    finetune_epochs: int | None = typer.Option(
        None, "--finetune-epochs", min=1, help="Pruned variants: default 30% of the training's."
    ),
) -> None:
    """Build variants, measure each against FP32 on the evaluation set (its labels, or without
    --data FP32's own answers on held-out --calibration images), keep those that pass; a
    registered version without a reference profile also gets one."""
    from visionyard.export.images import describe_unreadable
    from visionyard.export.variants import (
        CalibrationOptions,
        TimingOptions,
        VariantOptions,
        needs_calibration,
        parse_variants,
    )
    from visionyard.export.workflow import SetOptions, export_sets

    target = _target(name, version, bundle)
    chosen = SetOptions(
        data, calibration, eval_split, calibration_split, calibration_data, calibration_count
    )
    names = parse_variants(variants)
    sets = export_sets(chosen, quantize=needs_calibration(names))
    if sets.unreadable:
        err().print(describe_unreadable(sets.unreadable, calibration or ""), highlight=False)
    options = VariantOptions(
        max_drop_points=max_drop,
        min_agreement=min_agreement,
        force=force,
        calibration=CalibrationOptions(count=calibration_count, method=method.value),
        timing=TimingOptions(threads=threads),
    )
    job = _Job(variants, sets.evaluation, sets.calibration, options)
    from visionyard.cli.export_progress import expected_steps, step_bar

    total = expected_steps(names, registered=not isinstance(target, Path))
    with step_bar("exporting variants", total) as step:
        pruned = _pruned(ctx, target, names, (finetune_epochs, data), step)
        job = replace(job, options=replace(options, pruned=pruned))
        reports = _run(ctx, target, job, step)
    where = str(target) if isinstance(target, Path) else "{} version {}".format(*target)
    out().print(variants_table(reports, title=f"variants of {where}"))
    if profile and not isinstance(target, Path) and not _has_profile(ctx, *target):
        from visionyard.cli.monitor import profile_now

        labelled = data is not None
        folder = data if data is not None else calibration
        assert folder is not None  # export_sets() refused neither
        profile_now(ctx, "{}/{}".format(*target), folder, eval_split or "val" if labelled else None)
    _refuse_rejected(reports, options)


def _pruned(
    ctx: typer.Context,
    target: Path | tuple[str, str],
    names: Sequence[str],
    finetune: tuple[int | None, Path | None],
    progress: Callable[[str], None],
) -> dict[str, PrunedModel]:
    """The pruned, fine-tuned models the pruned variants are built from (none asked: {})."""
    from visionyard.export.prune_spec import is_pruned

    if not any(is_pruned(n) for n in names):
        return {}
    from visionyard.train.prune_finetune import (
        FinetuneOptions,
        build_pruned,
        pruned_for_version,
    )

    settings = app_context(ctx).settings
    options = FinetuneOptions(epochs=finetune[0], data=finetune[1])
    if isinstance(target, Path):
        from visionyard.bundle.store import load_bundle

        run_id = load_bundle(target).metadata.get("run_id")
        return build_pruned(settings, run_id, f"bundle {target}", names, options, progress)
    return pruned_for_version(settings, *target, names, options, progress)


def _has_profile(ctx: typer.Context, name: str, version: str) -> bool:
    from visionyard.monitor.store import TAG_DIGEST

    return TAG_DIGEST in registry(ctx).client.get_version(name, version).tags


def _target(name: str | None, version: str | None, bundle: Path | None) -> Path | tuple[str, str]:
    if bundle is not None:
        if name is not None:
            raise ConfigError("give either NAME VERSION or --bundle DIR, not both")
        return bundle
    if name is None or version is None:
        raise ConfigError("give NAME VERSION of a registered model, or --bundle DIR")
    return name, version


@dataclass(frozen=True)
class _Job:
    variants: str
    eval_set: EvalSet
    calibration_set: CalibrationSource | None
    options: VariantOptions


def _run(
    ctx: typer.Context, target: Path | tuple[str, str], job: _Job, progress: Callable[[str], None]
) -> list[VariantReport]:
    if isinstance(target, Path):
        from visionyard.export.variants import build_variants

        return build_variants(
            target,
            variants=job.variants,
            eval_set=job.eval_set,
            calibration_set=job.calibration_set,
            options=job.options,
            progress=progress,
        )
    from visionyard.export.registry import export_registered  # imports mlflow
    from visionyard.tracking.mlflow_model import scratch_dir

    with scratch_dir("vy-export-") as workdir:
        return export_registered(
            app_context(ctx).settings,
            *target,
            Path(workdir),
            variants=job.variants,
            eval_set=job.eval_set,
            calibration_set=job.calibration_set,
            options=job.options,
            progress=progress,
        )


def _refuse_rejected(reports: Sequence[VariantReport], options: VariantOptions) -> None:
    rejected = [r for r in reports if r.status == "rejected"]
    if rejected:
        names = ", ".join(f"{r.name} ({r.reason})" for r in rejected)
        raise ExportError(
            f"variant(s) rejected and not stored: {names}; raise --max-drop (now "
            f"{options.max_drop_points:g}) or lower --min-agreement (now "
            f"{options.min_agreement:g}), or store anyway with --force"
        )


def variants_table(reports: Sequence[VariantReport], *, title: str = "variants") -> Table:
    """One row per variant: decision, accuracy change, agreement, speed and size; the caption
    says what quality was measured against (labels, or agreement with FP32's answers)."""
    table = Table(title=title, caption=_compared(reports), caption_justify="left")
    for column in ("variant", "status", "metric", "Δ points", "agreement", "worst class"):
        table.add_column(column, justify="right" if column == "Δ points" else "left")
    for column in ("p50 ms (b=1)", "speedup", "img/s (b=16)", "size MB", "provider"):
        table.add_column(column, justify="left" if column == "provider" else "right")
    for report in reports:
        table.add_row(*_row(report))
    return table


_STYLE = {"passed": "green", "reference": "cyan", "forced": "yellow", "rejected": "red"}


def _row(report: VariantReport) -> list[str]:
    quality, speed = report.quality, report.speed
    return [
        report.name,
        f"[{_STYLE[report.status]}]{report.status}[/]",
        f"{quality.metric} {quality.value:.4f}",
        "-" if quality.delta_points is None else f"{quality.delta_points:+.2f}",
        f"{quality.agreement:.4f}",
        _worst(report),
        f"{speed.latency_p50_ms:.2f}",
        f"{report.speedup_vs_fp32:.2f}x",
        f"{speed.throughput_images_per_s:.1f}",
        f"{report.file_size_bytes / 1e6:.2f}",
        speed.provider.removesuffix("ExecutionProvider"),
    ]


def _compared(reports: Sequence[VariantReport]) -> str:
    if not reports:
        return ""
    first = reports[0]
    where = (first.eval_set.source or "the evaluation set").removeprefix("images:")
    images = f"{first.eval_set.count} images: {where}"
    if first.quality.comparison == "labels":
        return f"compared with: labels, {first.quality.metric} on {images}"
    return f"compared with: agreement with fp32 (no labels), on {images}"


def _worst(report: VariantReport) -> str:
    rows = [c for c in report.quality.per_class if c.delta is not None and c.delta < 0]
    if not rows:
        return "-"
    worst = min(rows, key=lambda c: (c.delta, c.label))
    return f"{worst.label} {100 * (worst.delta or 0.0):+.1f}pt {report.quality.class_metric}"
