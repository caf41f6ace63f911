"""Root of the ``visionyard`` CLI: global options, sub-command wiring and error handling.

Only typer, rich and pydantic are imported here; commands import torch, mlflow or onnxruntime
inside their bodies so that ``visionyard --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.markup import escape

from visionyard.cli import bundle as bundle_cmd
from visionyard.cli import config as config_cmd
from visionyard.cli import contract as contract_cmd
from visionyard.cli import data as data_cmd
from visionyard.cli import deploy as deploy_cmd
from visionyard.cli import models as models_cmd
from visionyard.cli import monitor as monitor_cmd
from visionyard.cli import registry_cmds
from visionyard.cli import rollout as rollout_cmd
from visionyard.cli import runs as runs_cmd
from visionyard.cli.console import EXIT_CODES, AppContext, err
from visionyard.cli.evaluate import evaluate as evaluate_cmd
from visionyard.cli.export import export as export_cmd
from visionyard.cli.import_model import import_model as import_cmd
from visionyard.cli.predict import predict as predict_cmd
from visionyard.cli.quickstart import quickstart as quickstart_cmd
from visionyard.cli.serve import serve as serve_cmd
from visionyard.cli.train import train as train_cmd
from visionyard.errors import VisionyardError
from visionyard.settings import load_settings

app = typer.Typer(
    name="visionyard",
    help="Take object-recognition models from experiment to production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("quickstart")(quickstart_cmd)
app.add_typer(bundle_cmd.app, name="bundle")
app.add_typer(config_cmd.app, name="config")
app.add_typer(contract_cmd.app, name="contract")
app.add_typer(data_cmd.app, name="data")
app.add_typer(deploy_cmd.app, name="deploy")
app.add_typer(models_cmd.app, name="models")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(rollout_cmd.app, name="rollout")
for _name in ("register", "promote", "rollback", "gc"):
    app.command(_name)(getattr(registry_cmds, _name))
app.command("serve")(serve_cmd)
app.command("export")(export_cmd)
app.add_typer(runs_cmd.app, name="runs")
app.command("train")(train_cmd)
app.command("import")(import_cmd)
app.command("predict")(predict_cmd)
app.command("evaluate")(evaluate_cmd)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="Config file (TOML or YAML)."),
    home: Path | None = typer.Option(None, "--home", help="Project state directory."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """visionyard: versioned, verified, reversible vision models."""
    flags = {"home": home, "tracking.uri": tracking_uri}
    ctx.obj = AppContext(load_settings(config, flags))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code; user errors become one line on stderr."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="visionyard")
    except SystemExit as exc:  # typer/click standalone mode always ends this way
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except VisionyardError as exc:
        err().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        err().print("interrupted")
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    if os.environ.get("VISIONYARD_DEBUG"):
        sys.tracebacklimit = 1000
    sys.exit(main())
