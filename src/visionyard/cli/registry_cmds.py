"""``visionyard register | promote | rollback | gc``: the registry's write commands.

Exit codes (through :data:`visionyard.cli.console.EXIT_CODES`): 0 done, 4 unknown model,
version or alias, 5 a gate dataset that does not fit, 7 tracking store unreachable, 8 gate
failed, 9 refused (duplicate bundle, incompatible version, concurrent move).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from visionyard.cli.console import err, out, registry

if TYPE_CHECKING:
    from visionyard.registry import GateReport, MoveOutcome


def register(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run whose bundle/ artifact becomes the version."),
    name: str = typer.Option(..., "--name", "-n", help="Registered model name."),
    semver: str | None = typer.Option(None, "--semver", help="Explicit MAJOR.MINOR.PATCH."),
    parent: str | None = typer.Option(None, "--parent", help="Version this one derives from."),
    force: bool = typer.Option(False, "--force", help="Register a bundle already registered."),
    profile_data: Path | None = typer.Option(
        None, "--profile-data", help="Validation images: store the version's reference profile."
    ),
) -> None:
    """Turn a run's bundle into a new version of a registered model (stock MLflow ONNX model)."""
    done = registry(ctx).register(run_id, name, semver=semver, force=force, parent=parent)
    version = done.version
    out().print(
        f"registered [bold]{escape(name)}[/] version {version.version} "
        f"(semver {done.semver}: {escape(done.semver_reason)}) from run {run_id}",
        highlight=False,
    )
    if done.duplicates:
        err().print(f"note: same bundle as version(s) {', '.join(done.duplicates)} (--force)")
    out().print(f"load it with mlflow: models:/{escape(name)}/{version.version}", highlight=False)
    if profile_data is not None:
        from visionyard.cli.monitor import profile_now

        profile_now(ctx, f"{name}/{version.version}", profile_data)


def promote(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Version to promote."),
    to: str = typer.Option("production", "--to", help="Alias to move."),
    gate: Path | None = typer.Option(None, "--gate", help="Gate file (YAML)."),
    force: bool = typer.Option(False, "--force", help="Override refusals (needs --reason)."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the history)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Run the checks and the gate against the holder; move nothing."
    ),
) -> None:
    """Move an alias to a version, after compatibility checks and an optional gate."""
    with _progress("evaluating") as progress:
        outcome = registry(ctx).promote(
            name, version, to, gate=gate, force=force, reason=reason,
            progress=progress, on_report=print_report, dry_run=dry_run,
        )  # fmt: skip
    if dry_run:
        out().print(
            f"dry run: version {outcome.target} of {escape(name)} may replace "
            f"{outcome.previous or '(unset)'} on {escape(outcome.alias)!r}"
            f"{' (gate passed)' if outcome.report else ''}; nothing moved",
            highlight=False,
        )
        return
    _print_move(name, outcome, "promoted")


def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Option("production", "--alias", help="Alias to move back."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the history)."),
) -> None:
    """Move an alias back to its previous holder (further back when repeated)."""
    _print_move(name, registry(ctx).rollback(name, alias, reason=reason), "rolled back")


def gc(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    keep_last: int = typer.Option(..., "--keep-last", min=0, help="Newest versions to keep."),
    protect_events: int = typer.Option(
        10, "--protect-events", min=0, help="Also keep versions in each alias's last K events."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would go."),
) -> None:
    """Delete old versions (artifacts and metadata); never one an alias holds or recently held."""
    with _progress("deleting") as progress:
        report = registry(ctx).gc(
            name, keep_last=keep_last, protect_events=protect_events, dry_run=dry_run,
            progress=progress,
        )  # fmt: skip
    verb = "would delete" if dry_run else "deleted"
    table = Table(title=f"gc {escape(name)}{' (dry run)' if dry_run else ''}")
    for column in ("version", "action", "why / bytes"):
        table.add_column(column)
    for number, size in report.deleted.items():
        table.add_row(number, verb, f"{size:,} bytes")
    for number, why in {**report.kept, **report.skipped}.items():
        table.add_row(number, "kept", escape(why))
    console = out()
    console.print(table)
    console.print(
        f"{verb} {len(report.deleted)} version(s), {report.bytes_reclaimed:,} bytes reclaimed"
        f"{' (none actually deleted)' if dry_run else ''}",
        highlight=False,
    )


def print_report(report: GateReport, ref: str) -> None:
    """The gate report: a before/after table per class, then every check."""
    console = out()
    unit = report.after.metric_name
    title = (
        f"gate: {escape(report.model)} v{report.candidate} vs "
        f"{'v' + report.baseline if report.baseline else 'no holder'} on {report.alias!r}"
    )
    classes = Table(title=f"{title} (per-class {'AP' if unit != 'accuracy' else 'recall'})")
    for column in ("class", "before", "after", "delta", "ok"):
        classes.add_column(column)
    for row in report.classes:
        classes.add_row(
            escape(row.label), _num(row.before), _num(row.after), _num(row.delta, signed=True),
            "yes" if row.passed else "[red]NO[/]",
        )  # fmt: skip
    console.print(classes)
    checks = Table(title=f"checks (dataset digest {report.dataset_digest[:16]})")
    for column in ("check", "result", "detail"):
        checks.add_column(column)
    for check in report.checks:
        checks.add_row(check.name, "pass" if check.passed else "[red]FAIL[/]", escape(check.detail))
    console.print(checks)
    if report.comparison:
        console.print(f"compared: {escape(report.comparison)}", highlight=False)
    verdict = "[green]PASSED[/]" if report.passed else "[red]FAILED[/]"
    console.print(f"gate {verdict}; report stored at {escape(ref)}", highlight=False)


def _print_move(name: str, outcome: MoveOutcome, verb: str) -> None:
    console = out()
    if outcome.completed_pending:
        err().print("note: completed an interrupted earlier move of this alias first")
    if outcome.result is None:
        console.print(
            f"{escape(outcome.alias)} of {escape(name)} already points at version "
            f"{outcome.target}; nothing to do",
            highlight=False,
        )
        return
    event = outcome.result.event
    console.print(
        f"{verb} {escape(name)}: {escape(outcome.alias)} "
        f"{outcome.previous or '(unset)'} -> {outcome.target} "
        f"({event.kind} by {escape(event.actor)}, event {event.key})",
        highlight=False,
    )


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    console = err()
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
