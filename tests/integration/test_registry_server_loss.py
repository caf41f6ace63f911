"""A real ``mlflow server`` killed in the middle of a promotion, then restarted.

The server (SQLite behind it, artifacts served) is this test's own, so it can be killed: right
after the promotion recorded its history event and before it moved the alias. The command must
fail with one clear line (exit 7), the alias must still point at the old version (never a
half-moved one), and once the server is back the next promotion completes the recorded move.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.tracking import _free_port, _start_server, _stop_group, _wait_healthy
from tests.registry_support import log_colour_run
from visionyard.cli.main import main
from visionyard.registry.aliases import read_state
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        store = f"sqlite:///{self.root / 'server.db'}"
        self.proc = _start_server(store, self.root, self.port)  # type: ignore[assignment]
        _wait_healthy(self.proc, self.url, self.root / "server.log")  # type: ignore[arg-type]

    def kill(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "server"
    root.mkdir()
    srv = Server(root)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.mark.slow
def test_server_killed_between_event_and_alias_move(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings = Settings(home=tmp_path / "home", tracking={"uri": server.url, "experiment": "loss"})
    flags = ["--home", str(settings.home), "--tracking-uri", server.url]
    name = f"loss-{uuid.uuid4().hex[:8]}"
    for sharpness in (10.0, 20.0):
        run = log_colour_run(settings, tmp_path, sharpness=sharpness)
        assert main([*flags, "register", run, "--name", name]) == 0
    assert main([*flags, "promote", name, "1", "--to", "production"]) == 0
    capsys.readouterr()

    write_tag = RegistryClient.set_model_tag

    def tag_then_die(self: RegistryClient, model: str, key: str, value: str) -> None:
        write_tag(self, model, key, value)
        if key.startswith("vy.event."):
            server.kill()

    monkeypatch.setattr(RegistryClient, "set_model_tag", tag_then_die)
    assert main([*flags, "promote", name, "2", "--to", "production"]) == 7
    err = capsys.readouterr().err
    assert "is not reachable" in err
    assert "to version 2 is recorded" in err
    assert err.strip().count("\n") == 0
    assert "Traceback" not in err
    monkeypatch.setattr(RegistryClient, "set_model_tag", write_tag)

    server.start()
    state = read_state(RegistryClient.from_settings(settings), name, "production")
    assert state.holder == "1"
    assert state.sync == "pending"
    assert main([*flags, "promote", name, "2", "--to", "production"]) == 0
    assert "completed an interrupted earlier move" in capsys.readouterr().err
    state = read_state(RegistryClient.from_settings(settings), name, "production")
    assert state.holder == "2"
    assert state.last is not None
    assert state.last.to_version == "2"
    assert len(state.history) == 2
