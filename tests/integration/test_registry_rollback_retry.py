"""A rollback killed halfway, then retried: together they go back ONE step, recorded once.

The kill is real (SIGKILL) and lands at the worst moment: right after the rollback recorded its
history event and before it moved the alias. The retried ``visionyard rollback`` completes that
move and must not then roll back a second time on top of it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.fixtures.cli import store_flags
from tests.fixtures.tracking import tracking_env
from tests.registry_support import log_colour_run
from visionyard.cli.main import main
from visionyard.registry.aliases import read_state
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

KILLED_AFTER_THE_EVENT = textwrap.dedent(
    """
    import os, signal, sys
    from visionyard.cli.main import main
    from visionyard.tracking.registry_client import RegistryClient

    write = RegistryClient.set_model_tag

    def write_then_die(self, model, key, value):
        write(self, model, key, value)
        if key.startswith("vy.event."):
            os.kill(os.getpid(), signal.SIGKILL)

    RegistryClient.set_model_tag = write_then_die
    sys.exit(main(sys.argv[1:]))
    """
)


def killed_rollback(settings: Settings, tmp_path: Path, name: str) -> int:
    script = tmp_path / "killed_rollback.py"
    script.write_text(KILLED_AFTER_THE_EVENT)
    argv = [sys.executable, str(script), *store_flags(settings), "rollback", name]
    done = subprocess.run(argv, env=tracking_env(settings), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    return done.returncode


def rollbacks(settings: Settings, name: str) -> list[tuple[str | None, str]]:
    state = read_state(RegistryClient.from_settings(settings), name, "production")
    return [(e.from_version, e.to_version) for e in state.history if e.kind == "rollback"]


def test_a_killed_rollback_retried_goes_back_one_step(
    tracking_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = tracking_settings
    flags = store_flags(s)
    name = f"retry-{uuid.uuid4().hex[:8]}"
    for sharpness in (10.0, 20.0, 30.0):
        run = log_colour_run(s, tmp_path, sharpness=sharpness)
        assert main([*flags, "register", run, "--name", name]) == 0
    for version in ("1", "2", "3"):
        assert main([*flags, "promote", name, version, "--to", "production"]) == 0

    assert killed_rollback(s, tmp_path, name) == -signal.SIGKILL
    state = read_state(RegistryClient.from_settings(s), name, "production")
    assert (state.holder, state.sync) == ("3", "pending")

    capsys.readouterr()
    assert main([*flags, "rollback", name]) == 0
    captured = capsys.readouterr()
    assert "completed an interrupted earlier move" in captured.err
    assert "production 3 -> 2" in captured.out
    assert RegistryClient.from_settings(s).get_model(name).aliases["production"] == "2"
    assert rollbacks(s, name) == [("3", "2")]

    assert main([*flags, "rollback", name]) == 0  # a new request walks further back, as before
    assert RegistryClient.from_settings(s).get_model(name).aliases["production"] == "1"
    assert rollbacks(s, name) == [("3", "2"), ("2", "1")]
