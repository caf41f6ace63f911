"""``visionyard contract``: validate and show vision contract files.

The contract package (numpy, Pillow) is imported inside the commands so ``visionyard --help``
stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from visionyard.cli.console import LABELS_SHOWN, all_option, emit_json, labels_line, out

if TYPE_CHECKING:
    from visionyard.contract.schema import VisionContract

app = typer.Typer(help="Validate and inspect vision contracts.", no_args_is_help=True)

FILE = typer.Argument(..., help="Contract JSON file.", show_default=False)


@app.command("validate")
def validate(file: Path = FILE) -> None:
    """Check a contract file; prints one line, or the first problem with its field."""
    contract = _load(file)
    size = contract.preprocessing.input_size
    out().print(
        f"{file}: valid vision contract v{contract.contract_version} ({contract.task}, "
        f"{len(contract.labels)} labels, input {size.height}x{size.width}, {contract.digest()})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("show")
def show(
    file: Path = FILE,
    as_json: bool = typer.Option(False, "--json", help="Print the full contract as JSON."),
    show_all: bool = all_option(),
) -> None:
    """Print every field of a contract (defaults included) and its labels (a long list as a
    count and its first labels; --all lists every one)."""
    contract = _load(file)
    if as_json:
        emit_json(json.loads(contract.to_json()))
        return
    out().print(_fields_table(contract, file))
    if show_all or len(contract.labels) <= LABELS_SHOWN:
        out().print(_labels_table(contract))
    else:
        out().print(labels_line(contract.labels, show_all=False), highlight=False, soft_wrap=True)


def _load(file: Path) -> VisionContract:
    from visionyard.contract.schema import load_contract

    return load_contract(file)


def _fields_table(contract: VisionContract, file: Path) -> Table:
    from visionyard.contract.diff import flatten

    data = contract.model_dump(mode="json")
    del data["labels"]
    table = Table(title=f"vision contract {file}", caption=contract.digest())
    table.add_column("field")
    table.add_column("value")
    for path, value in _grouped(flatten(data)).items():
        table.add_row(path, json.dumps(value))
    return table


def _grouped(flat: dict[str, object]) -> dict[str, object]:
    """Show short lists (mean, std, background) on one row instead of one row per item."""
    rows: dict[str, object] = {}
    for path, value in flat.items():
        head, _, last = path.rpartition(".")
        if last.isdigit():
            existing = rows.setdefault(head, [])
            assert isinstance(existing, list)
            existing.append(value)
        else:
            rows[path] = value
    return rows


def _labels_table(contract: VisionContract) -> Table:
    table = Table(title=f"labels ({len(contract.labels)})")
    table.add_column("index", justify="right")
    table.add_column("label")
    for index, label in enumerate(contract.labels):
        table.add_row(str(index), label)
    return table
