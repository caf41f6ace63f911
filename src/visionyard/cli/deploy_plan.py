"""``visionyard deploy plan`` (capacity for the autoscaler) and ``visionyard deploy release``
(the CI release pipeline); registered on the ``deploy`` group in :mod:`visionyard.cli.deploy`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, err, out

if TYPE_CHECKING:
    from visionyard.deploy.plan import CapacityPlan, Level


def plan(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME@ALIAS or NAME/VERSION in the registry."),
    p99_ms: float = typer.Option(..., "--p99-ms", min=0.1, help="p99 latency target, ms."),
    seconds: float = typer.Option(
        20.0, "--seconds", min=1.0, help="Measuring time, split over the concurrency levels."
    ),
    max_concurrency: int = typer.Option(
        32, "--max-concurrency", min=1, max=1024, help="Most closed-loop clients tried."
    ),
    headroom: float = typer.Option(
        0.8, "--headroom", min=0.1, max=1.0, help="Share of the capacity the HPA targets."
    ),
    out_file: Path | None = typer.Option(
        None, "--out", help="Write the plan JSON here (deploy k8s reads it)."
    ),
) -> None:
    """Measure one replica's images/s at a p99 target; write the autoscaler's targets."""
    from visionyard.deploy.plan import PlanRequest, measure, write_plan
    from visionyard.deploy.spec import resolve_model

    loaded = app_context(ctx).loaded
    settings = loaded.settings
    ref = resolve_model(settings, reference)
    request = PlanRequest(
        p99_ms=p99_ms, seconds=seconds, max_concurrency=max_concurrency, headroom=headroom
    )
    serve_args = ["--home", str(settings.home), "--tracking-uri", settings.tracking_uri()]
    if loaded.config_file is not None:
        serve_args = ["--config", str(loaded.config_file), *serve_args]
    err().print(
        f"serving {escape(ref.reference)} (version {ref.version}) on loopback; "
        f"measuring up to {max_concurrency} clients for at most {seconds:g} s",
        highlight=False,
    )
    result = measure(
        ref, request, serve_args, settings.serving.inference_token, on_level=_print_level
    )
    _print_plan(result)
    if out_file is not None:
        write_plan(result, out_file)
        out().print(f"plan written to {escape(str(out_file))}", highlight=False)


def _print_level(level: Level) -> None:
    cpu = "-" if level.cpu_cores is None else f"{level.cpu_cores:.2f}"
    err().print(
        f"  {level.concurrency:>4} clients: {level.images_per_s:8.1f} images/s  "
        f"p50 {level.p50_ms:7.1f} ms  p99 {level.p99_ms:7.1f} ms  in flight "
        f"{level.in_flight:5.2f}  cpu {cpu} cores  failed {level.failures}",
        highlight=False,
    )


def _print_plan(result: CapacityPlan) -> None:
    table = Table(
        "clients", "images/s", "p50 ms", "p99 ms", "in flight", "cpu cores", "failed",
        title=f"{escape(result.model.reference)} v{result.model.version}, "
        f"p99 target {result.p99_target_ms:g} ms",
    )  # fmt: skip
    for level in result.levels:
        mark = " *" if level == result.capacity else ""
        cpu = "-" if level.cpu_cores is None else f"{level.cpu_cores:.2f}"
        table.add_row(
            f"{level.concurrency}{mark}", f"{level.images_per_s:.1f}", f"{level.p50_ms:.1f}",
            f"{level.p99_ms:.1f}", f"{level.in_flight:.2f}", cpu, str(level.failures),
        )  # fmt: skip
    console = out()
    console.print(table)
    hpa, cap = result.hpa, result.capacity
    console.print(
        f"capacity: {cap.images_per_s:.1f} images/s per replica at p99 {cap.p99_ms:.1f} ms "
        f"({cap.concurrency} clients)",
        highlight=False,
    )
    cpu = (
        "cpu: not measured"
        if hpa.cpu_request_millicores is None
        else f"cpu request {hpa.cpu_request_millicores}m at {hpa.cpu_utilization_percent}%"
    )
    console.print(
        f"HPA target: {hpa.metric} {hpa.in_flight_per_pod:g} per pod; {cpu} "
        f"(headroom {hpa.headroom:g})",
        highlight=False,
    )


def release(
    model: str = typer.Option(..., "--model", "-m", help="Registered model name to release."),
    out_dir: Path = typer.Option(Path("."), "--out", help="Repository root to write into."),
    data: str = typer.Option("data/train", "--data", help="Training ImageFolder (repo-relative)."),
    eval_data: str = typer.Option(
        "data/eval", "--eval", help="Pinned evaluation set for the gate (repo-relative)."
    ),
    train_flags: str = typer.Option("--epochs 10", "--train-flags", help="visionyard train flags."),
    variants: str = typer.Option("fp32,int8", "--variants", help="Variants to export."),
    canary: int = typer.Option(
        0, "--canary", min=0, max=100, help="Start a canary at this % (0: promote to staging)."
    ),
    install: str | None = typer.Option(
        None, "--install", help="pip arguments that install visionyard in CI (default: PyPI)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite these files if they exist."),
) -> None:
    """Write a GitHub Actions release workflow, scripts/release.sh, its settings and the gate."""
    from visionyard.deploy.release import ReleaseOptions, generate

    options = ReleaseOptions(
        model=model, data=data, eval_data=eval_data, train_flags=train_flags,
        variants=variants, canary=canary,
    )  # fmt: skip
    if install:
        options = dataclasses.replace(options, install=install)
    written = generate(out_dir, options, force)
    table = Table("file", title=f"release pipeline in {escape(str(out_dir))}")
    for path in written:
        table.add_row(escape(str(path.relative_to(out_dir))))
    out().print(table)
    out().print(
        "run it here: scripts/release.sh candidate  (then: scripts/release.sh production "
        "VERSION staging); on GitHub: add required reviewers to the 'production' environment",
        highlight=False,
        soft_wrap=True,
    )
