"""``visionyard evaluate MODEL_REF --data DIR``: metrics of a version (or bundle) on any
labelled folder, optionally recorded on the version (``--log``).

Heavy imports (onnxruntime, mlflow) happen inside the command so ``visionyard --help`` stays
fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, out, registry
from visionyard.cli.data import progress_bar
from visionyard.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from visionyard.evaluate import ClassificationReport, DetectionReport, EvalSet
    from visionyard.pipeline.runner import PipelineRunner
    from visionyard.runtime.session import InferenceSession
    from visionyard.tracking.registry_client import VersionInfo

    Report = ClassificationReport | DetectionReport

#: Where registered versions are cached (shared with the server: one verified copy each).
CACHE_DIR = "serving-cache"
REPORTS_DIR = "evaluations"


@dataclass(frozen=True)
class Target:
    """What is evaluated: a registered version (``version`` set) or a bundle folder."""

    label: str
    session: InferenceSession | PipelineRunner  # a pipeline: scored by its end result
    version: VersionInfo | None


def evaluate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a bundle folder."),
    data: Path = typer.Option(..., "--data", help="Labelled folder: ImageFolder or COCO."),
    split: str | None = typer.Option(
        None, "--split", help="Split folder to evaluate (default: val or test when present)."
    ),
    variant: str | None = typer.Option(
        None, "--variant", help="Model variant (fp32, int8, fp16); default: the serving choice."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Report folder (default: <home>/evaluations/<model>-<time>)."
    ),
    log: bool = typer.Option(False, "--log", help="Record the evaluation on the version."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Classification report (per-class precision/recall/F1, confusion matrix PNG) or COCO
    detection mAP of a model on a labelled folder."""
    from visionyard.evaluate.folder import check_fit, read_eval_set
    from visionyard.evaluate.report import write_report

    if log and Path(model).exists():  # a folder wins over NAME/VERSION, as in _open
        raise ConfigError(
            f"--log records the evaluation on a registered version, and {model} is a bundle "
            "folder; evaluate NAME/VERSION or NAME@ALIAS to log it"
        )
    found = read_eval_set(data, split)
    target = _open(ctx, model, variant)
    check_fit(found, target.session.contract, target.label)
    folder = output or _default_output(ctx, target)
    with _writable(folder):
        report = _scored(target.session, found)
    try:
        files = write_report(report, folder, title=f"{target.label} on {data.resolve().name}")
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {folder}: {exc.strerror or exc}") from exc
    record = None
    if log and target.version is not None:
        from visionyard.registry.evaluations import log_evaluation

        settings = app_context(ctx).settings
        record = log_evaluation(settings, target.version, report, files, dataset=data.resolve(),
                                split=found.split)  # fmt: skip
    if as_json:
        body = {"model": target.label, "data": str(data), "split": found.split,
                "report": report.model_dump(), "files": [str(f) for f in files],
                "record": record.to_dict() if record else None}  # fmt: skip
        sys.stdout.write(json.dumps(body, indent=2, default=str) + "\n")
        return
    _print(report, f"{escape(target.label)} on {escape(str(data))}", found.split)
    for path in files:
        out().print(f"wrote {escape(str(path))}", highlight=False)
    if record is not None:
        out().print(
            f"logged on {escape(target.label)}: run {record.run_id}, tag {record.key}",
            highlight=False,
        )


def _is_folder(model: str) -> bool:
    from visionyard.registry.views import is_reference

    return Path(model).exists() or not is_reference(model)


def _open(ctx: typer.Context, model: str, variant: str | None) -> Target:
    """A session on a bundle folder, or on a registered version verified by the registry."""
    from visionyard.runtime.session import InferenceSession

    if _is_folder(model):
        if not Path(model).exists():
            raise NotFoundError(
                "bundle folder or model reference", model,
                "give NAME/VERSION, NAME@ALIAS or a bundle folder",
            )  # fmt: skip
        return Target(model, InferenceSession.open(Path(model), variant=variant), None)
    from visionyard.registry.views import parse_reference, resolve_version

    reg = registry(ctx)
    info = resolve_version(reg.client, parse_reference(model))
    ref = f"{info.name}/{info.version}"
    from visionyard.pipeline.registry import is_pipeline, open_pinned

    if is_pipeline(info):
        if variant is not None:
            raise ConfigError(f"{ref} is a pipeline: its stages run their serving variants")
        return Target(ref, open_pinned(reg, ref), info)
    cache = Path(app_context(ctx).settings.home) / CACHE_DIR
    session = reg.open_session(ref, cache, variant=variant)
    return Target(ref, session, info)


@contextmanager
def _writable(folder: Path) -> Iterator[None]:
    """Create ``folder`` first (a report that cannot be written fails before any work); remove
    it again, when it was new and is still empty, if the evaluation fails."""
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {folder}: {exc.strerror or exc}") from exc
    try:
        yield
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _scored(session: InferenceSession | PipelineRunner, found: EvalSet) -> Report:
    """Check every image (the digest), then score them, each with a progress bar."""
    from visionyard.evaluate.folder import evaluate_set

    with progress_bar("checking images") as bar:
        digest = found.digest(bar)
    with progress_bar("evaluating") as bar:
        return evaluate_set(session, found, digest=digest, progress=bar)


def _default_output(ctx: typer.Context, target: Target) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if target.version is not None:
        name = f"{target.version.name}-v{target.version.version}"
    else:
        name = Path(target.label).resolve().name
    folder = Path(app_context(ctx).settings.home) / REPORTS_DIR / f"{name}-{stamp}"
    return folder.resolve()


def _print(report: Report, title: str, split: str | None) -> None:
    where = f" ({split})" if split else ""
    variant = f", variant {report.variant}" if report.variant else ""
    heading = f"{title}{escape(where)}{escape(variant)}"
    if report.task == "classification":
        out().print(_classification_table(report, heading))
        _summary(report)
    else:
        out().print(_detection_table(report, heading))
        out().print(
            f"mAP@[.5:.95] {report.map_50_95:.4f}  mAP@.5 {report.map_50:.4f}  "
            f"({report.image_count} images, {report.object_count} objects)",
            highlight=False,
        )
    out().print(f"dataset digest {report.dataset_digest}", highlight=False)


def _classification_table(report: ClassificationReport, title: str) -> Table:
    table = Table(title=title)
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report.per_class:
        table.add_row(escape(row.label), *_figures(row.precision, row.recall, row.f1),
                      str(row.support), style=None if row.support else "dim")  # fmt: skip
    table.add_section()
    n = str(report.sample_count)
    table.add_row("accuracy", "", "", f"{report.accuracy:.4f}", n)
    table.add_row("macro avg", *_figures(report.macro_precision, report.macro_recall,
                                         report.macro_f1), n)  # fmt: skip
    return table


def _summary(report: ClassificationReport) -> None:
    parts: list[Any] = [f"accuracy {report.accuracy:.4f}"]
    if report.top5_accuracy is not None:
        parts.append(f"top-5 {report.top5_accuracy:.4f}")
    parts.append(f"macro F1 {report.macro_f1:.4f}")
    if report.mean_loss is not None:
        parts.append(f"loss {report.mean_loss:.4f}")
    out().print("  ".join(parts) + f"  ({report.sample_count} images)", highlight=False)


def _detection_table(report: DetectionReport, title: str) -> Table:
    table = Table(title=title)
    for column in ("class", "AP@[.5:.95]", "AP@.5", "objects"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report.per_class:
        table.add_row(escape(row.label), _opt(row.ap), _opt(row.ap50), str(row.support),
                      style=None if row.support else "dim")  # fmt: skip
    table.add_section()
    table.add_row("mean", f"{report.map_50_95:.4f}", f"{report.map_50:.4f}",
                  str(report.object_count))  # fmt: skip
    return table


def _figures(*values: float) -> tuple[str, ...]:
    return tuple(f"{v:.4f}" for v in values)


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
