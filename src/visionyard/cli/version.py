"""``visionyard --version``: visionyard's version and those of the libraries a bug report needs.

Versions come from the installed distributions' metadata, so nothing heavy is imported.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

#: Libraries whose version changes visionyard's behaviour, in the order printed.
KEY_LIBRARIES = ("mlflow", "onnxruntime", "onnx", "torch", "numpy", "fastapi", "grpcio", "typer")


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def version_line() -> str:
    """Two lines: visionyard and Python, then each key library's version."""
    head = f"visionyard {_version('visionyard')} (Python {platform.python_version()})"
    libs = ", ".join(f"{name} {_version(name)}" for name in KEY_LIBRARIES)
    return f"{head}\n{libs}"
