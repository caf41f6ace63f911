"""``visionyard data``: make synthetic datasets, build manifests, compare datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from enum import StrEnum
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from visionyard.cli.console import app_context, emit_json, err, out
from visionyard.data.diff import ManifestDiff, diff_manifests
from visionyard.data.manifest import NO_SPLIT, DatasetManifest, build_manifest, read_dataset
from visionyard.data.synth import SHAPES, make_classification_set, make_detection_set
from visionyard.errors import DatasetError

app = typer.Typer(help="Datasets: synthetic data, manifests and diffs.", no_args_is_help=True)
capture_app = typer.Typer(
    help="Images the server captured (monitor.capture.dir): list them, export a dataset.",
    no_args_is_help=True,
)
app.add_typer(capture_app, name="capture")


class SynthKind(StrEnum):
    classification = "classification"
    detection = "detection"
    both = "both"


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, driven by ``callback(done, total)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err(), transient=False) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command("synth")
def synth(
    output: Path = typer.Argument(..., help="Output directory (new or empty)."),
    kind: SynthKind = typer.Option(SynthKind.both, "--kind", help="Which dataset(s) to make."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    train_per_class: int = typer.Option(250, "--train-per-class", min=1),
    val_per_class: int = typer.Option(50, "--val-per-class", min=1),
    images: int = typer.Option(50, "--images", min=1, help="Detection images."),
    size: int = typer.Option(64, "--size", min=16, help="Image width and height in pixels."),
    max_objects: int = typer.Option(4, "--max-objects", min=1, help="Objects per image, max."),
) -> None:
    """Write a synthetic shapes dataset (classification ImageFolder and/or COCO detection)."""
    both = kind is SynthKind.both
    table = Table(title=f"synthetic datasets (seed {seed})")
    for column in ("kind", "path", "images", "labels"):
        table.add_column(column)
    next_steps: list[str] = []
    if kind in (SynthKind.classification, SynthKind.both):
        target = output / "classification" if both else output
        with progress_bar("classification images") as tick:
            make_classification_set(
                target,
                seed=seed,
                train_per_class=train_per_class,
                val_per_class=val_per_class,
                size=size,
                progress=tick,
            )
        count = (train_per_class + val_per_class) * len(SHAPES)
        table.add_row("classification", str(target), str(count), ", ".join(SHAPES))
        next_steps.append(f"visionyard train --data {target}")
    if kind in (SynthKind.detection, SynthKind.both):
        target = output / "detection" if both else output
        with progress_bar("detection images") as tick:
            make_detection_set(
                target,
                seed=seed,
                n_images=images,
                size=size,
                max_objects=max_objects,
                progress=tick,
            )
        table.add_row("detection", str(target), str(images), ", ".join(SHAPES))
        next_steps.append(f"visionyard data manifest {target}")
    console = out()
    console.print(table)
    console.print("use each dataset by its own folder, e.g.:", highlight=False)
    for step in next_steps:
        console.print(f"  {escape(step)}", highlight=False, soft_wrap=True)


@app.command("manifest")
def manifest(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="Dataset directory (ImageFolder or COCO images)."),
    coco: Path | None = typer.Option(None, "--coco", help="COCO annotation file."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the manifest here."),
) -> None:
    """Verify every image, hash it and print counts and the dataset digest."""
    settings = app_context(ctx).settings
    dataset = read_dataset(directory, coco)
    with progress_bar("verifying images") as tick:
        built = build_manifest(dataset, max_pixels=settings.images.max_pixels, progress=tick)
    console = out()
    console.print(
        f"{built.kind} dataset {directory}: {len(built)} images, {len(built.labels)} labels",
        highlight=False,
        soft_wrap=True,
    )
    console.print(_counts_table(built))
    console.print(f"digest: sha256:{built.digest}", highlight=False)
    if output is not None:
        built.save(output)
        console.print(f"manifest written to {output}", highlight=False, soft_wrap=True)


@app.command("diff")
def diff(
    ctx: typer.Context,
    before: Path = typer.Argument(..., help="Dataset directory or manifest JSON (before)."),
    after: Path = typer.Argument(..., help="Dataset directory or manifest JSON (after)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full diff as JSON."),
    limit: int = typer.Option(50, "--limit", min=1, help="Rows shown per table."),
) -> None:
    """Compare two datasets: added, removed, changed, moved and relabelled images."""
    max_pixels = app_context(ctx).settings.images.max_pixels
    result = diff_manifests(_manifest(before, max_pixels), _manifest(after, max_pixels))
    if as_json:
        emit_json(result.to_dict())
        return
    console = out()
    console.print(_summary_table(result, before, after))
    console.print(_label_table(result))
    for table in _detail_tables(result, limit):
        console.print(table)


def _manifest(path: Path, max_pixels: int) -> DatasetManifest:
    if path.is_file():
        return DatasetManifest.load(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is neither a dataset directory nor a manifest file")
    dataset = read_dataset(path)
    with progress_bar(f"verifying {path.name or path}") as tick:
        return build_manifest(dataset, max_pixels=max_pixels, progress=tick)


def _counts_table(built: DatasetManifest) -> Table:
    table = Table()
    table.add_column("label")
    detection = built.kind == "detection"
    columns = ["images", "boxes"] if detection else [*(built.splits or (NO_SPLIT,)), "total"]
    for column in columns:
        table.add_column(column, justify="right")
    for label, counts in built.label_counts().items():
        values = [counts.get(c, 0) for c in columns]
        if not detection:
            values[-1] = sum(values)
        table.add_row(label, *(str(v) for v in values))
    return table


def _summary_table(result: ManifestDiff, before: Path, after: Path) -> Table:
    table = Table(title="identical datasets" if result.identical else "dataset diff")
    table.add_column("")
    table.add_column(f"A: {before}")
    table.add_column(f"B: {after}")
    table.add_row("images", str(result.images_a), str(result.images_b))
    table.add_row("digest", result.digest_a[:16], result.digest_b[:16])
    summary = result.summary()
    for key in ("added", "removed", "changed", "relabelled", "moved"):
        table.add_row(key, "", str(summary[key]))
    table.add_row("labels added", "", ", ".join(result.labels_added) or "-")
    table.add_row("labels removed", ", ".join(result.labels_removed) or "-", "")
    return table


def _label_table(result: ManifestDiff) -> Table:
    unit = "boxes" if result.kind == "detection" else "images"
    table = Table(title=f"{unit} per label")
    for column in ("label", "A", "B", "change"):
        table.add_column(column, justify="left" if column == "label" else "right")
    names = [*result.labels_a, *(n for n in result.labels_b if n not in result.labels_a)]
    for name in names:
        a, b = result.counts_a.get(name, 0), result.counts_b.get(name, 0)
        table.add_row(name, str(a), str(b), f"{b - a:+d}")
    return table


def _detail_tables(result: ManifestDiff, limit: int) -> list[Table]:
    specs: list[tuple[str, Sequence[str], list[tuple[str, ...]]]] = [
        ("added", ("path", "labels"), [(e.path, e.describe_labels()) for e in result.added]),
        ("removed", ("path", "labels"), [(e.path, e.describe_labels()) for e in result.removed]),
        (
            "changed",
            ("path", "labels A", "labels B"),
            [(c.path, c.labels_a, c.labels_b) for c in result.changed],
        ),
        (
            "relabelled",
            ("path A", "path B", "labels A", "labels B"),
            [(r.path_a, r.path_b, r.labels_a, r.labels_b) for r in result.relabelled],
        ),
        (
            "moved",
            ("path A", "path B", "labels"),
            [(m.path_a, m.path_b, m.labels) for m in result.moved],
        ),
    ]
    return [_rows_table(title, columns, rows, limit) for title, columns, rows in specs if rows]


def _rows_table(
    title: str, columns: Sequence[str], rows: list[tuple[str, ...]], limit: int
) -> Table:
    shown = f" (first {limit})" if len(rows) > limit else ""
    table = Table(title=f"{title}: {len(rows)}{shown}")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows[:limit]:
        table.add_row(*row)
    return table


@capture_app.command("list")
def capture_list(
    directory: Path = typer.Argument(..., help="The capture folder (monitor.capture.dir)."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
) -> None:
    """Captured images per model, version and day: count, bytes and reasons."""
    from visionyard.data.captures import iter_captures, summarize

    rows = summarize(iter_captures(directory, model=model))
    table = Table(title=f"captures in {directory}")
    for column in ("model", "version", "day", "images", "bytes", "reasons"):
        table.add_column(column, justify="right" if column in ("images", "bytes") else "left")
    for row in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row.reasons.items()))
        table.add_row(row.model, row.version, row.day, str(row.count), str(row.bytes), reasons)
    out().print(table)
    if not rows:
        out().print("no captures yet", highlight=False)


@capture_app.command("export")
def capture_export(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="The capture folder (monitor.capture.dir)."),
    model: str = typer.Option(..., "--model", help="The served model's name."),
    output: Path = typer.Option(..., "--out", help="New dataset folder."),
    version: str | None = typer.Option(None, "--version", help="Only this version."),
    since: str | None = typer.Option(None, "--since", help="Only from this day (YYYY-MM-DD)."),
    unlabelled: bool = typer.Option(
        False, "--unlabelled", help="One unlabelled/ folder (default: one per predicted label)."
    ),
) -> None:
    """Turn captured images into an ImageFolder dataset with a manifest and its digest."""
    from visionyard.data.captures import Layout, export_captures, iter_captures

    day = _day(since)
    found = iter_captures(directory, model=model, version=version, since=day)
    layout: Layout = "unlabelled" if unlabelled else "predicted"
    max_pixels = app_context(ctx).settings.images.max_pixels
    built = export_captures(found, output, layout=layout, max_pixels=max_pixels)
    console = out()
    console.print(_counts_table(built))
    where = f"{len(built)} images exported to {output} ({layout} layout)"
    console.print(f"{where}; manifest: {output / 'manifest.json'}", highlight=False, soft_wrap=True)
    console.print(f"digest: sha256:{built.digest}", highlight=False)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise DatasetError(f"--since {text!r}: expected a day as YYYY-MM-DD") from exc
