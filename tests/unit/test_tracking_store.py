"""Tracking configuration, URI checks, fast failure on dead stores, and error translation."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

from visionyard.errors import TrackingError, TrackingUnavailableError
from visionyard.settings import Settings
from visionyard.tracking import start_run
from visionyard.tracking.store import TrackingConfig, connect, mlflow_globals, normalize_uri
from visionyard.tracking.translate import from_mlflow, from_other, redact, translate_errors


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_is_sqlite_with_artifacts_under_home(tmp_path: Path) -> None:
    config = TrackingConfig.from_settings(Settings(home=tmp_path / "h"))
    assert config.tracking_uri == f"sqlite:///{(tmp_path / 'h' / 'mlflow.db').resolve()}"
    assert config.registry_uri == config.tracking_uri
    assert config.artifact_root == (tmp_path / "h" / "artifacts").resolve().as_uri()
    assert config.artifact_location("my exp/1") == f"{config.artifact_root}/my-exp-1"


def test_explicit_settings_are_kept(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        tracking={
            "uri": "http://mlflow.example:5000/",
            "registry_uri": "postgresql://u:p@db/reg",
            "artifact_location": "s3://bucket/vy",
            "flush_points": 10,
            "flush_interval_s": 0.5,
        },
    )
    config = TrackingConfig.from_settings(settings)
    assert config.tracking_uri == "http://mlflow.example:5000"
    assert config.registry_uri == "postgresql+psycopg://u:p@db/reg"
    assert config.artifact_location("e") == "s3://bucket/vy/e"
    assert (config.flush_points, config.flush_interval_s) == (10, 0.5)


def test_a_server_chooses_its_own_artifact_location(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, tracking={"uri": "https://mlflow.example"})
    assert TrackingConfig.from_settings(settings).artifact_location("e") is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("https://h:5000/", "https://h:5000"),
    ],
)
def test_uris_are_normalised(uri: str, expected: str) -> None:
    assert normalize_uri(uri) == expected


@pytest.mark.parametrize(
    "uri", ["mlruns", "./mlruns", "file:///tmp/mlruns", "ftp://h/x", "http://"]
)
def test_bad_uris_say_what_to_use(uri: str) -> None:
    with pytest.raises(TrackingError, match="VISIONYARD_TRACKING__URI") as info:
        normalize_uri(uri)
    assert "sqlite:///" in str(info.value)


def test_in_memory_sqlite_is_refused(tmp_path: Path) -> None:
    config = TrackingConfig("sqlite://", "sqlite://", None, "e")
    with pytest.raises(TrackingError, match="needs a file path"):
        connect(config)


def test_dead_server_fails_fast_with_a_useful_message(tmp_path: Path, closed_port: int) -> None:
    uri = f"http://127.0.0.1:{closed_port}"
    settings = Settings(home=tmp_path, tracking={"uri": uri})
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as info:
        start_run("e", settings=settings)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert uri in message
    assert "check that the server is running" in message
    assert info.value.code == "tracking.unavailable"


def test_dead_postgres_fails_fast_and_hides_the_password(tmp_path: Path, closed_port: int) -> None:
    uri = f"postgresql://vy:s3cret@127.0.0.1:{closed_port}/db"
    settings = Settings(home=tmp_path, tracking={"uri": uri})
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as info:
        start_run("e", settings=settings)
    assert time.monotonic() - started < 10
    assert "s3cret" not in str(info.value)
    assert "vy:***@" in str(info.value)


def test_sqlite_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = Settings(home=tmp_path, tracking={"uri": f"sqlite:///{blocker}/sub/mlflow.db"})
    with pytest.raises(TrackingError, match=r"cannot create the folder .*file/sub"):
        start_run("e", settings=settings)


def sqlite_settings(home: Path, db: Path) -> Settings:
    return Settings(home=home, tracking={"uri": f"sqlite:///{db}"})


def test_reading_a_missing_sqlite_store_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    typo = tmp_path / "no-such-dir" / "mlfow.db"
    with pytest.raises(TrackingError) as info:
        connect(TrackingConfig.from_settings(sqlite_settings(tmp_path, typo)))
    assert f"no tracking store at {typo}" in str(info.value)
    assert info.value.code == "tracking.failed"
    assert not typo.exists()
    assert not typo.parent.exists()


def test_starting_a_run_creates_a_missing_sqlite_store(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "mlflow.db"
    with start_run("e", settings=sqlite_settings(tmp_path, fresh)):
        pass
    assert fresh.is_file()
    connect(TrackingConfig.from_settings(sqlite_settings(tmp_path, fresh)))  # now it exists


@pytest.mark.parametrize("create", [False, True])
def test_a_directory_is_not_a_database(tmp_path: Path, create: bool) -> None:
    config = TrackingConfig.from_settings(sqlite_settings(tmp_path, tmp_path))
    with pytest.raises(TrackingError, match=r"is a directory, not an SQLite database file"):
        connect(config, create=create)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not a database\n")
    config = TrackingConfig.from_settings(sqlite_settings(tmp_path, notes))
    with pytest.raises(TrackingError, match=r"is not an SQLite database"):
        connect(config, create=True)
    assert notes.read_text() == "these are my notes, not a database\n"


def test_redact_hides_passwords_only() -> None:
    assert redact("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"
    assert redact("http://h:5000") == "http://h:5000"


def test_mlflow_connection_errors_become_unavailable() -> None:
    exc = MlflowException("API request to http://h/api failed: Max retries exceeded with url")
    assert isinstance(from_mlflow("http://h", "log", exc), TrackingUnavailableError)


def test_mlflow_permission_errors_name_the_credentials() -> None:
    exc = MlflowException("no access", error_code=PERMISSION_DENIED)
    error = from_mlflow("http://h", "create the run", exc)
    assert not isinstance(error, TrackingUnavailableError)
    assert "cannot create the run on http://h: no access" in str(error)
    assert "MLFLOW_TRACKING_TOKEN" in str(error)


def test_http_auth_failures_name_the_credentials() -> None:
    exc = MlflowException("API request to endpoint /api/2.0/x failed with error code 403 != 200")
    assert "MLFLOW_TRACKING_USERNAME" in str(from_mlflow("http://h", "log", exc))


def test_database_operational_errors_become_unavailable() -> None:
    from sqlalchemy.exc import OperationalError

    exc = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    error = from_other("postgresql+psycopg://u:pw@h/db", "log", exc)
    assert isinstance(error, TrackingUnavailableError)
    assert "server closed the connection" in str(error)
    assert "pw" not in str(error)


def test_permission_errors_say_what_must_be_writable() -> None:
    with (
        pytest.raises(TrackingError, match="writable") as info,
        translate_errors("sqlite:////x.db", "upload"),
    ):
        raise PermissionError(13, "Permission denied", "/x/artifacts")
    assert isinstance(info.value.__cause__, PermissionError)


def test_unrelated_errors_pass_through() -> None:
    with pytest.raises(KeyError), translate_errors("sqlite:////x.db", "upload"):
        raise KeyError("bug")


def test_mlflow_globals_are_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    config = TrackingConfig.from_settings(Settings(home=tmp_path))
    before = mlflow.get_tracking_uri()
    with mlflow_globals(config):
        assert mlflow.get_tracking_uri() == config.tracking_uri
        assert mlflow.get_registry_uri() == config.registry_uri
        assert os.environ["MLFLOW_TRACKING_URI"] == config.tracking_uri
    assert mlflow.get_tracking_uri() == before
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
