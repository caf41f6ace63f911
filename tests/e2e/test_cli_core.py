"""The CLI root: help without heavy imports, config show, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from visionyard.cli.main import main

HEAVY = ("torch", "mlflow", "onnxruntime")


def test_help_does_not_import_heavy_modules_nor_any_command() -> None:
    code = (
        "import sys\n"
        "from visionyard.cli.main import main\n"
        "rc = main(['--help'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "heavy += [m for m in sys.modules if m.startswith('visionyard.cli.') and m not in "
        "('visionyard.cli.main', 'visionyard.cli.lazy')]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert "HEAVY=\n" in proc.stdout, proc.stdout


def test_every_subcommand_help_is_light() -> None:
    code = (
        "import sys\n"
        "from visionyard.cli.main import LAZY, main\n"
        "for name in LAZY:\n"
        "    assert main([name, '--help']) == 0, name\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("HEAVY="), proc.stdout[-500:]


def test_config_show_table_and_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "visionyard.toml").write_text("[serving]\nhttp_port = 9123\n")
    monkeypatch.setenv("VISIONYARD_SERVING__MAX_BATCH_SIZE", "4")
    rc = main(["--tracking-uri", "http://127.0.0.1:5999", "config", "show", "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["serving.http_port"] == {"value": 9123, "source": "file"}
    assert rows["serving.max_batch_size"] == {"value": 4, "source": "env"}
    assert rows["tracking.uri"] == {"value": "http://127.0.0.1:5999", "source": "flag"}
    assert rows["serving.host"]["source"] == "default"
    assert main(["config", "show"]) == 0
    table = capsys.readouterr().out
    assert "serving.http_port" in table
    assert "file" in table
    assert "visionyard.toml" in table


def test_config_show_hides_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VISIONYARD_SERVING__ADMIN_TOKEN", "s3cret-value")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-value" not in out
    assert "***" in out


def test_bad_setting_is_one_line_with_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VISIONYARD_SERVING__HTTP_PORT", "not-a-port")
    rc = main(["config", "show"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "serving.http_port" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_reports_usage_error() -> None:
    exe = Path(sys.executable).parent / "visionyard"
    proc = subprocess.run(
        [str(exe), "no-such-command"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "No such command" in proc.stderr
    assert "Traceback" not in proc.stderr
