"""``visionyard rollout start | status | promote | abort``: canary and shadow rollouts.

A rollout is registry state (:mod:`visionyard.monitor.rollout`): the servers following the
model route traffic from it and record the automatic decisions; these commands start one,
show it, and make the manual decisions. Exit codes (:data:`~visionyard.cli.console.EXIT_CODES`):
3 bad policy or options, 4 unknown model or version, 8 promotion gate failed, 9 refused
(a rollout running, none running, no production alias, a concurrent change).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import emit_json, out, registry
from visionyard.errors import ConfigError

if TYPE_CHECKING:
    from visionyard.monitor.rollout.events import RolloutEvent
    from visionyard.monitor.rollout.state import Rollout

app = typer.Typer(help="Canary and shadow rollouts with automatic decisions.", no_args_is_help=True)
_STATUS_STYLE = {"running": "yellow", "promoted": "green", "rolled_back": "red", "aborted": "dim"}


@app.command("start")
def start(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Candidate version."),
    canary: int | None = typer.Option(None, "--canary", help="Canary: first traffic share, %."),
    shadow: int | None = typer.Option(None, "--shadow", help="Shadow: sampled share, %."),
    steps: str | None = typer.Option(None, "--steps", help="Canary steps, e.g. 5,25,50,100."),
    policy_file: Path | None = typer.Option(None, "--policy", help="Rollout policy (YAML)."),
    sticky_header: str | None = typer.Option(
        None, "--sticky-header", help="Keep a client on one side by this request header."
    ),
) -> None:
    """Start a canary or shadow rollout of VERSION against production's current version."""
    from visionyard.monitor.rollout.lifecycle import StartRequest, plan_steps, start_rollout
    from visionyard.monitor.rollout.policy import Policy, load_policy
    from visionyard.monitor.rollout.state import Mode

    if (canary is None) == (shadow is None):
        raise ConfigError("give exactly one of --canary PCT or --shadow PCT")
    policy = load_policy(policy_file) if policy_file else Policy()
    mode: Mode = "canary" if canary is not None else "shadow"
    share = canary if canary is not None else shadow
    assert share is not None
    planned = plan_steps(mode, share, _parse_steps(steps) if steps else policy.steps)
    request = StartRequest(name, version, mode, planned, policy, sticky_header)
    rollout = start_rollout(registry(ctx), request)
    out().print(
        f"started rollout {rollout.rollout_id} of {escape(name)}: version {rollout.candidate} "
        f"vs production {rollout.baseline}, {mode} at {rollout.share} % "
        f"(steps {', '.join(map(str, rollout.steps))})",
        highlight=False,
    )


@app.command("status")
def status(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The model's rollout: state, step and share, candidate vs baseline, the last decision."""
    from visionyard.errors import RegistryError
    from visionyard.monitor.rollout.events import all_events, chain
    from visionyard.monitor.rollout.lifecycle import HUMAN_GRACE_S
    from visionyard.monitor.rollout.record import reconcile_rollout

    service = registry(ctx)
    rollout = reconcile_rollout(service, name, grace_s=HUMAN_GRACE_S)
    if rollout is None:
        raise RegistryError(f"{name!r} has no rollout; start one with `visionyard rollout start`")
    events = chain(all_events(name, service.client.get_model(name).tags))
    mine = [e for e in events if e.state.rollout_id == rollout.rollout_id]
    if as_json:
        body = {**rollout.to_dict(), "share": rollout.share, "overdue": _overdue(rollout),
                "events": [_event_dict(e) for e in mine]}  # fmt: skip
        emit_json(body)
        return
    console = out()
    console.print(_state_table(rollout))
    console.print(_events_table(mine))


@app.command("promote")
def promote(
    ctx: typer.Context, name: str = typer.Argument(..., help="Registered model name.")
) -> None:
    """Promote the running rollout's candidate now, through the promotion gate."""
    from visionyard.monitor.rollout.lifecycle import promote_rollout

    done = promote_rollout(registry(ctx), name)
    state = done.rollout
    assert state is not None
    out().print(
        f"promoted {escape(name)}: production {state.baseline} -> {state.candidate} "
        f"(rollout {state.rollout_id})",
        highlight=False,
    )


@app.command("abort")
def abort(
    ctx: typer.Context, name: str = typer.Argument(..., help="Registered model name.")
) -> None:
    """Stop the running rollout; production stays on its version."""
    from visionyard.monitor.rollout.lifecycle import abort_rollout

    done = abort_rollout(registry(ctx), name)
    state = done.rollout
    assert state is not None
    out().print(
        f"aborted rollout {state.rollout_id} of {escape(name)}: production stays on "
        f"version {state.baseline}",
        highlight=False,
    )


def _parse_steps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"--steps {text!r}: give increasing percentages separated by commas, e.g. 5,25,50,100"
        ) from None


def _state_table(rollout: Rollout) -> Table:
    style = _STATUS_STYLE.get(rollout.status, "")
    table = Table(title=f"rollout {rollout.rollout_id} of {escape(rollout.model)}")
    table.add_column("field")
    table.add_column("value")
    steps = " -> ".join(
        f"[bold]{s}[/]" if i == rollout.step else str(s) for i, s in enumerate(rollout.steps)
    )
    rows = [
        ("status", f"[{style}]{rollout.status}[/]"),
        ("mode", rollout.mode),
        ("candidate vs baseline", f"version {rollout.candidate} vs {rollout.baseline}"),
        ("step", f"{rollout.step + 1} of {len(rollout.steps)}: {steps} %"),
        ("share now", f"{rollout.share} %"),
        ("sticky header", escape(rollout.sticky_header or "-")),
        ("started", _when(rollout.started_at)),
        ("running for", _age(rollout, time.time())),
        ("last decision", escape(f"{rollout.rule}: {rollout.reason}") if rollout.rule else "-"),
        ("decided", _when(rollout.decided_at)),
    ]
    rows += [(f"  {k}", f"{v:g}") for k, v in sorted(rollout.figures.items())]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _events_table(events: list[RolloutEvent]) -> Table:
    table = Table(title="decisions (registry history)")
    for column in ("time", "event", "step", "share", "rule", "by", "key"):
        table.add_column(column)
    for event in events:
        state = event.state
        table.add_row(
            _when(event.time_ms / 1000), event.kind, str(state.step + 1),
            f"{state.steps[state.step]} %", escape(state.rule or "-"), escape(event.actor),
            event.key.removeprefix("vy.rollout.event."),
        )  # fmt: skip
    return table


def _event_dict(event: RolloutEvent) -> dict[str, object]:
    state = event.state
    return {
        "key": event.key, "kind": event.kind, "time_ms": event.time_ms, "actor": event.actor,
        "step": state.step, "rule": state.rule, "reason": state.reason,
        "figures": state.figures, "gate_report": event.gate_report,
    }  # fmt: skip


def _overdue(rollout: Rollout) -> bool:
    """A running rollout older than its policy's ``max_duration_seconds``."""
    limit = rollout.policy.max_duration_seconds
    return rollout.running and limit is not None and time.time() - rollout.started_at > limit


def _age(rollout: Rollout, now: float) -> str:
    """How long a running rollout has run, against its limit (``-`` once it ended)."""
    if not rollout.running:
        return "-"
    limit = rollout.policy.max_duration_seconds
    text = f"{now - rollout.started_at:.0f} s" + (f" (limit {limit:g} s)" if limit else "")
    if _overdue(rollout):
        text += " [red]overdue: a following server rolls it back (rule max_duration)[/]"
    return text


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)) + " UTC"
