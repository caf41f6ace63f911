"""``visionyard config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from visionyard.cli.console import app_context, out
from visionyard.settings import effective_values

app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print every effective setting and its source (default, file, env or flag)."""
    loaded = app_context(ctx).loaded
    values = effective_values(loaded.settings)
    if as_json:
        rows = {
            k: {"value": v, "source": loaded.sources.get(k, "default")} for k, v in values.items()
        }
        out().print_json(json.dumps(rows))
        return
    where = str(loaded.config_file) if loaded.config_file else "none"
    table = Table(title=f"visionyard settings (config file: {where})")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for key, value in values.items():
        shown = "***" if key.endswith(("token", "key")) and value else json.dumps(value)
        table.add_row(key, shown, loaded.sources.get(key, "default"))
    out().print(table)
