"""Shared rich consoles, the domain-code -> exit-code table, and the per-invocation context."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from visionyard.registry import Registry
    from visionyard.registry.reads import ReadViews
    from visionyard.settings import LoadedSettings, Settings

#: The CLI's ONE mapping from domain error codes to exit codes (0 = success, 2 = usage).
EXIT_CODES: dict[str, int] = {
    "error": 1,
    "config.invalid": 3,
    "not_found": 4,
    "contract.invalid": 5,
    "image.invalid": 5,
    "image.too_large": 5,
    "dataset.invalid": 5,
    "dataset.corrupt_images": 5,
    "bundle.invalid": 6,
    "bundle.tampered": 6,
    "tracking.failed": 7,
    "tracking.unavailable": 7,
    "gate.failed": 8,
    "registry.conflict": 9,
    "export.failed": 10,
    "dependency.missing": 11,
    "training.failed": 12,
    "inference.failed": 13,
    "inference.invalid_input": 5,
    "serving.busy": 13,
    "serving.unavailable": 13,
    "serving.unauthorized": 3,
    "serving.forbidden": 3,
    "serving.body_too_large": 5,
}


def _width() -> int | None:
    return None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))


def out() -> Console:
    """Console for results (stdout); wide when not a terminal so tables are not cut."""
    return Console(width=_width(), soft_wrap=False)


def err() -> Console:
    """Console for progress and errors (stderr)."""
    return Console(stderr=True, width=_width())


@dataclass
class AppContext:
    """What the root callback builds once and every command receives through ``ctx.obj``."""

    loaded: LoadedSettings

    @property
    def settings(self) -> Settings:
        return self.loaded.settings


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, AppContext)
    return obj


def registry(ctx: typer.Context) -> Registry:
    """The registry over this invocation's settings (imported here: the CLI starts fast)."""
    from visionyard.registry import Registry

    return Registry(app_context(ctx).settings)


def read_views(ctx: typer.Context) -> ReadViews:
    """``models show | list | history``: on a SQLite store they read it without MLflow."""
    from visionyard.registry.reads import ReadViews

    return ReadViews(app_context(ctx).settings)


def emit_json(value: Any) -> None:
    """The ``--json`` form of every list and show command: pure JSON on stdout (indented, no
    colour or wrapping, whatever the terminal), objects for one thing and arrays for lists."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


#: Label lists longer than this are shown as a count and their first labels (``--all``: all).
LABELS_SHOWN = 10


def labels_line(labels: Sequence[str], show_all: bool) -> str:
    """``3 labels: cat, dog, fox``, or for a long list ``1000 labels: a, b, ... (+990 more;
    --all lists them)``."""
    if show_all or len(labels) <= LABELS_SHOWN:
        return f"{len(labels)} labels: {', '.join(labels)}"
    head = ", ".join(labels[:LABELS_SHOWN])
    return (
        f"{len(labels)} labels: {head}, ... (+{len(labels) - LABELS_SHOWN} more; --all lists them)"
    )


def all_option() -> Any:
    """The ``--all`` option of the commands that shorten long label lists."""
    return typer.Option(False, "--all", help="List every label (long lists show a count).")
