"""``visionyard runs list|show|ui`` on a real store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.fixtures.cli import store_flags
from visionyard.cli.main import main
from visionyard.settings import Settings
from visionyard.tracking import start_run


def flags(settings: Settings) -> list[str]:
    return store_flags(settings)


def test_runs_list_and_show(
    tracking_settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    with start_run(settings=tracking_settings, run_name="cli-run") as run:
        run.log_params({"lr": 0.25})
        run.log_metrics(0, {"loss": 0.5})
        run.log_dataset({"digest": "d" * 64, "kind": "classification"}, name="train")
    experiment = tracking_settings.tracking.experiment
    assert main([*flags(tracking_settings), "runs", "list", "-e", experiment]) == 0
    listed = capsys.readouterr().out
    assert run.run_id in listed
    assert "FINISHED" in listed
    assert "loss=0.5" in listed
    assert main([*flags(tracking_settings), "runs", "show", run.run_id]) == 0
    shown = capsys.readouterr().out
    assert "cli-run" in shown
    assert "d" * 64 in shown
    assert main([*flags(tracking_settings), "runs", "show", run.run_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == {"lr": "0.25"}
    assert data["datasets"][0]["full_digest"] == "d" * 64


def test_runs_show_unknown_run_is_one_line_and_exit_4(
    tracking_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*flags(tracking_settings), "runs", "show", "0123abc"]) == 4
    captured = capsys.readouterr()
    assert "run '0123abc' not found" in captured.err
    assert "Traceback" not in captured.err


def test_runs_list_on_a_dead_server_is_exit_7(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--tracking-uri", f"http://127.0.0.1:{port}", "runs", "list"]) == 7
    assert "not reachable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["models", "list"], ["runs", "list"], ["models", "history", "shapes"]]
)
def test_reading_commands_refuse_a_store_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    typo = tmp_path / "mlfow.db"
    assert main(["--home", str(tmp_path), "--tracking-uri", f"sqlite:///{typo}", *command]) == 7
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"error: no tracking store at {typo}: nothing was ever recorded there; check "
        "--tracking-uri / VISIONYARD_TRACKING__URI / --home, or train or register first"
    ]
    assert not typo.exists()


def test_reading_commands_refuse_an_empty_file_and_leave_it_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["--home", str(tmp_path), "--tracking-uri", f"sqlite:///{empty}",
                 "models", "list"]) == 7  # fmt: skip
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith(f"error: no tracking store at {empty}: the file is empty")
    assert empty.stat().st_size == 0  # a read never builds a store


def test_a_directory_as_sqlite_store_fails_at_once_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}",
                 "models", "list"]) == 7  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "is a directory, not an SQLite database file" in lines[0]


def test_runs_ui_prints_the_command_for_the_store(
    tracking_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*flags(tracking_settings), "runs", "ui", "--port", "5055"]) == 0
    printed = capsys.readouterr().out
    if tracking_settings.tracking_uri().startswith("http"):
        assert "serves the UI itself" in printed
    else:
        assert "mlflow ui --backend-store-uri sqlite:///" in printed
        assert "--port 5055" in printed
        assert "--default-artifact-root file:///" in printed
