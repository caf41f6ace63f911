"""``visionyard pipeline register | show``: multi-model pipelines (detect -> crop -> classify).

A pipeline is registered as a version of a registered model (:mod:`visionyard.pipeline.registry`),
so ``promote``, ``rollback``, ``models history/diff``, ``evaluate`` and ``serve`` take it like
any version.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import emit_json, out, registry

app = typer.Typer(
    help="Multi-model pipelines (detect -> crop -> classify): register, show.",
    no_args_is_help=True,
)


@app.command("register")
def register(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help="Pipeline spec (YAML)."),
    name: str = typer.Option(..., "--name", "-n", help="Registered model name of the pipeline."),
    force: bool = typer.Option(False, "--force", help="Register a pinned spec registered already."),
) -> None:
    """Check the stages fit, pin each to a version, register the spec as a new version."""
    from visionyard.pipeline.registry import register_pipeline

    done = register_pipeline(registry(ctx), spec, name, force=force)
    pins = ", ".join(f"{role} {getattr(done.spec.pinned, role)}" for role in _ROLES)
    out().print(
        f"registered pipeline [bold]{escape(name)}[/] version {done.version} "
        f"(semver {done.semver}): {escape(pins)}",
        highlight=False,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME/VERSION."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The pinned stages of a pipeline version (and the references they were written as)."""
    from visionyard.pipeline.registry import show_pipeline

    version, spec = show_pipeline(registry(ctx), reference)
    if as_json:
        emit_json({"name": version.name, "version": version.version,
                   "spec": spec.model_dump(mode="json")})  # fmt: skip
        return
    table = Table(title=f"pipeline {version.name}/{version.version}")
    for column in ("stage", "pinned", "written as", "served"):
        table.add_column(column)
    for role in _ROLES:
        written = spec.stage(role)
        served = f"follows {written.reference}" if written.alias else "pinned"
        table.add_row(role, str(getattr(spec.pinned, role)), written.reference, served)
    out().print(table)
    crop = spec.crop
    out().print(
        f"crop padding {crop.padding}, min size {crop.min_size}px; min score {spec.min_score}; "
        f"max crops {spec.max_crops}",
        highlight=False,
    )


_ROLES = ("detector", "classifier")
