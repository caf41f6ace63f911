"""Root of the ``visionyard`` CLI: global options, sub-command wiring and error handling.

Only typer, click and rich are imported here: every sub-command module is imported when that
command runs (:mod:`visionyard.cli.lazy`), and commands import torch, mlflow or onnxruntime
inside their bodies, so ``visionyard --help`` stays fast (``bench/bench_cli_startup.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import typer

from visionyard.cli.lazy import LAZY, LazyCommand, LazyGroup

_C = "visionyard.cli."
LAZY.update(
    {
        "quickstart": LazyCommand(_C + "quickstart", "quickstart", "Run the whole story on synthetic data: data -> train -> track -> register -> serve."),  # noqa: E501
        "register": LazyCommand(_C + "registry_cmds", "register", "Turn a run's bundle into a new version of a registered model (stock MLflow ONNX model)."),  # noqa: E501
        "promote": LazyCommand(_C + "registry_cmds", "promote", "Move an alias to a version, after compatibility checks and an optional gate."),  # noqa: E501
        "rollback": LazyCommand(_C + "registry_cmds", "rollback", "Move an alias back to its previous holder (further back when repeated)."),  # noqa: E501
        "gc": LazyCommand(_C + "registry_cmds", "gc", "Delete old versions (artifacts and metadata); never one an alias holds or recently held."),  # noqa: E501
        "serve": LazyCommand(_C + "serve", "serve", "Serve models (registry references or bundle paths); stop with Ctrl-C."),  # noqa: E501
        "export": LazyCommand(_C + "export", "export", "Build variants, measure each against FP32 on the evaluation set (its labels, or without --data FP32's own answers on held-out --calibration images), keep those that pass; a registered version without a reference profile also gets one."),  # noqa: E501
        "train": LazyCommand(_C + "train", "train", "Train a classifier (ImageFolder) or a detector (--task detection, COCO); log metrics, reports, checkpoint and bundle."),  # noqa: E501
        "import": LazyCommand(_C + "import_model", "import_model", 'Import an existing model as a new registered version (an "import" run, then register).'),  # noqa: E501
        "predict": LazyCommand(_C + "predict", "predict", "Score images with a model: top-k labels (classifiers) or boxes (detectors) per file, as JSONL or CSV, with unreadable files listed with their error."),  # noqa: E501
        "evaluate": LazyCommand(_C + "evaluate", "evaluate", "Classification report (per-class precision/recall/F1, confusion matrix PNG) or COCO detection mAP of a model on a labelled folder."),  # noqa: E501
        "bundle": LazyCommand(_C + "bundle", "app", "Verify and inspect model bundles."),
        "config": LazyCommand(_C + "config", "app", "Inspect the effective configuration."),
        "contract": LazyCommand(_C + "contract", "app", "Validate and inspect vision contracts."),
        "data": LazyCommand(_C + "data", "app", "Datasets: synthetic data, manifests and diffs."),
        "deploy": LazyCommand(_C + "deploy", "app", "Generate deployment artifacts from the settings."),  # noqa: E501
        "models": LazyCommand(_C + "models", "app", "Registered models: list, show, history, diff."),  # noqa: E501
        "pipeline": LazyCommand(_C + "pipeline", "app", "Multi-model pipelines (detect -> crop -> classify): register, show."),  # noqa: E501
        "monitor": LazyCommand(_C + "monitor", "app", "Reference profiles and drift of registered versions."),  # noqa: E501
        "rollout": LazyCommand(_C + "rollout", "app", "Canary and shadow rollouts with automatic decisions."),  # noqa: E501
        "runs": LazyCommand(_C + "runs", "app", "Tracked runs: list, show, open the MLflow UI."),
    }
)  # fmt: skip

app = typer.Typer(
    name="visionyard",
    help="Take object-recognition models from experiment to production.",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from visionyard.cli.version import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="Config file (TOML or YAML)."),
    home: Path | None = typer.Option(None, "--home", help="Project state directory."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Print the versions of visionyard and its key libraries, then exit.",
    ),
) -> None:
    """visionyard: versioned, verified, reversible vision models."""
    from visionyard.cli.console import AppContext
    from visionyard.settings import load_settings

    flags = {"home": home, "tracking.uri": tracking_uri}
    ctx.obj = AppContext(load_settings(config, flags))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code; user errors become one line on stderr."""
    from visionyard.errors import VisionyardError

    try:
        app(args=list(argv) if argv is not None else None, prog_name="visionyard")
    except SystemExit as exc:  # typer/click standalone mode always ends this way
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except VisionyardError as exc:
        from rich.markup import escape

        from visionyard.cli.console import EXIT_CODES, err

        err().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_CODES.get(exc.code, 1)
    except KeyboardInterrupt:
        from visionyard.cli.console import err

        err().print("interrupted")
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    if os.environ.get("VISIONYARD_DEBUG"):
        sys.tracebacklimit = 1000
    sys.exit(main())
