"""``visionyard predict MODEL_REF PATH...``: score images and folders with a version or bundle.

The library does the work (:mod:`visionyard.scoring`); this module resolves the model, opens
the output, draws the progress bar and prints the summary. Rows go to ``--output`` (or stdout
with the local engine), the summary to the terminal (stderr when rows go to stdout).

Exit codes: 0 when every file was scored, and also when some could not be read (their rows carry
the error and the summary counts them); 5 when none could be scored, or with ``--strict`` when
any failed; the usual codes for a bad model reference, variant or Ray address.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from visionyard.cli.console import app_context, err, out, registry
from visionyard.errors import ConfigError

if TYPE_CHECKING:
    from visionyard.runtime.session import InferenceSession
    from visionyard.scoring import Plan, Summary
    from visionyard.scoring.writers import Format

CACHE_DIR = "serving-cache"  # shared with the server and evaluate: one verified copy per version
IMAGE_INVALID_EXIT = 5


class Engine(StrEnum):
    local = "local"
    ray = "ray"


class OutputFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@dataclass(frozen=True)
class Model:
    """The opened model: its session and how the summary names it (``NAME/VERSION`` or path)."""

    label: str
    session: InferenceSession


def predict(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a bundle folder."),
    paths: list[Path] = typer.Argument(..., help="Image files and folders (searched recursively)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output file (local; default stdout) or folder (ray)."
    ),
    fmt: OutputFormat | None = typer.Option(
        None, "--format", help="jsonl or csv (default: from the --output suffix, else jsonl)."
    ),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Labels per image."),
    variant: str | None = typer.Option(
        None, "--variant", help="Pin a variant (fp32, int8, fp16); default: the serving choice."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per model run."),
    threads: int = typer.Option(
        0, "--threads", min=0, help="Worker threads (local) or actors (ray); 0: one per core."
    ),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local or ray (Ray Data)."),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        envvar="RAY_ADDRESS",
        help="Ray cluster (HOST:PORT, ray://HOST:PORT, auto); default: a local Ray.",
    ),  # fmt: skip
    strict: bool = typer.Option(False, "--strict", help="Exit 5 when any image failed."),
) -> None:
    """Score images with a model: top-k labels (classifiers) or boxes (detectors) per file,
    as JSONL or CSV, with unreadable files listed with their error."""
    from visionyard.scoring import Plan, discover

    files = discover(paths)
    if not files:
        raise ConfigError(f"no image files found in {', '.join(map(str, paths))}")
    chosen = _format(fmt, output)
    plan = Plan(batch_size=batch_size, threads=threads, top_k=top_k)
    opened = _open(ctx, model, variant)
    if engine is Engine.ray:
        summary = _ray(opened, files, output, chosen, plan, variant, ray_address)
    else:
        summary = _local(opened, files, output, chosen, plan)
    _report(summary, opened.label, output, to_stderr=output is None)
    if summary.failed and (strict or summary.scored == 0):
        raise typer.Exit(IMAGE_INVALID_EXIT)


def _format(fmt: OutputFormat | None, output: Path | None) -> Format:
    if fmt is not None:
        return "csv" if fmt is OutputFormat.csv else "jsonl"
    return "csv" if output is not None and output.suffix.lower() == ".csv" else "jsonl"


def _open(ctx: typer.Context, model: str, variant: str | None) -> Model:
    """A session on a bundle folder, or on a registered version verified by the registry."""
    from visionyard.registry.views import is_reference, parse_reference
    from visionyard.runtime.session import InferenceSession

    if Path(model).exists() or not is_reference(model):
        return Model(model, InferenceSession.open(Path(model), variant=variant))
    cache = Path(app_context(ctx).settings.home) / CACHE_DIR
    version, path = registry(ctx).fetch_bundle(model, cache)
    label = f"{parse_reference(model).name}/{version}"
    return Model(label, InferenceSession.open(path, variant=variant))


def _local(
    opened: Model, files: list[Path], output: Path | None, fmt: Format, plan: Plan
) -> Summary:
    from visionyard.scoring import make_writer, ranked_columns, score_local

    session = opened.session
    columns = ranked_columns(session.contract, plan.top_k)
    try:
        with _sink(output) as stream, _progress("scoring") as bar:
            writer = make_writer(stream, fmt, session.contract.task, columns)
            return score_local(session, files, writer.write, plan, bar)
    except BrokenPipeError:  # `visionyard predict ... | head`: the reader has gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        raise typer.Exit(141) from None  # 128 + SIGPIPE, as a shell pipeline reports it


def _ray(
    opened: Model,
    files: list[Path],
    output: Path | None,
    fmt: Format,
    plan: Plan,
    variant: str | None,
    address: str | None,
) -> Summary:
    from visionyard.scoring.ray_engine import RayJob, ray_cluster, run_job

    if output is None:
        raise ConfigError("--engine ray writes part files: give an --output folder")
    job = RayJob(address, output, fmt, plan, variant)
    with ray_cluster(job) as ray, _progress("scoring on Ray") as bar:
        return run_job(ray, opened.session.bundle, files, job, bar)


@contextmanager
def _sink(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        with nullcontext(sys.stdout) as stream:
            yield stream
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8", newline="") as stream:
        yield stream


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich bar on stderr that leaves stdout alone (rows may be going there)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=err(), redirect_stdout=False, redirect_stderr=False) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _report(summary: Summary, label: str, output: Path | None, *, to_stderr: bool) -> None:
    console = err() if to_stderr else out()
    console.print(
        f"scored {summary.scored} of {summary.images} images ({summary.failed} failed) in "
        f"{summary.seconds:.1f} s, {summary.images_per_second:.1f} images/s; model "
        f"{escape(label)}, variant {summary.variant}, engine {summary.engine}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.failed:
        err().print(
            f"{summary.failed} file(s) could not be scored: their rows carry the error",
            highlight=False,
        )
    if output is not None:
        console.print(f"wrote {escape(str(output))}", highlight=False, soft_wrap=True)
