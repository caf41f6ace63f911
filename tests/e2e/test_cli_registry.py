"""End to end through the CLI on SQLite: register, promote (gates), rollback, models
list/show/history/diff, and every bad input the registry must refuse with one clear line (gc:
``test_cli_registry_gc.py``).

The runs are logged once per module (:mod:`tests.e2e.registry_world`); every test registers
under its own model name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.registry_world import World, cli, client, fresh_name, json_out, registered
from tests.registry_support import (
    colour_dataset,
    write_gate,
)
from visionyard.cli.main import main
from visionyard.errors import TrackingUnavailableError
from visionyard.registry.history import parse_history
from visionyard.tracking.registry_client import RegistryClient

# -- register ----------------------------------------------------------------------------------


def test_register_tags_versions_and_bumps_semver(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = fresh_name()
    assert cli(world, "register", world.good, "--name", name) == 0
    assert "version 1 (semver 1.0.0: first version)" in capsys.readouterr().out
    assert cli(world, "register", world.sharper, "--name", name) == 0
    assert "semver 1.1.0: minor" in capsys.readouterr().out
    assert cli(world, "register", world.reordered, "--name", name) == 0
    assert "semver 2.0.0: major: labels changed" in capsys.readouterr().out
    assert cli(world, "register", world.red_as_green, "--name", name, "--semver", "7.0.1",
               "--parent", f"{name}/2") == 0  # fmt: skip
    tags = client(world).get_version(name, "1").tags
    assert tags["vy.task"] == "classification"
    assert tags["vy.dataset_digest"] == world_manifest_digest(world)
    assert len(tags["vy.git_commit"]) >= 7
    assert tags["vy.contract_digest"].startswith("sha256:")
    assert tags["vy.semver"] == "1.0.0"
    assert client(world).get_version(name, "4").tags["vy.semver"] == "7.0.1"
    capsys.readouterr()
    assert cli(world, "models", "show", f"{name}/4") == 0
    assert f"parent          │ {name}/2" in capsys.readouterr().out


def world_manifest_digest(world: World) -> str:
    from visionyard.data.manifest import build_manifest

    return build_manifest(world.dataset).digest


def test_registering_the_same_bundle_twice_is_refused_unless_forced(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good)
    assert cli(world, "register", world.good, "--name", name) == 9
    err = capsys.readouterr().err
    assert "already version 1" in err
    assert "--force" in err
    assert err.count("\n") == 1
    assert cli(world, "register", world.good, "--name", name, "--force") == 0
    assert "version 2" in capsys.readouterr().out


def test_register_bad_inputs(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli(world, "register", "0" * 32, "--name", fresh_name()) == 4
    assert "run '" in capsys.readouterr().err
    from visionyard.tracking import start_run

    with start_run(settings=world.settings) as run:
        run.log_params({"empty": 1})
    assert cli(world, "register", run.run_id, "--name", fresh_name()) == 6
    assert "no bundle/ artifact" in capsys.readouterr().err
    assert cli(world, "register", world.good, "--name", fresh_name(), "--semver", "one") == 9


# -- promote, gates, history, show -------------------------------------------------------------


def test_promote_with_gates_pass_fail_and_force(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good, world.sharper, world.red_as_green)
    gate = str(world.gate)
    assert cli(world, "promote", name, "1", "--to", "production", "--gate", gate) == 0
    out = capsys.readouterr().out
    assert "gate PASSED" in out
    assert "production (unset) -> 1" in out
    assert cli(world, "promote", name, "2", "--to", "production", "--gate", gate) == 0
    assert "production 1 -> 2" in capsys.readouterr().out

    assert cli(world, "promote", name, "3", "--to", "production", "--gate", gate) == 8
    captured = capsys.readouterr()
    assert "│ red   │ 1.0000 │ 0.0000 │ -1.0000 │ NO" in captured.out  # per-class table
    assert "max_class_drop" in captured.out
    assert "gate failed for version 3" in captured.err
    assert "'production' stays at 2" in captured.err
    assert client(world).get_model(name).aliases["production"] == "2"

    assert cli(world, "promote", name, "3", "--gate", gate, "--force") == 9
    assert "--force needs --reason" in capsys.readouterr().err
    assert cli(world, "promote", name, "3", "--gate", gate, "--force", "--reason", "hotfix") == 0
    capsys.readouterr()
    events = json_out(world, capsys, "models", "history", name)["events"]
    assert [(e["from_version"], e["to_version"], e["kind"]) for e in events] == [
        (None, "1", "promote"), ("1", "2", "promote"), ("2", "3", "force"),
    ]  # fmt: skip
    assert [e["gate_passed"] for e in events] == [True, True, False]
    assert events[2]["reason"] == "hotfix"
    assert events[2]["gate_report"].startswith(f"models:/{name}/3/gate_reports/")
    assert_report_stored(world, name, events[2]["gate_report"])


def assert_report_stored(world: World, name: str, ref: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(world.settings.tracking_uri())
    try:
        local = mlflow.artifacts.download_artifacts(ref)
    finally:
        mlflow.set_tracking_uri(None)
    report = json.loads(Path(local).read_text())
    assert report["model"] == name
    assert report["passed"] is False
    assert {c["label"]: c["delta"] for c in report["classes"]}["red"] == -1.0
    assert len(report["dataset_digest"]) == 64


def test_gate_latency_budget_and_sample_count(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = registered(world, capsys, world.good)
    roomy = write_gate(tmp_path / "roomy.yaml", world.dataset, latency_p50_ms=5000)
    assert cli(world, "promote", name, "1", "--to", "candidate", "--gate", str(roomy)) == 0
    assert "p50" in capsys.readouterr().out
    tight = write_gate(tmp_path / "tight.yaml", world.dataset, latency_p50_ms=1e-6,
                       min_samples=1000)  # fmt: skip
    assert cli(world, "promote", name, "1", "--to", "staging", "--gate", str(tight)) == 8
    captured = capsys.readouterr()
    assert "latency_p50_ms" in captured.err
    assert "min_samples" in captured.err
    assert "10 images < 1000" in captured.out  # the relation found, not the one required
    assert "ms > 0.00 ms (batch 1)" in captured.out
    assert "staging" not in client(world).get_model(name).aliases


def test_promote_when_already_there_is_a_no_op(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good)
    assert cli(world, "promote", name, "1", "--to", "staging") == 0
    assert cli(world, "promote", name, "1", "--to", "staging") == 0
    assert "already points at version 1" in capsys.readouterr().out
    assert len(json_out(world, capsys, "models", "history", name)["events"]) == 1


def test_actor_and_reason_are_recorded(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = registered(world, capsys, world.good)
    monkeypatch.setenv("VISIONYARD_ACTOR", "ci-bot")
    assert cli(world, "promote", name, "1", "--to", "candidate", "--reason", "nightly") == 0
    (event,) = json_out(world, capsys, "models", "history", name)["events"]
    assert (event["actor"], event["reason"], event["alias"]) == ("ci-bot", "nightly", "candidate")


def test_show_list_and_history_views(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    name = registered(world, capsys, world.good, world.sharper)
    assert cli(world, "promote", name, "1", "--to", "staging") == 0
    assert cli(world, "promote", name, "2", "--to", "production") == 0
    capsys.readouterr()
    assert cli(world, "models", "show", f"{name}@staging") == 0
    out = capsys.readouterr().out
    for expected in (f"{name} version 1", "staging=v1", world.good, "1.0.0", "dataset digest"):
        assert expected in out
    shown = json_out(world, capsys, "models", "show", f"{name}/2")
    assert shown["version"]["version"] == "2"
    assert [a["alias"] for a in shown["aliases"]] == ["production"]
    assert shown["promotions"][0]["actor"]
    assert json_out(world, capsys, "models", "show", name)["version"]["version"] == "2"

    rows = {r["name"]: r for r in json_out(world, capsys, "models", "list")}
    assert rows[name]["latest_version"] == "2"
    assert rows[name]["events"] == 2
    assert {a["alias"]: a["version"] for a in rows[name]["aliases"]} == {
        "production": "2", "staging": "1",
    }  # fmt: skip
    assert cli(world, "models", "list") == 0
    assert name in capsys.readouterr().out

    only = json_out(world, capsys, "models", "history", name, "--alias", "staging")
    assert [e["to_version"] for e in only["events"]] == ["1"]
    last = json_out(world, capsys, "models", "history", name, "--limit", "1")
    assert [e["to_version"] for e in last["events"]] == ["2"]
    assert cli(world, "models", "history", name) == 0
    assert "production -> v2" in capsys.readouterr().out


# -- rollback ----------------------------------------------------------------------------------


def test_rollback_walks_back_and_is_recorded(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good, world.sharper, world.red_as_green)
    for version in ("1", "2", "3"):
        assert cli(world, "promote", name, version, "--to", "production") == 0
    assert cli(world, "rollback", name) == 0
    assert "production 3 -> 2" in capsys.readouterr().out
    assert cli(world, "rollback", name, "--alias", "production", "--reason", "bad") == 0
    assert client(world).get_model(name).aliases["production"] == "1"
    assert cli(world, "rollback", name) == 9
    assert "no earlier holder" in capsys.readouterr().err
    events = json_out(world, capsys, "models", "history", name)["events"]
    assert [(e["kind"], e["to_version"]) for e in events[-2:]] == [
        ("rollback", "2"), ("rollback", "1"),
    ]  # fmt: skip
    assert events[-1]["reason"] == "bad"
    assert cli(world, "promote", name, "3", "--to", "production") == 0
    assert cli(world, "rollback", name) == 0
    assert client(world).get_model(name).aliases["production"] == "1"


# -- diff --------------------------------------------------------------------------------------


def test_diff_params_metrics_dataset_and_contract(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good, world.sharper, world.reordered)
    diff = json_out(world, capsys, "models", "diff", name, "1", "2")
    assert {c["key"]: (c["a"], c["b"]) for c in diff["params"]} == {"lr": ("0.1", "0.2")}
    assert {c["key"]: (c["a"], c["b"]) for c in diff["metrics"]} == {"accuracy": (0.9, 0.95)}
    assert {c["key"]: (c["a"], c["b"]) for c in diff["class_metrics"]} == {"recall/red": (1.0, 0.5)}
    (train,) = diff["datasets"]
    assert (train["summary"]["removed"], train["summary"]["relabelled"]) == (1, 1)
    assert diff["contract"] == []
    assert {c["key"]: c["b"] for c in diff["environment"]}["python"] == "3.99.0"
    labels = json_out(world, capsys, "models", "diff", name, "1", "3")["contract"]
    assert labels
    assert all(c["breaking"] for c in labels)
    assert {c["path"] for c in labels} >= {"labels.0", "labels.1"}
    assert cli(world, "models", "diff", name, "1", "2") == 0
    out = capsys.readouterr().out
    assert "1 removed" in out
    assert "1 relabelled" in out


# -- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("promote", "no-such-model", "1", "--to", "production"),
        ("rollback", "no-such-model"),
        ("gc", "no-such-model", "--keep-last", "1"),
        ("models", "show", "no-such-model"),
        ("models", "history", "no-such-model"),
        ("models", "diff", "no-such-model", "1", "2"),
    ],
)
def test_unknown_model_is_exit_4(
    world: World, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    assert cli(world, *args) == 4
    err = capsys.readouterr().err
    assert "registered model 'no-such-model' not found" in err
    assert "Traceback" not in err


def test_unknown_version_and_alias_are_exit_4(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good)
    assert cli(world, "promote", name, "9", "--to", "production") == 4
    assert f"version '{name}/9' not found" in capsys.readouterr().err
    assert cli(world, "promote", name, "1", "--to", "qa") == 4
    assert "configured aliases: candidate, staging, production" in capsys.readouterr().err
    assert cli(world, "models", "show", f"{name}@production") == 4
    assert cli(world, "models", "show", f"{name}/5") == 4
    assert cli(world, "models", "history", name, "--alias", "qa") == 4
    assert cli(world, "rollback", name, "--alias", "qa") == 4
    assert cli(world, "rollback", name) == 9
    assert "no history" in capsys.readouterr().err


def test_other_task_or_other_labels_need_force(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    name = registered(world, capsys, world.good, world.detector, world.reordered)
    assert cli(world, "promote", name, "1", "--to", "production") == 0
    assert cli(world, "promote", name, "2", "--to", "production") == 9
    assert "task detection differs from the holder's classification" in capsys.readouterr().err
    assert cli(world, "promote", name, "3", "--to", "production") == 9
    assert "labels differ" in capsys.readouterr().err
    assert client(world).get_model(name).aliases["production"] == "1"
    assert cli(world, "promote", name, "3", "--force", "--reason", "relabelled on purpose") == 0
    assert client(world).get_model(name).aliases["production"] == "3"


def test_gate_dataset_with_other_labels_is_exit_5(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = registered(world, capsys, world.good)
    other = colour_dataset(tmp_path / "other", labels=("red", "purple"))
    gate = write_gate(tmp_path / "gate.yaml", other)
    assert cli(world, "promote", name, "1", "--gate", str(gate)) == 5
    err = capsys.readouterr().err
    assert "purple" in err
    assert "not in the model's contract" in err
    assert client(world).get_model(name).aliases == {}
    pinned = write_gate(tmp_path / "pinned.yaml", world.dataset, dataset_digest="0" * 64)
    assert cli(world, "promote", name, "1", "--gate", str(pinned)) == 5
    assert "the evaluation set changed" in capsys.readouterr().err
    assert cli(world, "promote", name, "1", "--gate", str(tmp_path / "missing.yaml")) == 3


def test_tracking_server_gone_mid_move_leaves_no_half_moved_alias(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = registered(world, capsys, world.good, world.sharper)
    assert cli(world, "promote", name, "1", "--to", "production") == 0

    def gone(self: RegistryClient, *args: object) -> None:
        raise TrackingUnavailableError(self.uri, "connection refused")

    monkeypatch.setattr(RegistryClient, "set_alias", gone)
    assert cli(world, "promote", name, "2", "--to", "production") == 7
    err = capsys.readouterr().err
    assert "not reachable" in err
    assert "to version 2 is recorded" in err
    assert err.count("\n") == 1
    assert client(world).get_model(name).aliases["production"] == "1"
    monkeypatch.undo()

    assert cli(world, "models", "history", name) == 0
    assert "interrupted move" in capsys.readouterr().out
    assert cli(world, "promote", name, "2", "--to", "production") == 0
    captured = capsys.readouterr()
    assert "completed an interrupted earlier move" in captured.err
    assert "already points at version 2" in captured.out
    model = client(world).get_model(name)
    events = parse_history(model.tags)
    assert model.aliases["production"] == events[-1].to_version == "2"
    assert len(events) == 2


def test_unreachable_server_is_exit_7(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--tracking-uri", "http://127.0.0.1:9", "models", "list"])
    assert rc == 7
    assert "not reachable" in capsys.readouterr().err
