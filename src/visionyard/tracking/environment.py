"""What a run ran on: git state, interpreter, key package versions, CPU/GPU, command line, seed.

Captured on every run and logged both as ``visionyard.*`` tags (searchable in the MLflow UI) and
as an ``environment.json`` artifact. Everything here is best effort and never fails a run: a
missing ``git``, a directory that is not a repository or an absent GPU gives ``None``.

torch is never imported here (importing it costs seconds): GPU details come from torch only when
the training script already imported it, else from ``nvidia-smi`` when that is on PATH.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("visionyard", "numpy", "pillow", "onnx", "onnxruntime", "mlflow", "torch")
TAG_PREFIX = "visionyard."
MAX_TAG_CHARS = 5000
_TIMEOUT_S = 5.0


def capture_environment(seed: int | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """The environment of this process as a JSON-ready dict (see the module docstring)."""
    commit, dirty = git_state(cwd)
    gpu, cuda = gpu_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "gpu": gpu,
        "cuda": cuda,
        "command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable,
        "executable": sys.executable,
        "seed": seed,
    }


def environment_tags(env: Mapping[str, Any]) -> dict[str, str]:
    """Flatten :func:`capture_environment` into ``visionyard.*`` tags (packages as ``pkg.*``)."""
    tags: dict[str, str] = {}
    for key, value in env.items():
        if key == "packages":
            for name, version in value.items():
                if version is not None:
                    tags[f"{TAG_PREFIX}pkg.{name}"] = str(version)
        elif value is not None:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            tags[f"{TAG_PREFIX}{key}"] = text[:MAX_TAG_CHARS]
    return tags


def os_user() -> str:
    """The OS user name, or ``unknown`` where it cannot be read (no passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the repository around ``cwd``; ``(None, None)`` outside one."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd)
    if commit is None:
        return None, None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd)
    return commit, None if status is None else bool(status)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (``None`` when not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU model name from ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    if match:
        return match.group(1).strip()
    return platform.processor() or None


def gpu_state() -> tuple[str | None, str | None]:
    """``(gpu model(s), CUDA version)``: from an already imported torch, else ``nvidia-smi``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        found = _torch_gpu(torch)
        if found[0] is not None:
            return found
    return _nvidia_smi_gpu()


def _torch_gpu(torch: Any) -> tuple[str | None, str | None]:
    try:
        if not torch.cuda.is_available():
            return None, None
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ", ".join(names), getattr(torch.version, "cuda", None)
    except Exception:  # a broken CUDA install must not fail the run
        return None, None


def _nvidia_smi_gpu() -> tuple[str | None, str | None]:
    if shutil.which("nvidia-smi") is None:
        return None, None
    names = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], None)
    if not names:
        return None, None
    header = _run(["nvidia-smi"], None) or ""
    match = re.search(r"CUDA Version:\s*([0-9.]+)", header)
    gpus = ", ".join(line.strip() for line in names.splitlines() if line.strip())
    return gpus, match.group(1) if match else None


def _run(cmd: list[str], cwd: Path | None) -> str | None:
    """stdout of ``cmd`` stripped, or ``None`` when it is missing, fails or hangs."""
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
