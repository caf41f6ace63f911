"""Environment capture: git state, packages, CPU/GPU, command line, seed; torch never imported."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from visionyard.tracking import environment
from visionyard.tracking.environment import capture_environment, environment_tags

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print('hi')\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_capture_has_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py", "--epochs", "3", "a b"])
    env = capture_environment(seed=1234)
    assert env["seed"] == 1234
    assert env["command"] == shlex.join(["train.py", "--epochs", "3", "a b"])
    assert env["python"] == platform.python_version()
    assert env["packages"]["mlflow"] == importlib.metadata.version("mlflow")
    assert env["packages"]["numpy"] == importlib.metadata.version("numpy")
    assert set(env["packages"]) == set(environment.KEY_PACKAGES)
    assert env["cpu"]
    assert env["executable"] == sys.executable
    json.dumps(env)  # logged as environment.json


@needs_git
def test_git_commit_and_dirty_flag(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert environment.git_state(repo) == (head, False)
    (repo / "train.py").write_text("print('changed')\n")
    assert environment.git_state(repo) == (head, True)
    assert capture_environment(cwd=repo)["git_commit"] == head


@needs_git
def test_untracked_files_do_not_make_a_repo_dirty(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch\n")
    assert environment.git_state(repo)[1] is False


def test_outside_a_repository_git_state_is_unknown(tmp_path: Path) -> None:
    assert environment.git_state(tmp_path) == (None, None)


def test_missing_packages_have_no_version() -> None:
    versions = environment.package_versions(("mlflow", "surely-not-installed-pkg"))
    assert versions["surely-not-installed-pkg"] is None
    assert versions["mlflow"]


def test_cpu_model_comes_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.00GHz\nflags\t: x\n")
    assert environment.cpu_model(cpuinfo) == "Test CPU @ 3.00GHz"


def test_gpu_from_an_already_imported_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_torch = SimpleNamespace(
        cuda=SimpleNamespace(
            is_available=lambda: True,
            device_count=lambda: 2,
            get_device_name=lambda i: f"Fake GPU {i}",
        ),
        version=SimpleNamespace(cuda="12.4"),
    )
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert environment.gpu_state() == ("Fake GPU 0, Fake GPU 1", "12.4")


def test_gpu_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=name" ]; then echo "NVIDIA H200"; exit 0; fi\n'
        'echo "| NVIDIA-SMI 570.1   Driver Version: 570.1   CUDA Version: 12.8     |"\n'
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert environment.gpu_state() == ("NVIDIA H200", "12.8")


def test_no_gpu_without_torch_or_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(environment.shutil, "which", lambda _name: None)
    assert environment.gpu_state() == (None, None)


def test_capture_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from visionyard.tracking.environment import capture_environment\n"
        "capture_environment()\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_tags_flatten_packages_and_skip_unknowns() -> None:
    env = {
        "git_commit": "abc",
        "git_dirty": True,
        "gpu": None,
        "seed": 7,
        "packages": {"mlflow": "3.0", "torch": None},
        "command": "x" * 9000,
    }
    tags = environment_tags(env)
    assert tags["visionyard.git_commit"] == "abc"
    assert tags["visionyard.git_dirty"] == "true"
    assert tags["visionyard.seed"] == "7"
    assert tags["visionyard.pkg.mlflow"] == "3.0"
    assert "visionyard.pkg.torch" not in tags
    assert "visionyard.gpu" not in tags
    assert len(tags["visionyard.command"]) == environment.MAX_TAG_CHARS
