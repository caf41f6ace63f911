"""``visionyard bundle``: verify and inspect model bundles on disk."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import all_option, emit_json, labels_line, out, registry

app = typer.Typer(help="Verify and inspect model bundles.", no_args_is_help=True)


@app.command("verify")
def verify(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="Bundle directory, or a registered NAME/VERSION."),
) -> None:
    """Check a bundle directory against its manifest, or every piece of a registered version
    (bundle and variants) against the digests the registry recorded."""
    from visionyard.bundle import load_bundle
    from visionyard.registry.views import is_reference

    if Path(target).exists() or not is_reference(target):
        bundle = load_bundle(target)
        out().print(
            f"[green]ok[/] {escape(target)}: {len(bundle.files)} files verified, "
            f"variants {', '.join(sorted(bundle.variants))}, digest {bundle.digest()}"
        )
        return
    _verify_version(ctx, target)


def _verify_version(ctx: typer.Context, reference: str) -> None:
    from visionyard.errors import BundleIntegrityError
    from visionyard.tracking.mlflow_model import scratch_dir

    with scratch_dir("vy-verify-") as tmp:
        version, rows = registry(ctx).verify(reference, tmp)
    table = Table(title=f"{escape(version.name)} version {version.version} against the registry")
    for column in ("piece", "recorded digest", "found digest", "result"):
        table.add_column(column)
    for row in rows:
        result = "[green]ok[/]" if row.ok else f"[red]{escape(row.problem or '')}[/]"
        table.add_row(row.piece, row.recorded[:16], (row.found or "-")[:16], result)
    out().print(table)
    bad = [row.piece for row in rows if not row.ok]
    if bad:
        raise BundleIntegrityError(
            f"{version.name}/{version.version}", f"{', '.join(bad)} failed verification"
        )


@app.command("sign")
def sign(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="A registered NAME/VERSION."),
) -> None:
    """Check every piece of a registered version against the registry, then sign what the
    registry recorded with registry.signing_key (versions registered before a key was set)."""
    tags = registry(ctx).sign(reference)
    out().print(f"[green]signed[/] {escape(reference)}: {', '.join(tags)}", highlight=False)


@app.command("show")
def show(
    path: Path = typer.Argument(..., help="Bundle directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (files, variants, contract)."),
    show_all: bool = all_option(),
) -> None:
    """Verify a bundle, then print its files, variants and contract summary (a long label list
    as a count and its first labels; --all lists every one)."""
    from visionyard.bundle import load_bundle

    bundle = load_bundle(path)
    contract = bundle.contract
    if as_json:
        emit_json({"path": str(path), "digest": bundle.digest(), "files": bundle.files,
                   "variants": bundle.variants, "contract_digest": contract.digest(),
                   "contract": contract.model_dump(mode="json")})  # fmt: skip
        return
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
        f"({pre.resize}, {pre.layout}, {pre.dtype}), {labels_line(contract.labels, show_all)}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"variants: {bundle.variants}; contract {contract.digest()}")
