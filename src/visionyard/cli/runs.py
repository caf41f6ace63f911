"""``visionyard runs``: list and inspect tracked runs, and open the MLflow UI on the store.

mlflow loads only inside the commands (through :mod:`visionyard.tracking`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from visionyard.cli.console import app_context, emit_json, err, out

if TYPE_CHECKING:
    from visionyard.tracking import RunInfo

app = typer.Typer(help="Tracked runs: list, show, open the MLflow UI.", no_args_is_help=True)
SHOWN_METRICS = 4


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    experiment: str | None = typer.Option(
        None, "--experiment", "-e", help="Only this experiment, by name or id (default: all)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest runs to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (every field of each run)."),
) -> None:
    """Newest runs first, with their experiment, status and latest metrics."""
    from visionyard.tracking import list_runs
    from visionyard.tracking.experiments import experiment_names, resolve_experiment

    settings = app_context(ctx).settings
    name = resolve_experiment(experiment, settings=settings) if experiment else None
    runs = list_runs(name, settings=settings, max_results=limit)
    names = experiment_names(settings=settings)
    if as_json:
        emit_json([{**asdict(r), "experiment": names.get(r.experiment_id)} for r in runs])
        return
    table = Table(title=f"runs ({name or 'all experiments'})")
    for column in ("run id", "name", "experiment", "status", "started", "duration", "metrics"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run.run_id,
            run.name or "",
            names.get(run.experiment_id, run.experiment_id),
            run.status,
            _when(run.start_time),
            _duration(run),
            _metrics_summary(run.metrics),
        )
    out().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id (see `visionyard runs list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """One run: overview, parameters, metrics, datasets and tags."""
    from visionyard.tracking import get_run_info
    from visionyard.tracking.experiments import experiment_names

    settings = app_context(ctx).settings
    run = get_run_info(run_id, settings=settings)
    experiment = experiment_names(settings=settings).get(run.experiment_id)
    if as_json:
        emit_json({**asdict(run), "experiment": experiment})
        return
    console = out()
    console.print(_overview(run, experiment))
    console.print(_pairs("parameters", run.params))
    console.print(_pairs("latest metrics", {k: f"{v:.6g}" for k, v in run.metrics.items()}))
    datasets = Table(title="datasets")
    for column in ("name", "digest", "context"):
        datasets.add_column(column)
    for ref in run.datasets:
        datasets.add_row(ref.name, ref.full_digest or ref.digest, ref.context or "")
    console.print(datasets)
    console.print(_pairs("tags", run.tags))


@app.command("ui")
def ui(
    ctx: typer.Context,
    port: int = typer.Option(5000, "--port", "-p", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    start: bool = typer.Option(False, "--start", help="Start the UI now (Ctrl-C stops it)."),
) -> None:
    """Print (or start) the MLflow UI command for the configured tracking store."""
    from visionyard.tracking import TrackingConfig, ui_command

    config = TrackingConfig.from_settings(app_context(ctx).settings)
    cmd = ui_command(config, host, port)
    if not cmd:
        out().print(f"the tracking server serves the UI itself: {config.tracking_uri}")
        return
    out().print(shlex.join(cmd), soft_wrap=True, highlight=False)
    if start:
        err().print(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        raise typer.Exit(subprocess.call(cmd, env=env))


def _overview(run: RunInfo, experiment: str | None) -> Table:
    return _pairs(
        f"run {run.run_id}",
        {
            "name": run.name or "",
            "status": run.status,
            "experiment": f"{experiment or '-'} (id {run.experiment_id})",
            "started": _when(run.start_time),
            "duration": _duration(run),
            "artifacts": run.artifact_uri,
        },
    )


def _pairs(title: str, values: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key in sorted(values):
        table.add_row(key, values[key])
    return table


def _metrics_summary(metrics: dict[str, float]) -> str:
    shown = [f"{k}={v:.4g}" for k, v in sorted(metrics.items())[:SHOWN_METRICS]]
    more = len(metrics) - SHOWN_METRICS
    return ", ".join(shown) + (f" (+{more})" if more > 0 else "")


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _duration(run: RunInfo) -> str:
    if run.start_time is None or run.end_time is None:
        return "running" if run.status == "RUNNING" else ""
    seconds = (run.end_time - run.start_time).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
