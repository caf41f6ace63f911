"""``visionyard bundle verify|show`` through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionyard.bundle import write_bundle
from visionyard.cli.main import main
from visionyard.contract import VisionContract


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    contract = VisionContract.classification(
        ["cat", "dog"], input_size=(24, 32), resize="letterbox"
    )
    write_bundle(tmp_path / "b", model=b"model-bytes", contract=contract)
    return tmp_path / "b"


def test_verify_and_show(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", "verify", str(bundle_dir)]) == 0
    assert "2 files verified" in capsys.readouterr().out
    assert main(["bundle", "show", str(bundle_dir)]) == 0
    shown = capsys.readouterr().out
    assert "input 24x32 (letterbox" in shown
    assert "cat, dog" in shown
    assert "model.onnx" in shown


def test_tampered_bundle_exits_6_with_one_line(
    bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle_dir / "model.onnx").write_bytes(b"model-bytez")
    assert main(["bundle", "verify", str(bundle_dir)]) == 6
    err = capsys.readouterr().err
    assert "model.onnx does not match its sha256 checksum: tampered" in err
    assert "Traceback" not in err
