"""``visionyard pipeline register | show`` and a pipeline version through the registry's CLI:
refusals in one line naming the field, evaluation and a gated promotion by the END result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.registry_world import World, cli, fresh_name, json_out, registered
from tests.pipeline_support import scene_coco, write_spec
from tests.registry_support import write_gate

SCENES = [("red", "blue"), ("green", "white"), ("blue", "black"), ("white", "red")]


@pytest.fixture(scope="module")
def stages(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A detector (v1) and a classifier (v1 good, production; v2 calls red black)."""

    detector, classifier = fresh_name(), fresh_name()
    assert cli(world, "register", world.detector, "--name", detector) == 0
    for run in (world.good, world.red_as_green):
        assert cli(world, "register", run, "--name", classifier) == 0
    assert cli(world, "promote", classifier, "1", "--to", "production") == 0
    return {"detector": detector, "classifier": classifier}


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_register_pins_each_stage_and_show_prints_them(
    world: World, stages: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "p.yaml", f"{stages['detector']}/1",
                      f"{stages['classifier']}@production", crop={"padding": 0.2})  # fmt: skip
    name = fresh_name()
    assert cli(world, "pipeline", "register", str(spec), "--name", name) == 0
    assert f"classifier {stages['classifier']}/1" in capsys.readouterr().out
    shown = json_out(world, capsys, "pipeline", "show", name)
    assert shown["version"] == "1"
    assert shown["spec"]["pinned"] == {
        "detector": f"{stages['detector']}/1", "classifier": f"{stages['classifier']}/1",
    }  # fmt: skip
    assert shown["spec"]["classifier"] == f"{stages['classifier']}@production"  # followed
    assert shown["spec"]["crop"]["padding"] == 0.2
    assert cli(world, "pipeline", "register", str(spec), "--name", name) != 0  # same pins
    assert "already version 1" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("detector", "classifier", "extra", "field"),
    [
        ("{classifier}/1", "{classifier}@production", {}, "detector: {classifier}/1 task is "
         "classification"),
        ("{detector}/1", "{detector}/1", {}, "classifier: {detector}/1 task is detection"),
        ("{detector}/1", "{classifier}@staging", {}, "classifier: {classifier}@staging does "
         "not resolve"),
        ("{detector}/1", "{classifier}/1", {"colour": "red"}, "colour: unknown field"),
        ("{detector}/1", "{classifier}/1", {"crop": {"padding": -1}}, "crop.padding:"),
        ("{detector}", "{classifier}/1", {}, "detector: '{detector}' is not a registry "
         "reference"),
    ],
    ids=["detector-is-classifier", "classifier-is-detector", "unresolved", "unknown-field",
         "bad-padding", "not-a-reference"],
)  # fmt: skip
def test_refusals_name_the_field_in_one_line(
    world: World, stages: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    detector: str, classifier: str, extra: dict[str, object], field: str,
) -> None:  # fmt: skip
    spec = write_spec(tmp_path / "p.yaml", detector.format(**stages),
                      classifier.format(**stages), **extra)  # fmt: skip
    capsys.readouterr()
    assert cli(world, "pipeline", "register", str(spec), "--name", fresh_name()) != 0
    line = _one_error_line(capsys)
    assert line.startswith("error:")
    assert field.format(**stages) in line


def test_evaluate_and_gate_score_the_end_result(
    world: World, stages: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = scene_coco(tmp_path / "coco", SCENES)
    name = fresh_name()
    for classifier in ("1", "2"):  # v2: the classifier that calls red black
        spec = write_spec(tmp_path / f"p{classifier}.yaml", f"{stages['detector']}/1",
                          f"{stages['classifier']}/{classifier}")  # fmt: skip
        assert cli(world, "pipeline", "register", str(spec), "--name", name) == 0
    good = json_out(world, capsys, "evaluate", f"{name}/1", "--data", str(data))["report"]
    worse = json_out(world, capsys, "evaluate", f"{name}/2", "--data", str(data))["report"]
    assert good["map_50"] == pytest.approx(1.0)  # every box found and classified right
    by_class = {row["label"]: row["ap50"] for row in worse["per_class"]}
    assert by_class["red"] == pytest.approx(0.0)  # red crops are called black now
    assert worse["map_50"] < good["map_50"]
    gate = write_gate(tmp_path / "gate.yaml", data, max_metric_drop=0.01, min_samples=4)
    assert cli(world, "promote", name, "1", "--to", "production", "--gate", str(gate)) == 0
    capsys.readouterr()
    assert cli(world, "promote", name, "2", "--to", "production", "--gate", str(gate)) != 0
    captured = capsys.readouterr()
    assert "max_metric_drop" in captured.out + captured.err
    held = json_out(world, capsys, "models", "show", f"{name}@production")
    assert held["version"]["version"] == "1"  # production stayed on the good pipeline


def test_a_pipeline_name_holding_models_is_refused(
    world: World, stages: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = registered(world, capsys, world.good)
    spec = write_spec(tmp_path / "p.yaml", f"{stages['detector']}/1", f"{stages['classifier']}/1")
    assert cli(world, "pipeline", "register", str(spec), "--name", taken) != 0
    assert "holds models, not pipelines" in _one_error_line(capsys)


def test_a_model_version_under_a_pipelines_name_is_refused(
    world: World, stages: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = fresh_name()
    spec = write_spec(tmp_path / "p.yaml", f"{stages['detector']}/1", f"{stages['classifier']}/1")
    assert cli(world, "pipeline", "register", str(spec), "--name", name) == 0
    capsys.readouterr()
    assert cli(world, "register", world.good, "--name", name) == 3
    assert "holds pipelines, not models" in _one_error_line(capsys)
    assert json_out(world, capsys, "models", "show", name)["version"]["version"] == "1"
