"""CLI habits: --version, shell completion, --json on list/show commands, experiments by
name or id, the effective tracking URI, long label lists, and sub-commands imported lazily."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.cli import run, store_flags
from tests.fixtures.runtime import colour_contract, write_colour_bundle
from visionyard.cli.lazy import LAZY, load_command
from visionyard.contract import VisionContract
from visionyard.settings import Settings
from visionyard.tracking import start_run

EXE = str(Path(sys.executable).parent / "visionyard")
Capture = pytest.CaptureFixture[str]
MANY = [f"class{i:03d}" for i in range(30)]


def test_version_names_visionyard_and_its_key_libraries(capsys: Capture) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    first, second = out.strip().splitlines()
    assert first.startswith("visionyard 0.1.0 (Python ")
    for lib in ("mlflow", "onnxruntime", "torch", "numpy"):
        assert f"{lib} " in second


def test_completion_script_and_completing_a_command_name() -> None:
    script = subprocess.run([EXE, "--show-completion", "bash"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    assert "_VISIONYARD_COMPLETE" in script
    env = {**os.environ, "_VISIONYARD_COMPLETE": "complete_bash", "COMP_WORDS": "visionyard mo",
           "COMP_CWORD": "1"}  # fmt: skip
    words = subprocess.run([EXE], env=env, capture_output=True, text=True, check=True).stdout
    assert set(words.split()) == {"models", "monitor"}


def test_each_lazy_entry_lists_its_commands_own_help() -> None:
    for name, spec in LAZY.items():
        command = load_command(name)
        own = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert own == spec.help, f"update LAZY[{name!r}].help in visionyard/cli/main.py"


def test_a_mistyped_command_suggests_the_lazy_one(capsys: Capture) -> None:
    code, _, err = run(capsys, "modls")
    assert code == 2
    assert "Did you mean 'models'?" in err


def test_config_show_prints_the_embedded_tracking_uri(tmp_path: Path, capsys: Capture) -> None:
    home = tmp_path / "state"
    code, out, _ = run(capsys, "--home", home, "config", "show", "--json")
    assert code == 0
    rows = json.loads(out)
    expected = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    assert rows["tracking.uri"] == {"value": expected, "source": "default (embedded)"}
    assert rows["tracking.registry_uri"]["value"] == expected
    code, out, _ = run(capsys, "--home", home, "config", "show")
    assert expected in out


def test_long_label_lists_are_a_count_until_all(tmp_path: Path, capsys: Capture) -> None:
    path = tmp_path / "contract.json"
    path.write_text(VisionContract.classification(MANY).to_json())
    code, out, _ = run(capsys, "contract", "show", path)
    assert code == 0
    assert "30 labels: class000" in out
    assert "+20 more; --all lists them" in out
    assert "class029" not in out
    code, out, _ = run(capsys, "contract", "show", path, "--all")
    assert "class029" in out
    assert json.loads(run(capsys, "contract", "show", path, "--json")[1])["labels"] == MANY
    bundle = write_colour_bundle(tmp_path / "b", contract=colour_contract(MANY))
    code, out, _ = run(capsys, "bundle", "show", bundle.path)
    assert "+20 more" in out
    assert "class029" not in out
    assert "class029" in run(capsys, "bundle", "show", bundle.path, "--all")[1]
    shown = json.loads(run(capsys, "bundle", "show", bundle.path, "--json")[1])
    assert shown["contract"]["labels"] == MANY
    assert shown["digest"] == bundle.digest()


def test_runs_list_takes_an_experiment_name_or_id_and_prints_json(
    tracking_settings: Settings, capsys: Capture
) -> None:
    with start_run(settings=tracking_settings, run_name="habits") as tracked:
        tracked.log_metrics(0, {"accuracy": 0.5})
        experiment_id = tracked.experiment_id
    flags = store_flags(tracking_settings)
    experiment = tracking_settings.tracking.experiment
    for key in (experiment, experiment_id):
        code, out, err = run(capsys, *flags, "runs", "list", "--experiment", key, "--json")
        assert code == 0, err
        rows = json.loads(out)
        assert [(r["name"], r["experiment"]) for r in rows] == [("habits", experiment)]
    code, out, _ = run(capsys, *flags, "runs", "list")
    assert experiment[:30] in out  # the name, not the id (a long name wraps in its column)
    shown = json.loads(run(capsys, *flags, "runs", "show", tracked.run_id, "--json")[1])
    assert shown["experiment"] == experiment
    assert shown["metrics"] == {"accuracy": 0.5}
    code, _, err = run(capsys, *flags, "runs", "list", "--experiment", "no-such-experiment")
    assert code == 4
    assert len(err.strip().splitlines()) == 1


def test_the_export_bar_foresees_every_stage_the_export_reports(tmp_path: Path) -> None:
    from tests.integration.test_export_variants import FAST, noisy_colour_set
    from visionyard.cli.export_progress import expected_steps
    from visionyard.data import read_imagefolder
    from visionyard.export.variants import build_variants

    colours = read_imagefolder(noisy_colour_set(tmp_path / "colours"))
    bundle = write_colour_bundle(tmp_path / "bundle").path
    stages: list[str] = []
    build_variants(bundle, variants="int8,fp16", eval_set=colours.split("val"),
                   calibration_set=colours.split("train"), options=FAST,
                   progress=stages.append)  # fmt: skip
    assert len(stages) == expected_steps(["fp32", "int8", "fp16"], registered=False), stages
    assert any(s.startswith("quantizing int8") for s in stages)
