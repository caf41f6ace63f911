"""``visionyard deploy docker`` end to end: the build context for a registry model (pulled at
start) and for a baked one, checked with hadolint (every rule, no ignore without a reason) and
read back stage by stage; and the refusals (a reference that does not resolve, a folder that
holds other files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tests.deploy_support import (
    MODEL,
    Stage,
    built_wheel,
    colour_store,
    read_dockerfile,
    stage,
    store_flags,
)
from tests.fixtures.cli import run
from visionyard import __version__
from visionyard.bundle.store import load_bundle, sha256_file
from visionyard.deploy import spec
from visionyard.settings import Settings

HADOLINT = Path(sys.executable).parent / "hadolint"
RUNTIME_TARGETS = ("cpu", "gpu")


class Contexts(NamedTuple):
    settings: Settings
    pulled: Path
    baked: Path


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Contexts:
    from visionyard.cli.main import main

    root = tmp_path_factory.mktemp("deploy-docker")
    settings = colour_store(sqlite_template)
    wheel = ["--wheel", str(built_wheel())]
    pulled, baked = root / "pulled", root / "baked"
    flags = store_flags(settings)
    ref = f"{MODEL}@production"
    assert main([*flags, "deploy", "docker", "--out", str(pulled), "-m", ref, *wheel]) == 0
    assert main([*flags, "deploy", "docker", "--out", str(baked), "--bake", ref, *wheel]) == 0
    return Contexts(settings, pulled, baked)


def _both(contexts: Contexts) -> list[Path]:
    return [contexts.pulled, contexts.baked]


def test_hadolint_passes_every_rule_and_each_ignore_says_why(contexts: Contexts) -> None:
    for context in _both(contexts):
        dockerfile = context / "Dockerfile"
        command = [str(HADOLINT), "--no-color", "-f", "json", "-t", "style", str(dockerfile)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=context, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout) == []
        lines = dockerfile.read_text("utf-8").splitlines()
        pragmas = [n for n, line in enumerate(lines) if line.startswith("# hadolint ignore=")]
        for n in pragmas:
            rules = lines[n].split("=", 1)[1].split(",")
            reason = lines[n - 1]
            assert reason.startswith("#"), lines[n]
            assert "hadolint" not in reason, lines[n]
            assert all(rule in "\n".join(lines[n - 3 : n]) for rule in rules), lines[n - 3 : n]


def test_cpu_is_the_default_target_and_gpu_swaps_in_onnxruntime_gpu(contexts: Contexts) -> None:
    from importlib import metadata

    stages = read_dockerfile(contexts.pulled / "Dockerfile")
    assert [s.name for s in stages] == ["gpu-build", "gpu", "build", "cpu"]
    assert stages[-1].name == "cpu", "the last stage is what a plain docker build makes"
    assert stage(stages, "cpu").base.startswith("python:3.11-slim")
    assert stage(stages, "gpu").base.startswith("nvidia/cuda:")
    assert "runtime" in stage(stages, "gpu").base
    gpu_runs = " ".join(i.args for i in stage(stages, "gpu-build").all("RUN"))
    assert f"onnxruntime-gpu=={metadata.version('onnxruntime')}" in gpu_runs
    assert "pip uninstall -y onnxruntime" in gpu_runs
    # the wheel installed in the cpu image pulls no torch: only the base requirements count
    requires = metadata.requires("visionyard") or []
    base = [r for r in requires if "extra ==" not in r]
    assert base
    assert not any(r.lower().startswith("torch") for r in base)


@pytest.mark.parametrize("target", RUNTIME_TARGETS)
def test_runtime_stage_is_non_root_probed_labelled_and_exec_form(
    contexts: Contexts, target: str
) -> None:
    for context in _both(contexts):
        runtime = stage(read_dockerfile(context / "Dockerfile"), target)
        _check_runtime(runtime, baked=context == contexts.baked)


def _check_runtime(runtime: Stage, *, baked: bool) -> None:
    keywords = [i.keyword for i in runtime.instructions]
    user = runtime.one("USER").args
    assert user == f"{spec.UID}:{spec.UID}"
    assert not user.startswith(("0", "root"))
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert runtime.one("ENTRYPOINT").exec_form() == ["visionyard", "serve"]
    assert runtime.all("CMD") == [], "CMD would be appended to serve's arguments"
    assert runtime.one("STOPSIGNAL").args == "SIGTERM"
    health = runtime.one("HEALTHCHECK").args
    options, _, command = health.partition(" CMD ")
    probe = json.loads(command)
    assert probe[0] == "python"
    assert f"http://127.0.0.1:8000{spec.READY_PATH}" in probe[-1]
    assert "--timeout=" in options
    assert "--start-period=" in options
    labels = runtime.one("LABEL").pairs()
    assert labels["io.visionyard.version"] == __version__
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["io.visionyard.model.versions"] == f"{MODEL}=1"
    assert labels["io.visionyard.model.references"] == f"{MODEL}={MODEL}@production"
    assert labels["io.visionyard.model.mode"] == ("baked" if baked else "registry")
    copies = [i.args for i in runtime.all("COPY")]
    assert (f"models/ {spec.MODELS_DIR}/" in copies) == baked
    env = runtime.one("ENV").pairs()
    assert env["VISIONYARD_CONFIG"] == spec.CONFIG_FILE
    assert env["PATH"].startswith(f"{spec.VENV}/bin:")


def test_pulled_context_serves_the_reference_and_holds_no_secret(contexts: Contexts) -> None:
    config = yaml.safe_load((contexts.pulled / "config" / "serve.yaml").read_text("utf-8"))
    assert config["serving"]["models"] == {MODEL: f"{MODEL}@production"}
    assert config["serving"]["drain_s"] == contexts.settings.serving.drain_s
    assert not (contexts.pulled / "models").exists()
    secrets = ("token", "password", "tracking")
    assert not any(word in json.dumps(config) for word in secrets), config


def test_bake_copies_the_registered_bundle_byte_for_byte(
    contexts: Contexts, tmp_path: Path
) -> None:
    from visionyard.registry import resolve_bundle

    baked = contexts.baked / "models" / MODEL
    load_bundle(baked)  # checks every file against the bundle's checksums
    _, fetched = resolve_bundle(contexts.settings, f"{MODEL}/1", tmp_path / "cache")
    ours = {p.relative_to(baked): sha256_file(p) for p in baked.rglob("*") if p.is_file()}
    theirs = {p.relative_to(fetched): sha256_file(p) for p in Path(fetched).rglob("*")
              if p.is_file()}  # fmt: skip
    assert ours == theirs
    assert ours
    config = yaml.safe_load((contexts.baked / "config" / "serve.yaml").read_text("utf-8"))
    assert config["serving"]["models"] == {MODEL: f"{spec.MODELS_DIR}/{MODEL}"}


def test_models_to_pull_or_to_bake_one_of_them(
    contexts: Contexts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"{MODEL}@production"
    base = [*store_flags(contexts.settings), "deploy", "docker", "--out", str(tmp_path / "c")]
    for extra in ([], ["-m", ref, "--bake", ref]):
        code, _, err = run(capsys, *base, *extra, "--wheel", built_wheel())
        assert code == 3, err
        assert err.count("\n") == 1
        assert "--bake" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("option", ["-m", "--bake"])
def test_a_reference_that_does_not_resolve_writes_nothing(
    contexts: Contexts, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    out = tmp_path / "ctx"
    code, _, err = run(
        capsys, *store_flags(contexts.settings), "deploy", "docker", "--out", out,
        option, f"{MODEL}@nowhere", "--wheel", built_wheel(),
    )  # fmt: skip
    assert code == 3
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert f"{MODEL}@nowhere" in err
    assert "does not resolve" in err
    assert not out.exists()


def test_a_folder_with_other_files_is_refused_unless_forced(
    contexts: Contexts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    argv: list[str | Path] = [*store_flags(contexts.settings), "deploy", "docker", "--out", out,
            "-m", f"{MODEL}@production", "--wheel", built_wheel()]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 3
    assert err.count("\n") == 1
    assert "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, _, err = run(capsys, *argv, "--force")
    assert code == 0, err
    assert not (out / "notes.txt").exists()
    assert (out / "Dockerfile").is_file()
