"""``visionyard deploy k8s`` through the CLI against a real (SQLite) registry: the base is
written from a model reference that resolves, and every user mistake is one line, an exit code
and nothing written.

One colour-classifier version is registered once per module and promoted to ``production``
(no training: :mod:`tests.registry_support`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.fixtures.cli import Capture, run, store_flags
from tests.registry_support import log_colour_run
from visionyard.cli.console import EXIT_CODES
from visionyard.deploy import spec
from visionyard.settings import Settings

CONFIG_EXIT = EXIT_CODES["config.invalid"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> list[str]:
    """Global flags pointing at a store where ``shapes@production`` is version 1."""
    root = tmp_path_factory.mktemp("deploy-k8s")
    home = root / ".visionyard"
    home.mkdir()
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "deploy-k8s"})
    flags = store_flags(settings)
    run_id = log_colour_run(settings, root)
    from visionyard.cli.main import main

    assert main([*flags, "register", run_id, "--name", "shapes"]) == 0
    assert main([*flags, "promote", "shapes", "1", "--to", "production"]) == 0
    return flags


def k8s(capsys: Capture, store: list[str], out: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, *store, "deploy", "k8s", "--out", out, *extra)


def one_line_error(code: int, err: str, expected: int = CONFIG_EXIT) -> str:
    assert code == expected, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_writes_a_base_for_a_resolving_reference(
    capsys: Capture, store: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    code, stdout, err = k8s(capsys, store, out, "--model", "shapes=shapes@production",
                            "--min-replicas", "2", "--max-replicas", "10",
                            "--image", "registry.example/vy:9")  # fmt: skip
    assert code == 0, err
    listed = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == ["deployment.yaml", "hpa.yaml", "pdb.yaml", "service.yaml",
                              "servicemonitor.yaml"]  # fmt: skip
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    notes = deployment["metadata"]["annotations"]
    assert notes["visionyard.io/model-versions-at-generation"] == "shapes=1"
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert server["image"] == "registry.example/vy:9"
    hpa = yaml.safe_load((out / "hpa.yaml").read_text())["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    serve = yaml.safe_load((out / "serve.yaml").read_text())
    assert serve["serving"]["models"] == {"shapes": "shapes@production"}
    assert f"kubectl apply -k {out}" in stdout
    assert f"kubectl create secret generic {spec.TRACKING_SECRET}" in stdout


@pytest.mark.parametrize(
    "model", ["shapes=shapes@nosuchalias", "shapes=unknown-model@production", "shapes=shapes/99"]
)
def test_a_reference_that_does_not_resolve_writes_nothing(
    capsys: Capture, store: list[str], tmp_path: Path, model: str
) -> None:
    out = tmp_path / "k8s"
    code, _, err = k8s(capsys, store, out, "--model", model)
    line = one_line_error(code, err)
    assert "does not resolve" in line
    assert not out.exists()


def test_a_non_empty_out_folder_is_refused_unless_forced(
    capsys: Capture, store: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = k8s(capsys, store, out, "--model", "shapes=shapes@production")
    assert "--force" in one_line_error(code, err)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    code, _, err = k8s(capsys, store, out, "--model", "shapes=shapes@production", "--force")
    assert code == 0, err
    assert not (out / "notes.txt").exists()
    assert (out / "kustomization.yaml").is_file()


def test_a_bad_reference_is_refused_before_a_forced_folder_is_emptied(
    capsys: Capture, store: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = k8s(capsys, store, out, "--model", "shapes=shapes@nosuch", "--force")
    one_line_error(code, err)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--min-replicas", "5", "--max-replicas", "2"], "--min-replicas (5)"),
        (["--name", "Not_A_DNS_Label"], "--name"),
        ([], "--model"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(
    capsys: Capture, store: list[str], tmp_path: Path, extra: list[str], needle: str
) -> None:
    out = tmp_path / "k8s"
    model = ["--model", "shapes=shapes@production"] if extra else []
    code, _, err = k8s(capsys, store, out, *model, *extra)
    assert needle in one_line_error(code, err)
    assert not out.exists()


def test_every_option_the_readme_shows_exists() -> None:
    import typer.main

    from visionyard.cli.deploy import app

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    part = readme[readme.index("### Kubernetes\n") :]
    command = part[: part.index("kubectl")].replace("\\\n", " ")
    shown = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", command))
    assert {"--model", "--out", "--min-replicas", "--max-replicas", "--force"} <= shown
    group = typer.main.get_group(app)
    k8s_command = group.commands["k8s"]
    options = {o for param in k8s_command.params for o in (*param.opts, *param.secondary_opts)}
    missing = shown - options
    assert not missing, f"README shows options the command lacks: {sorted(missing)}"


def write_capacity_plan(path: Path, reference: str) -> Path:
    """A plan as ``deploy plan`` writes it: 4 in flight at capacity on 1.83 cores."""
    from visionyard.deploy.plan import CapacityPlan, Level, PlannedModel, hpa_targets, write_plan

    level = Level(concurrency=4, images_per_s=41.3, p50_ms=80.0, p99_ms=140.0, in_flight=4.0,
                  cpu_cores=1.83, requests=400, failures=0)  # fmt: skip
    plan = CapacityPlan(
        model=PlannedModel(name="shapes", reference=reference, version="1", input_size=(32, 32)),
        p99_target_ms=200.0, measured_at="2026-12-05T06:00:00+00:00", host_cpus=2,
        seconds_per_level=5.0, levels=[level], capacity=level, hpa=hpa_targets(level, 0.8),
    )  # fmt: skip
    write_plan(plan, path)
    return path


def test_hpa_targets_and_cpu_request_come_from_a_capacity_plan(
    capsys: Capture, store: list[str], tmp_path: Path
) -> None:
    plan = write_capacity_plan(tmp_path / "capacity.json", "shapes@production")
    out = tmp_path / "k8s"
    code, stdout, err = k8s(capsys, store, out, "--model", "shapes=shapes@production",
                            "--plan", plan)  # fmt: skip
    assert code == 0, err
    hpa = yaml.safe_load((out / "hpa.yaml").read_text())["spec"]
    by_type = {m["type"]: m for m in hpa["metrics"]}
    assert by_type["Pods"]["pods"]["target"]["averageValue"] == "3200m"  # 4.0 x headroom 0.8
    assert by_type["Resource"]["resource"]["target"]["averageUtilization"] == 80
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert server["resources"]["requests"]["cpu"] == "1900m"
    assert "from " in stdout
    code, _, err = k8s(capsys, store, out, "--model", "shapes=shapes@production",
                       "--plan", plan, "--target-cpu", "60", "--force")  # fmt: skip
    assert code == 0, err
    hpa = yaml.safe_load((out / "hpa.yaml").read_text())["spec"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_a_plan_of_another_model_or_not_a_plan_is_refused(
    capsys: Capture, store: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "k8s"
    other = write_capacity_plan(tmp_path / "other.json", "detector@production")
    code, _, err = k8s(capsys, store, out, "--model", "shapes=shapes@production", "--plan", other)
    assert "'detector'" in one_line_error(code, err)
    junk = tmp_path / "junk.json"
    junk.write_text('{"kind": "something else"}')
    code, _, err = k8s(capsys, store, out, "--model", "shapes=shapes@production", "--plan", junk)
    assert "capacity plan" in one_line_error(code, err)
    assert not out.exists()
