"""``visionyard deploy observability``: Prometheus rules, their unit test, a scrape config and a
Grafana dashboard, generated from the settings. Later deploy targets join this group.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, out
from visionyard.errors import ConfigError

app = typer.Typer(help="Generate deployment artifacts from the settings.", no_args_is_help=True)
_DURATION = re.compile(r"^([0-9]+[smhd])+$")
_WHAT = {
    "alerts.yml": "alerting rules",
    "alerts_test.yml": "promtool unit test of the rules",
    "prometheus.yml": "scrape config for visionyard serve",
    "visionyard.json": "Grafana dashboard",
}


@app.command("observability")
def observability(
    ctx: typer.Context,
    out_dir: Path = typer.Option(..., "--out", help="Folder to write prometheus/ and grafana/ to."),
    target: str | None = typer.Option(
        None, "--target", help="host:port Prometheus scrapes (default: serving.host:http_port)."
    ),
    error_ratio: float = typer.Option(
        0.05, "--error-ratio", min=0.0001, max=0.5, help="Server-side error share that alerts."
    ),
    p99_seconds: float = typer.Option(
        1.0, "--p99-seconds", min=0.0001, help="p99 end-to-end latency that alerts."
    ),
    drift_for: str = typer.Option(
        "15m", "--drift-for", help="How long drift holds before it alerts."
    ),
) -> None:
    """Write Prometheus alerting rules, their promtool test, a scrape config and a dashboard."""
    from visionyard.deploy.observability import AlertThresholds, write_observability

    if not _DURATION.match(drift_for):
        raise ConfigError(
            f"--drift-for {drift_for!r} is not a Prometheus duration such as 15m or 1h"
        )
    thresholds = AlertThresholds(
        error_ratio=error_ratio, p99_seconds=p99_seconds, drift_for=drift_for
    )
    written = write_observability(out_dir, app_context(ctx).settings, thresholds, target)
    table = Table("file", "what", title=f"observability files in {escape(str(out_dir))}")
    for path in written:
        table.add_row(escape(str(path)), _WHAT.get(path.name, ""))
    out().print(table)
    out().print(
        f"check: promtool check rules {escape(str(written[0]))} && "
        f"promtool test rules {escape(str(written[1]))}",
        highlight=False,
        soft_wrap=True,
    )


def _written(title: str, out_dir: Path, written: list[Path]) -> None:
    table = Table("file", title=f"{title} in {escape(str(out_dir))}")
    for path in written:
        table.add_row(escape(str(path.relative_to(out_dir))))
    out().print(table)


@app.command("docker")
def docker(
    ctx: typer.Context,
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the build context to."),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="NAME=NAME@ALIAS pulled from the registry at start (repeatable)."
    ),
    bake: list[str] = typer.Option(
        [], "--bake", help="NAME@ALIAS (or NAME=REF): copy the verified bundle into the image."
    ),
    wheel: Path | None = typer.Option(
        None, "--wheel", help="visionyard wheel to install (default: built from this checkout)."
    ),
    force: bool = typer.Option(False, "--force", help="Empty a non-empty --out folder first."),
) -> None:
    """Write a Docker build context: multi-stage Dockerfile (cpu and gpu targets), wheel, config."""
    from visionyard.deploy.docker import generate

    settings = app_context(ctx).settings
    written = generate(out_dir, settings, model, bake, wheel, force)
    _written("build context", out_dir, written)
    out().print(
        f"build: docker build -t visionyard-serving {escape(str(out_dir))}  (GPU: --target gpu)",
        highlight=False,
        soft_wrap=True,
    )


from visionyard.cli.deploy_plan import plan, release  # noqa: E402

app.command("plan")(plan)
app.command("release")(release)


from visionyard.cli.deploy_k8s import k8s  # noqa: E402

app.command("k8s")(k8s)
