"""``visionyard models list | show | history | diff``: read the registry.

Every view costs a fixed number of registry reads (measured by ``bench/bench_registry.py``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import emit_json, err, out, read_views, registry

if TYPE_CHECKING:
    from visionyard.registry import AliasEvent, VersionDiff, VersionView
    from visionyard.registry.evaluations import EvaluationRecord
    from visionyard.registry.views import AliasView

#: Version tags naming each export variant's MLflow run (:mod:`visionyard.export.mlflow_record`).
EXPORT_RUN = "vy.export_run."
app = typer.Typer(help="Registered models: list, show, history, diff.", no_args_is_help=True)
SYNC_NOTES = {
    "pending": "[yellow]interrupted move: the next promote/rollback completes it[/]",
    "drift": "[yellow]moved outside visionyard (not in the history)[/]",
}


@app.command("list")
def list_cmd(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Every registered model: newest version, aliases, last alias move."""
    rows = read_views(ctx).list()
    if as_json:
        emit_json([asdict(r) for r in rows])
        return
    table = Table(title="registered models")
    for column in ("model", "task", "latest", "aliases", "events", "last move"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(row.name), row.task, row.latest_version or "-", _aliases(row.aliases),
            str(row.events), _event_line(row.last_event) if row.last_event else "-",
        )  # fmt: skip
    out().print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="NAME, NAME@ALIAS or NAME/VERSION."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One version's lineage in one screen: run, data, code, aliases, who promoted it when."""
    view = read_views(ctx).show(reference)
    if as_json:
        emit_json(_view_json(view))
        return
    console = out()
    console.print(_lineage(view))
    if view.promotions:
        console.print(
            _events_table(f"alias moves involving v{view.version.version}", view.promotions)
        )
    if view.evaluations:
        console.print(
            _evaluations_table(f"evaluations of v{view.version.version}", view.evaluations)
        )
    for alias in view.aliases:
        if alias.sync in SYNC_NOTES:
            err().print(f"note: {alias.alias}: {SYNC_NOTES[alias.sync]}")


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str | None = typer.Option(None, "--alias", help="Only this alias."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Newest events to show (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (all fields)."),
) -> None:
    """Alias moves, oldest first: from, to, who, when, why, gate report."""
    events, aliases = read_views(ctx).history(name, alias, limit or None)
    if as_json:
        body = {"events": [e.to_dict() for e in events], "aliases": [asdict(a) for a in aliases]}
        emit_json(body)
        return
    out().print(_events_table(f"history of {escape(name)}", events))
    for view in aliases:
        note = SYNC_NOTES.get(view.sync, "")
        out().print(f"{view.alias} -> v{view.version} {note}".rstrip(), highlight=False)


@app.command("diff")
def diff(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    v1: str = typer.Argument(..., help="Older version."),
    v2: str = typer.Argument(..., help="Newer version."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Params, metrics (overall and per class), dataset, contract and environment changes."""
    result = registry(ctx).diff(name, v1, v2)
    if as_json:
        emit_json(asdict(result))
        return
    _print_diff(result)


def _print_diff(d: VersionDiff) -> None:
    console = out()
    title = f"{escape(d.name)} v{d.a} -> v{d.b}"
    for section, changes in (("version tags", d.tags), ("params", d.params),
                             ("metrics", d.metrics), ("per-class metrics", d.class_metrics),
                             ("environment", d.environment)):  # fmt: skip
        table = _table(f"{title}: {section}", ("key", f"v{d.a}", f"v{d.b}"))
        for c in changes:
            table.add_row(escape(c.key), escape(_text(c.a)), escape(_text(c.b)))
        console.print(table if changes else f"{section}: no change")
    contract = _table(f"{title}: contract", ("field", f"v{d.a}", f"v{d.b}", "breaking"))
    for f in d.contract:
        contract.add_row(f.path, escape(_text(f.old)), escape(_text(f.new)), _yes(f.breaking))
    console.print(contract if d.contract else "contract: no change")
    data = _table(f"{title}: datasets", ("dataset", "digest", "changes", "examples"))
    for ds in d.datasets:
        digest = f"{(ds.digest_a or '-')[:12]} -> {(ds.digest_b or '-')[:12]}"
        data.add_row(escape(ds.name), digest, _data_summary(ds.summary, ds.note),
                     escape(_examples(ds.examples)))  # fmt: skip
    console.print(data if d.datasets else "datasets: none recorded")


def _lineage(view: VersionView) -> Table:
    v, tags = view.version, view.version.tags
    table = Table(title=f"{escape(v.name)} version {v.version}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    run = view.run
    rows = {
        "semver": f"{tags.get('vy.semver', '-')} ({tags.get('vy.semver_reason', '')})",
        "task": tags.get("vy.task", "-"),
        "aliases": _aliases(view.aliases) or "-",
        "registered": f"{_when(v.created_ms)} by {tags.get('vy.registered_by', v.user_id or '-')}",
        "run": f"{v.run_id or '-'} ({run.name if run else 'run not found'}, "
        f"{run.status if run else '-'})",
        "dataset digest": tags.get("vy.dataset_digest", "-"),
        "git commit": tags.get("vy.git_commit", "-"),
        "contract digest": tags.get("vy.contract_digest", "-"),
        "bundle digest": tags.get("vy.bundle_digest", "-"),
        "variants": tags.get("vy.variants", "-"),
        "parent": tags.get("vy.parent", "-"),
        "profile": _profile_line(v.name, v.version, tags),
        "mlflow uri": f"models:/{v.name}/{v.version}",
    }
    for key, value in sorted(tags.items()):
        if key.startswith("vy.variant."):
            name = key.removeprefix("vy.variant.")
            digest = tags.get(f"vy.variant_digest.{name}")
            rows[f"variant {name}"] = value + (f" (digest {digest[:12]})" if digest else "")
    runs = [f"{k.removeprefix(EXPORT_RUN)}={v}" for k, v in sorted(tags.items())
            if k.startswith(EXPORT_RUN)]  # fmt: skip
    if runs:
        rows["export runs"] = ", ".join(runs)
    for key, value in rows.items():
        table.add_row(key, escape(value))
    return table


def _profile_line(name: str, version: str, tags: dict[str, str]) -> str:
    digest = tags.get("vy.profile_digest")
    if not digest:
        return f"none (visionyard monitor profile {name}/{version} --data DIR)"
    return f"{tags.get('vy.profile', '-')} (digest {digest[:19]})"


def _events_table(title: str, events: list[AliasEvent]) -> Table:
    from visionyard.registry.history import superseded

    lost = superseded(events)
    table = _table(title, ("when (UTC)", "alias", "from", "to", "kind", "actor", "reason", "gate"))
    for e in events:
        gate = "-" if e.gate_passed is None else ("passed" if e.gate_passed else "FAILED")
        table.add_row(
            _when(e.time_ms), e.alias, e.from_version or "-", e.to_version,
            f"{e.kind} (superseded)" if e.key in lost else e.kind,
            escape(e.actor), escape(e.reason), escape(f"{gate} {e.gate_report or ''}".strip()),
        )  # fmt: skip
    return table


def _view_json(view: VersionView) -> dict[str, Any]:
    return {
        "version": asdict(view.version),
        "aliases": [asdict(a) for a in view.aliases],
        "run": asdict(view.run) if view.run else None,
        "promotions": [e.to_dict() for e in view.promotions],
        "evaluations": [r.to_dict() for r in view.evaluations],
    }


def _evaluations_table(title: str, records: list[EvaluationRecord]) -> Table:
    """``visionyard evaluate --log`` records, oldest first."""
    table = _table(title, ("when (UTC)", "data", "dataset digest", "variant", "images",
                           "metric", "run"))  # fmt: skip
    for r in records:
        primary = r.primary
        metric = f"{primary[0]} {primary[1]:.4f}" if primary else "-"
        data = r.dataset + (f" ({r.split})" if r.split else "")
        digest = (r.dataset_digest or "-").removeprefix("sha256:")[:12]
        table.add_row(_when(r.time_ms), escape(data), digest, r.variant or "-", str(r.samples),
                      metric, r.run_id or "-")  # fmt: skip
    return table


def _event_line(e: AliasEvent) -> str:
    return (
        f"{e.alias} {e.from_version or '-'}->{e.to_version} by {escape(e.actor)} {_when(e.time_ms)}"
    )


def _aliases(views: list[AliasView]) -> str:
    return ", ".join(
        f"{a.alias}=v{a.version}" + ("" if a.sync in ("in-sync", "no-history") else f" ({a.sync})")
        for a in views
    )


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    return table


def _data_summary(summary: dict[str, Any] | None, note: str) -> str:
    if summary is None:
        return note
    keys = ("added", "removed", "changed", "relabelled", "moved")
    return ", ".join(f"{summary[k]} {k}" for k in keys)


def _examples(examples: dict[str, list[str]]) -> str:
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in examples.items() if v)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
