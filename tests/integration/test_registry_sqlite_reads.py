"""The SQLite shortcut of the read views (:mod:`visionyard.tracking.sqlite_read`) answers what
the MLflow client answers, field by field, on a real store; it steps aside for anything it was
not checked against; and ``models show`` on the embedded default never imports MLflow."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from tests.registry_support import colour_dataset, log_colour_run
from visionyard.errors import NotFoundError
from visionyard.registry import Registry
from visionyard.registry.reads import ReadViews
from visionyard.registry.views import parse_reference, show
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient
from visionyard.tracking.sqlite_read import SCHEMA_REVISIONS, SqliteRegistryReader, open_reader

NAMES = ("alpha", "beta")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Two models: alpha with three versions (v3 deleted), a dataset, params, a NaN metric,
    tags, two moves of production and staging; beta with one version and no aliases."""
    tmp = tmp_path_factory.mktemp("sqlite-reads")
    settings = Settings(home=tmp / ".visionyard", tracking={"experiment": "reads"})
    registry = Registry(settings)
    data = colour_dataset(tmp / "data")
    for sharpness in (10.0, 5.0, 3.0):
        run = log_colour_run(
            settings, tmp, sharpness=sharpness, dataset=data,
            params={"lr": "0.01", "sharpness": sharpness},
            metrics={"val_top1": 0.9, "val_loss": math.nan},
        )  # fmt: skip
        registry.register(run, "alpha")
    registry.register(log_colour_run(settings, tmp), "beta")
    registry.promote("alpha", "1", "production", force=True, reason="first")
    registry.promote("alpha", "2", "production", force=True, reason="better")
    registry.promote("alpha", "1", "staging", force=True, reason="hold")
    client = RegistryClient.from_settings(settings)
    client.set_version_tag("alpha", "2", "note", "hand-written ✓")
    client.set_model_tag("beta", "owner", "vision team")
    client.client.delete_model_version("alpha", "3")
    return settings


def mlflow_reads(settings: Settings) -> RegistryClient:
    return RegistryClient.from_settings(settings)


def sqlite_reads(settings: Settings) -> SqliteRegistryReader:
    reader = open_reader(settings.tracking_uri(), settings.tracking.registry_uri)
    assert reader is not None, "the shortcut must serve the embedded default store"
    return reader


def comparable(value: Any) -> Any:
    """Dataclass values with NaN written out (NaN != NaN would fail an equal comparison)."""
    data = asdict(value)
    if "metrics" in data:
        data["metrics"] = {k: "nan" if math.isnan(v) else v for k, v in data["metrics"].items()}
    return data


def test_models_and_versions_read_as_mlflow_reads_them(store: Settings) -> None:
    fast, slow = sqlite_reads(store), mlflow_reads(store)
    assert fast.list_models() == slow.list_models()
    assert [m.name for m in fast.list_models()] == list(NAMES)
    alpha = fast.get_model("alpha")
    assert alpha == slow.get_model("alpha")
    assert alpha.latest_version == "2"  # v3 was deleted
    assert alpha.aliases == {"production": "2", "staging": "1"}
    assert fast.get_model("beta").tags["owner"] == "vision team"
    for name, version in (("alpha", "1"), ("alpha", "2"), ("beta", "1")):
        assert fast.get_version(name, version) == slow.get_version(name, version)
    assert fast.get_version("alpha", "2").tags["note"] == "hand-written ✓"
    assert fast.get_version("alpha", "1").aliases == ("staging",)


def test_runs_read_as_mlflow_reads_them(store: Settings) -> None:
    fast, slow = sqlite_reads(store), mlflow_reads(store)
    for name, version in (("alpha", "1"), ("alpha", "2"), ("beta", "1")):
        run_id = slow.get_version(name, version).run_id
        assert run_id is not None
        assert comparable(fast.get_run(run_id)) == comparable(slow.get_run(run_id))
    run = fast.get_run(str(slow.get_version("alpha", "1").run_id))
    assert run.params["lr"] == "0.01"
    assert math.isnan(run.metrics["val_loss"])
    assert [d.name for d in run.datasets] == ["train"]
    assert run.datasets[0].full_digest


@pytest.mark.parametrize(
    "read",
    [
        lambda r: r.get_model("gamma"),
        lambda r: r.get_version("gamma", "1"),
        lambda r: r.get_version("alpha", "9"),
        lambda r: r.get_version("alpha", "3"),  # deleted
        lambda r: r.get_run("0" * 32),
    ],
    ids=["model", "version-of-unknown-model", "version", "deleted-version", "run"],
)
def test_missing_things_give_mlflows_error(store: Settings, read: Any) -> None:
    with pytest.raises(NotFoundError) as fast:
        read(sqlite_reads(store))
    with pytest.raises(NotFoundError) as slow:
        read(mlflow_reads(store))
    assert str(fast.value) == str(slow.value)


def test_views_match_for_every_reference(store: Settings) -> None:
    views = ReadViews(store)
    for text in ("alpha", "alpha@production", "alpha@staging", "alpha/1", "beta"):
        expected = show(mlflow_reads(store), parse_reference(text))
        got = views.show(text)
        assert replace(got, run=None) == replace(expected, run=None)
        assert comparable(got.run) == comparable(expected.run)
    assert views.list() == Registry(store).list()
    assert views.history("alpha", "production") == Registry(store).history("alpha", "production")


def test_a_failing_sqlite_read_is_answered_by_mlflow(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def locked(self: SqliteRegistryReader, name: str) -> Any:
        calls.append(name)
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SqliteRegistryReader, "get_model", locked)
    view = ReadViews(store).show("alpha@production")
    assert calls == ["alpha"]
    assert view.version.version == "2"


def test_the_shortcut_steps_aside(
    store: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = store.tracking_uri()
    assert open_reader(uri, None) is not None
    assert open_reader(uri, "sqlite:///elsewhere.db") is None  # registry in another store
    assert open_reader("postgresql://u@localhost/db", None) is None
    assert open_reader("http://127.0.0.1:5000", None) is None
    assert open_reader(f"sqlite:///{tmp_path / 'absent.db'}", None) is None
    assert open_reader("sqlite:///:memory:", None) is None
    not_sqlite = tmp_path / "text.db"
    not_sqlite.write_text("not a database")
    assert open_reader(f"sqlite:///{not_sqlite}", None) is None
    other = tmp_path / "other-revision.db"
    shutil.copy(uri.removeprefix("sqlite:///"), other)
    with sqlite3.connect(other) as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00d'")
    assert open_reader(f"sqlite:///{other}", None) is None
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    assert open_reader(uri, None) is None


def test_the_shortcut_opens_the_store_read_only(store: Settings) -> None:
    reader = sqlite_reads(store)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._db.execute("DELETE FROM registered_models")
    reader.close()
    assert mlflow_reads(store).get_model("alpha").aliases["production"] == "2"


def test_the_checked_schema_is_the_installed_mlflows() -> None:
    """An MLflow upgrade that changes the schema fails here, not in a user's ``models show``:
    check the new revision's tables against this module, then add it to SCHEMA_REVISIONS."""
    from mlflow.store.db.utils import _get_latest_schema_revision  # type: ignore[attr-defined]

    assert _get_latest_schema_revision() in SCHEMA_REVISIONS  # type: ignore[no-untyped-call]


def test_models_show_on_the_embedded_store_does_not_import_mlflow(store: Settings) -> None:
    probe = (
        "import sys\n"
        "from visionyard.cli.main import main\n"
        "code = main(['models', 'show', 'alpha@production'])\n"
        "print('MLFLOW-IMPORTED' if 'mlflow' in sys.modules else 'NO-MLFLOW', code)\n"
    )
    env = {**os.environ, "VISIONYARD_HOME": str(store.home),
           "VISIONYARD_TRACKING__URI": store.tracking_uri(), "COLUMNS": "200"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip().endswith("NO-MLFLOW 0"), done.stdout + done.stderr
    assert "alpha version 2" in done.stdout
    assert "production" in done.stdout
