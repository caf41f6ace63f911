"""Rollout decisions recorded exactly once on a real MLflow store, by real processes: two
deciders racing on one step, and a decider killed with SIGKILL halfway and then retried."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fixtures.tracking import tracking_env
from tests.integration.test_rollout_cli import registered
from visionyard.monitor.rollout.decide import RoleFigures, RolloutFigures
from visionyard.monitor.rollout.events import all_events, chain
from visionyard.monitor.rollout.lifecycle import StartRequest, start_rollout
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.record import step_rollout
from visionyard.monitor.rollout.state import ROLLOUT_TAG, Rollout, read_rollout
from visionyard.registry import Registry
from visionyard.registry.history import parse_history
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

POLICY = Policy(min_requests=10, min_step_seconds=0)
GOOD = RolloutFigures(RoleFigures(100, 0, 0.01), RoleFigures(100, 0, 0.01))

#: A decider: step_rollout with good or bad figures. Once connected it prints "ready" and reads
#: ``decide_at append_at`` from stdin; its event tag is written at ``append_at`` (after both
#: deciders compared), or it kills itself right after writing a tag whose key starts with
#: ``die_after``.
DECIDER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from visionyard.monitor.rollout.decide import RoleFigures, RolloutFigures
    from visionyard.monitor.rollout.record import step_rollout
    from visionyard.registry import Registry
    from visionyard.settings import load_settings
    from visionyard.tracking.registry_client import RegistryClient

    name, bad, die_after = sys.argv[1:4]
    write = RegistryClient.set_model_tag

    def set_model_tag(self, model, key, value):
        if key.startswith("vy.rollout.event."):
            time.sleep(max(0.0, float(append_at) - time.time()))
        write(self, model, key, value)
        if die_after and key.startswith(die_after):
            os.kill(os.getpid(), signal.SIGKILL)

    RegistryClient.set_model_tag = set_model_tag
    service = Registry(load_settings().settings)
    service.client.get_model(name)  # connected before the start line
    print("ready", flush=True)
    decide_at, append_at = sys.stdin.readline().split()
    errors = 50 if bad == "bad" else 0
    figures = RolloutFigures(RoleFigures(100, 0, 0.01), RoleFigures(100, errors, 0.01))
    time.sleep(max(0.0, float(decide_at) - time.time()))
    done = step_rollout(service, name, figures, time.time(), settle_s=1.0)
    body = {"action": done.action, "rule": done.rule} if done else {"action": None}
    print(json.dumps(body))
    """
)


def decider(
    settings: Settings, tmp_path: Path, name: str, bad: bool, die_after: str = ""
) -> subprocess.Popen[str]:
    script = tmp_path / "decider.py"
    script.write_text(DECIDER)
    argv = [sys.executable, str(script), name, "bad" if bad else "good", die_after]
    return subprocess.Popen(argv, env=tracking_env(settings), cwd=tmp_path, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip


def go(children: list[subprocess.Popen[str]], append_after: float) -> None:
    """Wait until every child is connected, then let them decide together."""
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ready", (line, child.stderr.read() if child.stderr else "")
    decide_at = time.time() + 0.5
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"{decide_at} {decide_at + append_after}\n")
        child.stdin.flush()


def started(settings: Settings, name: str, steps: tuple[int, ...]) -> Rollout:
    request = StartRequest(name, "2", "canary", steps, POLICY)
    return start_rollout(Registry(settings), request, settle_s=0)


def test_two_processes_racing_on_one_step_record_one_decision(
    tracking_settings: Settings, tmp_path: Path
) -> None:
    s = tracking_settings
    name = registered(s, tmp_path)
    rollout = started(s, name, (50, 100))
    children = [decider(s, tmp_path, name, bad) for bad in (False, True)]
    go(children, append_after=2.0)  # both have read and compared by then
    outputs = [child.communicate(timeout=120) for child in children]
    results = []
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    winners = [r for r in results if r["action"] is not None]
    assert len(winners) == 1, results  # the other decider was told it lost

    tags = RegistryClient.from_settings(s).get_model(name).tags
    events = all_events(name, tags)
    appended = sorted(e.kind for e in events if e.kind != "start")
    # both appended (an insert each; a child that started late finds the step decided) ...
    assert appended in (["advance", "rollback"], [winners[0]["action"]])
    assert [e.kind for e in chain(events)] == ["start", winners[0]["action"]]  # ... one counts
    state = read_rollout(RegistryClient.from_settings(s), name)
    assert state is not None
    assert (state.rollout_id, state.rule) == (rollout.rollout_id, winners[0]["rule"])
    assert Rollout.from_json(tags[ROLLOUT_TAG]) == state
    assert parse_history(tags)[-1].to_version == "1"  # no decision here moves production


@pytest.mark.parametrize(
    "die_after", ["vy.rollout.event.", "vy.event."], ids=["after-decision", "after-alias-event"]
)
def test_a_decider_killed_halfway_and_retried_records_one_promotion(
    tracking_settings: Settings, tmp_path: Path, die_after: str
) -> None:
    s = tracking_settings
    name = registered(s, tmp_path)
    started(s, name, (100,))
    child = decider(s, tmp_path, name, False, die_after=die_after)
    go([child], append_after=0.0)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, stderr[-3000:]

    client = RegistryClient.from_settings(s)
    state = read_rollout(client, name)
    assert state is not None
    assert state.status == "promoted"  # the decision is recorded (whole) ...
    assert client.get_model(name).aliases["production"] == "1"  # ... production not yet moved

    service = Registry(s)
    for _ in range(2):  # the retry completes it; another retry changes nothing
        assert step_rollout(service, name, GOOD, time.time(), settle_s=0, grace_s=0) is None
    model = client.get_model(name)
    assert model.aliases["production"] == "2"
    moves = [e for e in parse_history(model.tags) if e.alias == "production"]
    assert [(e.from_version, e.to_version) for e in moves] == [(None, "1"), ("1", "2")]
    head = chain(all_events(name, model.tags))[-1]
    assert head.kind == "promote"
    assert head.key in moves[-1].reason
    assert [e.kind for e in all_events(name, model.tags)] == ["start", "promote"]
    assert Rollout.from_json(model.tags[ROLLOUT_TAG]).status == "promoted"
