"""``visionyard config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from visionyard.cli.console import app_context, emit_json, out
from visionyard.settings import LoadedSettings, effective_values

app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
#: Settings whose unset value means "derived": shown as what is actually used.
EMBEDDED = "default (embedded)"


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print every effective setting and its source (default, file, env or flag); the
    tracking URI is the one used, the embedded SQLite store under home when none is set."""
    loaded = app_context(ctx).loaded
    rows = _rows(loaded)
    if as_json:
        emit_json(rows)
        return
    where = str(loaded.config_file) if loaded.config_file else "none"
    table = Table(title=f"visionyard settings (config file: {where})")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for key, row in rows.items():
        value = row["value"]
        shown = "***" if key.endswith(("token", "key")) and value else json.dumps(value)
        table.add_row(key, shown, row["source"])
    out().print(table)


def _rows(loaded: LoadedSettings) -> dict[str, dict[str, Any]]:
    values = effective_values(loaded.settings)
    rows = {k: {"value": v, "source": loaded.sources.get(k, "default")} for k, v in values.items()}
    uri = loaded.settings.tracking_uri()
    if values.get("tracking.uri") is None:
        rows["tracking.uri"] = {"value": uri, "source": EMBEDDED}
    if values.get("tracking.registry_uri") is None:
        rows["tracking.registry_uri"] = {"value": uri, "source": "default (= tracking.uri)"}
    return rows
