"""``visionyard contract validate|show`` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from visionyard.cli.main import main
from visionyard.contract import VisionContract


@pytest.fixture
def contract_file(tmp_path: Path) -> Path:
    contract = VisionContract.detection(["car", "bus"], input_size=(320, 480))
    path = tmp_path / "contract.json"
    path.write_text(contract.to_json())
    return path


def test_validate_ok(contract_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "validate", str(contract_file)]) == 0
    printed = capsys.readouterr().out
    digest = VisionContract.model_validate_json(contract_file.read_text()).digest()
    assert "valid vision contract v1 (detection, 2 labels, input 320x480" in printed
    assert digest in printed


def test_validate_reports_the_field_in_one_line(
    tmp_path: Path, contract_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(contract_file.read_text())
    data["labels"] = ["car", "car"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["contract", "validate", str(bad)]) == 5
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "labels: duplicate label 'car' at 0 and 1" in lines[0]
    assert "Traceback" not in captured.err


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "validate", str(tmp_path / "none.json")]) == 5
    assert "cannot read the contract file" in capsys.readouterr().err


def test_show_table_lists_fields_and_labels(
    contract_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["contract", "show", str(contract_file)]) == 0
    printed = capsys.readouterr().out
    assert "preprocessing.resize" in printed
    assert '"letterbox"' in printed
    assert "preprocessing.mean" in printed
    assert "[0.0, 0.0, 0.0]" in printed
    assert "decoding.nms_iou" in printed
    assert "labels (2)" in printed
    assert "bus" in printed


def test_show_json_round_trips(contract_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "show", "--json", str(contract_file)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == json.loads(contract_file.read_text())


def test_cli_module_imports_no_heavy_packages() -> None:
    code = (
        "import sys, visionyard.cli.contract; "
        "print(sorted(m for m in ('torch', 'mlflow', 'onnxruntime', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
