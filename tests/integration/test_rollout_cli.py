"""``visionyard rollout`` on a real MLflow store: start, status, refusals, abort, promote, and
policy files refused with one line."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures.cli import run, store_flags
from tests.registry_support import log_colour_run
from visionyard.cli.main import main
from visionyard.monitor.rollout.state import ROLLOUT_TAG, Rollout, read_rollout
from visionyard.registry.history import parse_history
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

Capture = pytest.CaptureFixture[str]


def registered(settings: Settings, tmp_path: Path, versions: int = 2, promote: bool = True) -> str:
    """A model with ``versions`` versions; version 1 in production when ``promote``."""
    name = f"ro-{uuid.uuid4().hex[:8]}"
    flags = store_flags(settings)
    for i in range(versions):
        run_id = log_colour_run(settings, tmp_path, sharpness=10.0 + i)
        assert main([*flags, "register", run_id, "--name", name]) == 0
    if promote:
        assert main([*flags, "promote", name, "1", "--to", "production"]) == 0
    return name


def test_start_status_refusals_abort_and_promote(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path)
    policy = tmp_path / "rollout.yaml"
    policy.write_text("min_requests: 20\nmin_step_seconds: 0\nmax_error_rate: 0.1\n")

    code, stdout, _ = run(capsys, *flags, "rollout", "start", name, "2", "--canary", "10",
                          "--policy", policy, "--sticky-header", "X-User")  # fmt: skip
    assert code == 0, stdout
    assert "canary at 10 %" in stdout
    stored = read_rollout(RegistryClient.from_settings(s), name)
    assert stored is not None
    assert (stored.candidate, stored.baseline, stored.steps) == ("2", "1", (10, 25, 50, 100))
    assert (stored.sticky_header, stored.policy.min_requests) == ("X-User", 20)
    tags = RegistryClient.from_settings(s).get_model(name).tags
    assert Rollout.from_json(tags[ROLLOUT_TAG]) == stored  # the projection, for stock MLflow

    code, _, err = run(capsys, *flags, "rollout", "start", name, "2", "--shadow", "20")
    assert (code, err.count("\n")) == (9, 1)
    assert "is running" in err

    code, stdout, _ = run(capsys, *flags, "rollout", "status", name)
    assert code == 0
    assert "running" in stdout
    assert "version 2 vs 1" in stdout
    code, stdout, _ = run(capsys, *flags, "rollout", "status", name, "--json")
    body = json.loads(stdout)
    assert (body["share"], body["status"], [e["kind"] for e in body["events"]]) == (
        10, "running", ["start"],
    )  # fmt: skip

    code, stdout, _ = run(capsys, *flags, "rollout", "abort", name)
    assert code == 0, stdout
    assert "production stays on version 1" in stdout
    assert read_rollout(RegistryClient.from_settings(s), name).status == "aborted"  # type: ignore[union-attr]
    code, _, err = run(capsys, *flags, "rollout", "abort", name)
    assert code == 9
    assert "no running rollout" in err

    assert run(capsys, *flags, "rollout", "start", name, "2", "--shadow", "20")[0] == 0
    code, stdout, err = run(capsys, *flags, "rollout", "promote", name)
    assert code == 0, err
    assert "production 1 -> 2" in stdout
    model = RegistryClient.from_settings(s).get_model(name)
    assert model.aliases["production"] == "2"
    moves = [e for e in parse_history(model.tags) if e.alias == "production"]
    assert [(e.from_version, e.to_version, e.kind) for e in moves][-1] == ("1", "2", "promote")
    assert "manual" in moves[-1].reason
    code, stdout, _ = run(capsys, *flags, "rollout", "status", name, "--json")
    assert [e["kind"] for e in json.loads(stdout)["events"]] == ["start", "promote"]


def test_refusals_are_one_line_with_their_exit_codes(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    s, flags = tracking_settings, store_flags(tracking_settings)
    name = registered(s, tmp_path, promote=False)
    bad_key = tmp_path / "bad-key.yaml"
    bad_key.write_text("min_requests: 10\nmax_errors: 0.1\n")
    impossible = tmp_path / "impossible.yaml"
    impossible.write_text("max_error_rate: 2\n")
    cases: list[tuple[list[str | Path], int, str]] = [
        (["--canary", "10", "--policy", bad_key], 3, "unknown key 'max_errors'"),
        (["--canary", "10", "--policy", impossible], 3, "max_error_rate: "),
        (["--canary", "10", "--shadow", "5"], 3, "exactly one of"),
        (["--canary", "10", "--steps", "5,x"], 3, "--steps"),
        (["--canary", "10", "--steps", "50,25"], 3, "increase"),
        (["--canary", "10"], 9, "no 'production' alias"),
    ]
    for options, expected, words in cases:
        code, _, err = run(capsys, *flags, "rollout", "start", name, "2", *options)
        assert (code, err.count("\n")) == (expected, 1), (options, err)
        assert words in err
        assert "Traceback" not in err
    assert main([*flags, "promote", name, "1", "--to", "production"]) == 0
    code, _, err = run(capsys, *flags, "rollout", "start", name, "7", "--canary", "10")
    assert (code, err.count("\n")) == (4, 1)
    code, _, err = run(capsys, *flags, "rollout", "status", name)
    assert (code, err.count("\n")) == (9, 1)
    assert "has no rollout" in err


def test_status_shows_a_rollout_held_past_its_max_duration(
    tracking_settings: Settings, tmp_path: Path, capsys: Capture
) -> None:
    flags = store_flags(tracking_settings)
    name = registered(tracking_settings, tmp_path)
    policy = tmp_path / "rollout.yaml"
    policy.write_text("max_duration_seconds: 0.5\n")
    assert run(capsys, *flags, "rollout", "start", name, "2", "--shadow", "20",
               "--policy", policy)[0] == 0  # fmt: skip
    code, stdout, _ = run(capsys, *flags, "rollout", "status", name, "--json")
    assert (code, json.loads(stdout)["policy"]["max_duration_seconds"]) == (0, 0.5)
    time.sleep(0.6)  # no server follows it: nothing decides, status says it is overdue
    code, stdout, _ = run(capsys, *flags, "rollout", "status", name, "--json")
    assert json.loads(stdout)["overdue"] is True
    code, stdout, _ = run(capsys, *flags, "rollout", "status", name)
    assert code == 0
    assert "(limit 0.5 s)" in stdout
    assert "overdue" in stdout
