"""``visionyard deploy release``: the GitHub workflow is valid against GitHub's schema, and the
script it calls runs end to end here on the embedded store (SQLite in tmp, tiny synthetic data,
1 epoch): a first release goes to staging and, after "approval", to production; a second one
whose gate fails stops with exit 8 and moves nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.cli import run
from visionyard.deploy.release import ENV_FILE, GATE_FILE, SCRIPT, WORKFLOW
from visionyard.deploy.spec import READY_PATH
from visionyard.registry import Registry
from visionyard.settings import Settings

BIN = Path(sys.executable).parent
#: The smallest training that still runs every step: 1 epoch of a width-0.25 CNN at 32x32.
TRAIN_FLAGS = "--width 0.25 --epochs 1 --batch-size 8 --input-size 32 --seed 0 --patience 0"


def _generate(capsys: pytest.CaptureFixture[str], root: Path, *more: str) -> tuple[int, str]:
    code, out, err = run(capsys, "deploy", "release", "--out", root, "--model", "shapes", *more)
    return code, out + err


def test_workflow_is_valid_and_files_are_refused_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "README.md").write_text("a repository\n")
    code, _ = _generate(capsys, tmp_path, "--canary", "10", "--install", "-e .[torch]")
    assert code == 0
    workflow = tmp_path / WORKFLOW
    check = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    flow = yaml.safe_load(workflow.read_text())
    assert flow["on"]["push"]["paths"] == [
        "data/eval/**", "data/train/**", "release/**", "scripts/release.sh"
    ]  # fmt: skip
    production = flow["jobs"]["production"]
    assert production["environment"] == {"name": "production"}
    assert production["needs"] == "candidate"
    steps = flow["jobs"]["candidate"]["steps"]
    assert steps[-1]["run"] == "scripts/release.sh candidate"
    assert steps[-2]["run"] == "python -m pip install -e .[torch]"
    assert ': "${VY_CANARY:=10}"' in (tmp_path / ENV_FILE).read_text()
    # the serving image is built with the candidate baked in and smoke-tested where Docker runs
    image = flow["jobs"]["image"]
    assert image["needs"] == "candidate"
    runs = "\n".join(step.get("run", "") for step in image["steps"])
    assert "visionyard deploy docker --out image-context --force" in runs
    assert '--bake "${MODEL}=${MODEL}/${VERSION}"' in runs
    assert "docker build" in runs
    assert f"127.0.0.1:8000{READY_PATH}" in runs  # the image's own readiness probe
    assert "docker stop" in runs
    assert (tmp_path / SCRIPT).stat().st_mode & 0o111
    # a second run refuses to overwrite (the other files of the repository are never touched)
    code, text = _generate(capsys, tmp_path)
    assert code == 3
    assert f"already holds {WORKFLOW}" in text
    code, _ = _generate(capsys, tmp_path, "--force")
    assert code == 0
    assert (tmp_path / "README.md").read_text() == "a repository\n"
    assert ': "${VY_CANARY:=0}"' in (tmp_path / ENV_FILE).read_text()


def test_release_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _generate(capsys, tmp_path, "--data", "../elsewhere")
    assert code == 3
    assert "--data '../elsewhere': a folder inside the repository" in text
    code, _, err = run(capsys, "deploy", "release", "--out", tmp_path, "--model", "a b")
    assert code == 3
    assert "a registered model name" in err
    assert not (tmp_path / WORKFLOW).exists()


def _script(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / SCRIPT), *args], cwd=root, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_release_script_end_to_end_on_the_embedded_store(
    tmp_path: Path, sqlite_template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    home = root / ".visionyard"
    home.mkdir(parents=True)
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "release"})
    synth = ["data", "synth", "--kind", "classification", "--size", "32"]
    assert run(capsys, *synth, "--train-per-class", "4", "--val-per-class", "2",
               root / "data/train")[0] == 0  # fmt: skip
    assert run(capsys, *synth, "--seed", "1", "--train-per-class", "1", "--val-per-class", "5",
               root / "data/eval")[0] == 0  # fmt: skip
    assert _generate(capsys, root)[0] == 0
    assert re.search(r"^dataset_digest: [0-9a-f]{64}$", (root / GATE_FILE).read_text(), re.M)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONYARD_")}
    env.update(
        VISIONYARD_HOME=str(home), VISIONYARD_TRACKING__URI=settings.tracking_uri(),
        VISIONYARD_TRACKING__EXPERIMENT="release", VY=str(BIN / "visionyard"),
        VY_TRAIN_FLAGS=TRAIN_FLAGS, VY_VARIANTS="fp32", COLUMNS="200",
        VY_EXPORT_FLAGS="--calibration-count 8", GITHUB_OUTPUT=str(tmp_path / "github_output"),
    )  # fmt: skip

    first = _script(root, env, "candidate")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    for line in (
        "release: version=1",
        "may replace (unset) on 'production' (gate passed)",
        "promoted shapes: staging (unset) -> 1",
        "release: mode=staging",
    ):
        assert line in first.stdout, line  # fmt: skip
    assert (tmp_path / "github_output").read_text() == "version=1\nmode=staging\n"
    registry = Registry(settings)
    assert _aliases(registry) == {"staging": "1"}  # gated against production, but not moved

    approved = _script(root, env, "production", "1", "staging")
    assert approved.returncode == 0, approved.stdout[-4000:] + approved.stderr[-4000:]
    assert "promoted shapes: production (unset) -> 1" in approved.stdout
    assert _aliases(registry) == {"staging": "1", "production": "1"}

    # A second release whose gate fails (a floor the candidate cannot reach): exit 8, no move.
    strict = root / "release/gate-strict.yaml"
    strict.write_text((root / GATE_FILE).read_text() + "min_metric: 1.0\n")
    env["VY_GATE"] = "release/gate-strict.yaml"
    env["VY_TRAIN_FLAGS"] = TRAIN_FLAGS.replace("--seed 0", "--seed 1")  # a config change
    failed = _script(root, env, "candidate")
    assert failed.returncode == 8, failed.stdout[-4000:] + failed.stderr[-4000:]
    assert "release: version=2" in failed.stdout
    assert "gate FAILED" in failed.stdout
    assert "gate failed for version 2 of 'shapes'" in failed.stderr
    assert "==> staging" not in failed.stdout
    assert "Traceback" not in failed.stderr
    assert _aliases(registry) == {"staging": "1", "production": "1"}


def _aliases(registry: Registry) -> dict[str, str]:
    model = registry.client.get_model("shapes")
    return {k: str(v) for k, v in model.aliases.items()}


STUB = """#!/usr/bin/env bash
# a stand-in for visionyard: records each call, answers like it, exits as told
echo "$*" >> "$STUB_LOG"
case "$1" in
    train) echo "run id: r1" ;;
    register) echo "registered $3 version 3 (semver 1.2.0: minor) from run $2" ;;
    models) exit "${STUB_SHOW:-0}" ;;
esac
if [[ "$*" == *"--dry-run"* ]]; then exit "${STUB_GATE:-0}"; fi
"""


@pytest.mark.parametrize(
    ("canary", "show", "gate", "code", "last"),
    [
        ("10", "0", "0", 0, "rollout start shapes 3 --canary 10 --steps 5,25,50,100"),
        ("10", "4", "0", 0, "promote shapes 3 --to staging --reason release candidate"),
        ("0", "0", "0", 0, "promote shapes 3 --to staging --reason release candidate"),
        ("10", "7", "0", 7, "models show shapes@production"),
        ("10", "0", "8", 8, "promote shapes 3 --to production --gate release/gate.yaml --dry-run"),
    ],
)
def test_release_script_decides_by_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], canary: str, show: str, gate: str,
    code: int, last: str,
) -> None:  # fmt: skip
    """The script's own decisions, with a stand-in for visionyard: canary only when production
    holds a version, staging otherwise, and the first failing command's code is the exit code."""
    assert _generate(capsys, tmp_path)[0] == 0
    stub, log = tmp_path / "vy", tmp_path / "calls.log"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {**os.environ, "VY": str(stub), "STUB_LOG": str(log), "VY_CANARY": canary,
           "STUB_SHOW": show, "STUB_GATE": gate, "GITHUB_OUTPUT": ""}  # fmt: skip
    done = _script(tmp_path, env, "candidate")
    assert done.returncode == code, done.stdout + done.stderr
    calls = log.read_text().splitlines()
    assert calls[:3] == [
        "train --data data/train --no-progress --epochs 10",
        "register r1 --name shapes",
        "export shapes 3 --data data/train --variants fp32,int8",
    ]
    assert calls[-1] == last
    assert ("release: mode=canary" in done.stdout) == last.startswith("rollout")
    mode = "canary" if last.startswith("rollout") else "staging"
    promoted = _script(tmp_path, env, "production", "3", mode)
    assert promoted.returncode == 0
    gated = "promote shapes 3 --to production --gate release/gate.yaml --reason release approved"
    expected = "rollout promote shapes" if mode == "canary" else gated
    assert log.read_text().splitlines()[-1] == expected
