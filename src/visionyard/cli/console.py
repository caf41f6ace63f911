"""Shared rich consoles, the domain-code -> exit-code table, and the per-invocation context."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from visionyard.registry import Registry
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
