"""Without torch, ``import visionyard.train`` is one clear DependencyMissingError."""

from __future__ import annotations

import importlib
import sys

import pytest

from visionyard.errors import DependencyMissingError


def test_import_without_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        m for m in sys.modules if m == "visionyard.train" or m.startswith("visionyard.train.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" raise ImportError
    with pytest.raises(DependencyMissingError) as caught:
        importlib.import_module("visionyard.train")
    assert (caught.value.package, caught.value.extra) == ("torch", "torch")
    assert "pip install 'visionyard[torch]'" in str(caught.value)


def test_cli_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, visionyard.cli.main; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
