"""``visionyard bundle``: verify and inspect model bundles on disk."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from visionyard.cli.console import out

app = typer.Typer(help="Verify and inspect model bundles.", no_args_is_help=True)


@app.command("verify")
def verify(path: Path = typer.Argument(..., help="Bundle directory.")) -> None:
    """Check every file of a bundle against its manifest checksums."""
    from visionyard.bundle import load_bundle

    bundle = load_bundle(path)
    out().print(
        f"[green]ok[/] {path}: {len(bundle.files)} files verified, "
        f"variants {', '.join(sorted(bundle.variants))}, digest {bundle.digest()}"
    )


@app.command("show")
def show(path: Path = typer.Argument(..., help="Bundle directory.")) -> None:
    """Verify a bundle, then print its files, variants and contract summary."""
    from visionyard.bundle import load_bundle

    bundle = load_bundle(path)
    contract = bundle.contract
    pre = contract.preprocessing
    table = Table(title=f"bundle {path}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for rel, info in sorted(bundle.files.items()):
        table.add_row(rel, str(info["size"]), str(info["sha256"])[:16])
    console = out()
    console.print(table)
    console.print(
        f"task {contract.task}, input {pre.input_size.height}x{pre.input_size.width} "
        f"({pre.resize}, {pre.layout}, {pre.dtype}), {len(contract.labels)} labels: "
        f"{', '.join(contract.labels)}"
    )
    console.print(f"variants: {bundle.variants}; contract {contract.digest()}")
