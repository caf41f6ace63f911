"""The registry world of the CLI end-to-end tests: runs logged once per module (tiny colour
classifiers with known answers, see :mod:`tests.registry_support`) and the helpers that register
them under a fresh model name and run CLI commands against that store. The ``world`` fixture is
in ``conftest.py`` beside this file."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.fixtures.cli import store_flags
from tests.registry_support import (
    RED_AS_GREEN,
    colour_dataset,
    log_colour_run,
    log_detector_run,
    write_gate,
)
from visionyard.cli.main import main
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient


class World(NamedTuple):
    settings: Settings
    good: str  # colour classifier, logged with the training dataset
    sharper: str  # same predictions, another bundle, another dataset and params
    red_as_green: str  # red images predicted green
    reordered: str  # same colours, labels in another order
    detector: str
    dataset: Path
    gate: Path


def make_world(root: Path, sqlite_template: Path) -> World:
    home = root / ".visionyard"
    home.mkdir()
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "registry-e2e"})
    data = colour_dataset(root / "eval")
    changed = colour_dataset(root / "train-b")
    (changed / "val" / "red" / "0.png").unlink()
    (changed / "val" / "green" / "1.png").rename(changed / "val" / "blue" / "9.png")
    reordered = ("green", "red", "blue", "white", "black")
    sharper = log_colour_run(settings, root, sharpness=20.0, dataset=changed, params={"lr": 0.2},
                             metrics={"accuracy": 0.95, "recall/red": 0.5})  # fmt: skip
    _pretend_other_python(settings, sharper)
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    return World(
        settings=settings,
        good=log_colour_run(settings, root, dataset=data, params={"lr": 0.1},
                            metrics={"accuracy": 0.9, "recall/red": 1.0}),
        sharper=sharper,
        red_as_green=log_colour_run(settings, root, colours=RED_AS_GREEN),
        reordered=log_colour_run(
            settings, root, labels=reordered,
            colours=[colours.get(n, (255, 255, 255) if n == "white" else (0, 0, 0))
                     for n in reordered],
        ),
        detector=log_detector_run(settings, root),
        dataset=data,
        gate=write_gate(root / "gate.yaml", data, max_class_drop=0.05, min_samples=5),
    )  # fmt: skip


def _pretend_other_python(settings: Settings, run_id: str) -> None:
    """Rewrite the run's environment.json as if it had run on another interpreter."""
    client = RegistryClient.from_settings(settings).client
    env = json.loads(Path(client.download_artifacts(run_id, "environment.json")).read_text())
    client.log_text(run_id, json.dumps({**env, "python": "3.99.0"}), "environment.json")


def cli(world: World, *args: str) -> int:
    return main([*store_flags(world.settings), *args])


def fresh_name() -> str:
    return f"shapes-{uuid.uuid4().hex[:8]}"


def registered(world: World, capsys: pytest.CaptureFixture[str], *runs: str) -> str:
    name = fresh_name()
    for run in runs:
        assert cli(world, "register", run, "--name", name) == 0
    capsys.readouterr()
    return name


def json_out(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert cli(world, *args, "--json") == 0
    return json.loads(capsys.readouterr().out)


def client(world: World) -> RegistryClient:
    return RegistryClient.from_settings(world.settings)
