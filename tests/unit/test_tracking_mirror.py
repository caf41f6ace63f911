"""The W&B mirror against a fake ``wandb`` module: what goes where, and that a failing, missing
or unwritable W&B never fails the MLflow run (counted, one warning)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.unit.test_tracking_run import FakeClient, make_run
from tests.wandb_support import FakeWandb
from visionyard.errors import ConfigError, DependencyMissingError
from visionyard.settings import Settings, load_settings
from visionyard.tracking.mirror import (
    BackgroundMirror,
    Metrics,
    Mirror,
    MirrorEvent,
    RegistryEvent,
    RunStarted,
    open_mirror,
)
from visionyard.tracking.run import TrackedRun
from visionyard.tracking.wandb_mirror import WandbSink


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> FakeWandb:
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return fake


def mirrored_run(tmp_path: Path, client: FakeClient, **wandb: object) -> TrackedRun:
    settings = Settings(
        home=tmp_path,
        tracking={"mirror": ["wandb"], "mirror_timeout_s": 5, "wandb": {"dir": tmp_path, **wandb}},
    )
    mirror = open_mirror(settings)
    run = make_run(client)
    run._mirror = mirror
    run._mirrored(RunStarted("run1", "exp", "tiny", {"visionyard.arch": "cnn"}, {"python": "3"}))
    return run


def bundle_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("model.onnx", "contract.json", "manifest.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    return folder


def test_a_run_goes_to_wandb_params_metrics_tags_images_and_the_bundle(
    tmp_path: Path, fake_wandb: FakeWandb
) -> None:
    png = tmp_path / "reports" / "confusion_matrix.png"
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with mirrored_run(tmp_path, FakeClient()) as run:
        run.log_params({"lr": 0.1, "epochs": 2})
        run.log_metrics(0, {"loss": 1.0})
        run.log_metrics(1, {"loss": 0.5})
        run.set_tags({"visionyard.best_epoch": 1})
        run.log_artifact(png.parent, "reports")
        run.log_bundle(SimpleNamespace(path=bundle_dir(tmp_path), digest=lambda: "ab" * 32))
    (wb,) = fake_wandb.runs
    assert wb.kwargs["id"] == "run1"
    assert wb.kwargs["project"] == "exp"
    assert wb.kwargs["reinit"] == "create_new"
    assert wb.kwargs["dir"] == str(tmp_path)
    assert "arch=cnn" in wb.kwargs["tags"]
    assert wb.config["environment"] == {"python": "3"}
    assert (wb.config["lr"], wb.config["epochs"]) == (0.1, 2)
    assert wb.config["mlflow_tags"]["visionyard.best_epoch"] == "1"
    assert {"loss": 1.0, "step": 0} in wb.logged
    assert {"loss": 0.5, "step": 1} in wb.logged
    assert {"reports/confusion_matrix": ("image", str(png), None)} in wb.logged
    ((bundle, aliases),) = wb.artifacts
    assert bundle.name == "bundle-run1"
    assert bundle.type == "model"
    assert set(bundle.files) == {"model.onnx", "contract.json", "manifest.json"}
    assert bundle.metadata == {
        "visionyard.bundle_digest": "ab" * 32, "mlflow_uri": "runs:/run1/bundle"
    }  # fmt: skip
    assert aliases == ["latest", "sha256-abababababab"]
    assert wb.exit_code == 0


def test_a_wandb_that_raises_on_log_fails_nothing_and_counts_what_was_not_sent(
    tmp_path: Path, fake_wandb: FakeWandb, caplog: pytest.LogCaptureFixture
) -> None:
    fake_wandb.fail_log = True
    client = FakeClient()
    with mirrored_run(tmp_path, client) as run:
        for step in range(3):
            run.log_metrics(step, {"loss": 1.0 / (step + 1)})
    assert client.status == "FINISHED"
    assert sum(len(b) for b in client.metric_batches) == 3  # MLflow has every point
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "W&B mirror: 3 of 5 items were not sent to W&B" in warning
    assert "RuntimeError: W&B is down" in warning
    assert "MLflow run run1 has everything" in warning


def test_an_unwritable_wandb_folder_is_one_warning_and_the_run_still_succeeds(
    tmp_path: Path, fake_wandb: FakeWandb, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")  # unwritable even for root
    client = FakeClient()
    with mirrored_run(tmp_path, client, dir=blocker / "wandb") as run:
        run.log_params({"lr": 0.1})
        run.log_metrics(0, {"loss": 1.0})
    assert client.status == "FINISHED"
    assert client.metric_batches
    assert not fake_wandb.runs
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"the W&B folder {blocker / 'wandb'} is not writable" in warning
    assert "set tracking.wandb.dir or WANDB_DIR to a writable folder" in warning
    assert "4 of 4 items were not sent" in warning


def test_wandb_not_installed_is_refused_up_front_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    settings = Settings(home=tmp_path, tracking={"mirror": ["wandb"]})
    with pytest.raises(DependencyMissingError) as caught:
        open_mirror(settings)
    assert caught.value.extra == "wandb"
    assert "pip install 'visionyard[wandb]'" in str(caught.value)


def test_no_mirror_imports_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert open_mirror(Settings(home=tmp_path)) is None


def test_mirror_settings_from_env_and_file_and_unknown_names(tmp_path: Path) -> None:
    env = {"VISIONYARD_TRACKING__MIRROR": "wandb", "VISIONYARD_TRACKING__WANDB__PROJECT": "p"}
    tracking = load_settings(environ=env).settings.tracking
    assert (tracking.mirror, tracking.wandb.project) == (["wandb"], "p")
    toml = tmp_path / "visionyard.toml"
    toml.write_text('[tracking]\nmirror = ["wandb"]\n', encoding="utf-8")
    assert load_settings(toml, environ={}).settings.tracking.mirror == ["wandb"]
    with pytest.raises(
        ConfigError, match="tracking.mirror: .*unknown mirror 'neptune'; known: wandb"
    ):
        load_settings(environ={"VISIONYARD_TRACKING__MIRROR": "neptune"})


@pytest.mark.parametrize(
    ("kind", "alias", "expected"),
    [("register", None, "mlflow-v2"), ("promote", "production", "production"),
     ("rollback", "production", "production")],
)  # fmt: skip
def test_registry_events_become_aliases_on_the_models_artifact(
    tmp_path: Path, fake_wandb: FakeWandb, kind: str, alias: str | None, expected: str
) -> None:
    sink = WandbSink(Settings(home=tmp_path, tracking={"wandb": {"dir": tmp_path}}).tracking)
    event = RegistryEvent(kind, "shapes", "2", "ana", alias, "3", "bad canary", "r1", "d" * 64)
    sink.handle(event)
    (wb,) = fake_wandb.runs
    assert wb.kwargs["job_type"] == "registry"
    assert kind in wb.kwargs["tags"]
    ((art, aliases),) = wb.artifacts
    assert (art.name, art.type, aliases) == ("shapes", "model", ["latest", expected])
    assert art.files == {"bundle": "models:/shapes/2"}
    assert art.metadata["bundle_digest"] == "d" * 64
    assert art.metadata["run_id"] == "r1"
    assert wb.exit_code == 0


class _Stuck:
    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, event: MirrorEvent) -> None:
        self.release.wait(10)


def test_a_hanging_tracker_is_waited_for_at_most_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = _Stuck()
    mirror = Mirror([BackgroundMirror(sink, "W&B", timeout_s=0.2)])
    for step in range(3):
        mirror.send(Metrics(step, {"loss": 1.0}))
    (report,) = mirror.close()
    sink.release.set()
    assert report.unsent == 2  # the one being sent may still arrive
    assert "gave up waiting after 0.2 s" in caplog.text


class _Recorder:
    def __init__(self) -> None:
        self.events: list[MirrorEvent] = []
        self.closed = False

    def send(self, event: MirrorEvent) -> None:
        self.events.append(event)

    def close(self, what: str = "MLflow") -> list[object]:
        self.closed = True
        return []


class _Versions:
    def get_version(self, name: str, version: str) -> SimpleNamespace:
        return SimpleNamespace(run_id="r7", tags={"vy.bundle_digest": "e" * 64})


def test_a_rollback_is_mirrored_with_its_alias_and_a_dry_run_is_not() -> None:
    from visionyard.registry.aliases import MoveResult
    from visionyard.registry.history import new_event
    from visionyard.registry.mirroring import mirror_move
    from visionyard.registry.promote import MoveOutcome

    moved = new_event("production", "3", "2", actor="ana", kind="rollback", reason="canary")
    outcome = MoveOutcome("production", "3", "2", MoveResult(moved, "2", moved))
    recorder = _Recorder()
    mirror_move(recorder, _Versions(), "shapes", outcome)  # type: ignore[arg-type]
    (event,) = recorder.events
    assert event == RegistryEvent(
        "rollback", "shapes", "2", "ana", "production", "3", "canary", "r7", "e" * 64
    )
    assert recorder.closed
    dry = _Recorder()
    mirror_move(dry, _Versions(), "shapes", MoveOutcome("production", "3", "2", None))  # type: ignore[arg-type]
    assert dry.events == []
