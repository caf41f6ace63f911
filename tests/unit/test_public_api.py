"""The public API is what ``visionyard.__all__`` lists; importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import visionyard


def test_every_public_name_resolves() -> None:
    missing = [name for name in visionyard.__all__ if getattr(visionyard, name, None) is None]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in visionyard.__all__ if n != "__version__"]
    assert names == sorted(set(names))


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        visionyard.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_import_is_light() -> None:
    code = (
        "import sys, visionyard\n"
        "from visionyard import VisionContract, load_bundle, build_manifest, Settings\n"
        "print(','.join(m for m in ('torch', 'mlflow', 'onnxruntime') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
