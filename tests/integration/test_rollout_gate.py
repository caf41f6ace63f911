"""Automatic promotions go through the promotion gate on a real store: a candidate that fails
the policy's gate is rolled back (rule ``gate``), one that passes moves production, and the
alias event names the gate report, the rule and the figures."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests.fixtures.cli import store_flags
from tests.registry_support import RED_AS_GREEN, colour_dataset, log_colour_run, write_gate
from visionyard.cli.main import main
from visionyard.monitor.rollout.decide import RoleFigures, RolloutFigures
from visionyard.monitor.rollout.lifecycle import StartRequest, start_rollout
from visionyard.monitor.rollout.policy import load_policy
from visionyard.monitor.rollout.record import step_rollout
from visionyard.monitor.rollout.state import read_rollout
from visionyard.registry import Registry
from visionyard.registry.history import parse_history
from visionyard.settings import Settings

GOOD = RolloutFigures(RoleFigures(100, 0, 0.01), RoleFigures(100, 0, 0.011), 0.97, 100, 0.0)


def test_a_failing_gate_rolls_back_and_a_passing_gate_promotes(
    tracking_settings: Settings, tmp_path: Path
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    data = colour_dataset(tmp_path / "eval")
    write_gate(tmp_path / "gate.yaml", data, min_samples=5)
    policy_file = tmp_path / "rollout.yaml"
    policy_file.write_text("min_requests: 50\nmin_step_seconds: 0\ngate: gate.yaml\n")
    policy = load_policy(policy_file)
    name = f"gated-{uuid.uuid4().hex[:8]}"
    runs = [log_colour_run(s, tmp_path), log_colour_run(s, tmp_path, colours=RED_AS_GREEN),
            log_colour_run(s, tmp_path, sharpness=30.0)]  # fmt: skip
    for run in runs:
        assert main([*flags, "register", run, "--name", name]) == 0
    assert main([*flags, "promote", name, "1", "--to", "production"]) == 0
    service = Registry(s)

    start_rollout(service, StartRequest(name, "2", "shadow", (100,), policy), settle_s=0)
    worse = step_rollout(service, name, GOOD, time.time(), settle_s=0)
    assert worse is not None
    assert (worse.action, worse.rule) == ("rollback", "gate")
    assert "gate failed" in worse.detail
    assert read_rollout(service, name).status == "rolled_back"  # type: ignore[union-attr]
    assert service.client.get_model(name).aliases["production"] == "1"

    start_rollout(service, StartRequest(name, "3", "shadow", (100,), policy), settle_s=0)
    better = step_rollout(service, name, GOOD, time.time(), settle_s=0)
    assert better is not None
    assert (better.action, better.rule) == ("promote", "steps_passed")
    model = service.client.get_model(name)
    assert model.aliases["production"] == "3"
    move = parse_history(model.tags)[-1]
    assert (move.from_version, move.to_version, move.kind) == ("1", "3", "promote")
    assert move.gate_passed is True
    assert move.gate_report is not None
    assert move.gate_report.startswith(f"models:/{name}/3/gate_reports/")
    assert "steps_passed" in move.reason
    assert "shadow_agreement=0.97" in move.reason
