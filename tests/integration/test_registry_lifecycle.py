"""The registry lifecycle on the selected backend (SQLite, or a real ``mlflow server`` on
PostgreSQL with ``VISIONYARD_TEST_BACKEND=postgres``), through the CLI, and the versions read
back by stock MLflow: ``mlflow.pyfunc.load_model("models:/NAME@production")`` and
``mlflow models serve`` predict what our own evaluation measured.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.cli import store_flags
from tests.fixtures.models import TrainedBundle
from tests.registry_support import RED_AS_GREEN, colour_dataset, log_colour_run, write_gate
from visionyard.cli.main import main
from visionyard.data import read_imagefolder
from visionyard.registry.history import parse_history
from visionyard.runtime.session import InferenceSession
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient
from visionyard.tracking.store import TrackingConfig, mlflow_globals


def cli(settings: Settings, *args: str) -> int:
    return main([*store_flags(settings), *args])


def val_images(root: Path) -> tuple[list[Path], list[str]]:
    samples = [s for s in read_imagefolder(root).samples if s.split == "val"]
    return [s.path for s in samples], [s.class_name for s in samples]


@pytest.fixture(scope="module")
def promoted(
    trained_bundle: TrainedBundle,
    synth_classification: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TrainedBundle, str, dict[str, Any]]:
    """The session's trained model registered and promoted to production through a gate."""
    settings = trained_bundle.settings
    name = f"trained-{uuid.uuid4().hex[:8]}"
    gate = write_gate(tmp_path_factory.mktemp("gate") / "gate.yaml", synth_classification,
                      split="val", min_samples=12, max_class_drop=0.0)  # fmt: skip
    assert cli(settings, "register", trained_bundle.run_id, "--name", name) == 0
    assert cli(settings, "promote", name, "1", "--to", "production", "--gate", str(gate)) == 0
    event = parse_history(RegistryClient.from_settings(settings).get_model(name).tags)[-1]
    assert event.gate_report is not None
    with mlflow_globals(TrackingConfig.from_settings(settings)):
        import mlflow

        report = json.loads(
            Path(mlflow.artifacts.download_artifacts(event.gate_report)).read_text()
        )
    return trained_bundle, name, report


def test_stock_pyfunc_predicts_what_our_gate_evaluated(
    promoted: tuple[TrainedBundle, str, dict[str, Any]], synth_classification: Path
) -> None:
    trained, name, report = promoted
    session = InferenceSession.open(trained.bundle_path)
    paths, truth = val_images(synth_classification)
    tensor = session.preprocess(paths).tensor
    output = session.contract.decoding.output  # type: ignore[union-attr]
    with mlflow_globals(TrackingConfig.from_settings(trained.settings)):
        import mlflow

        model = mlflow.pyfunc.load_model(f"models:/{name}@production")
        theirs = model.predict(tensor)[output]
    ours = session.run(tensor)[output]
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    labels = session.contract.labels
    accuracy = float(
        np.mean([labels[i] == t for i, t in zip(theirs.argmax(1), truth, strict=True)])
    )
    assert report["after"]["samples"] == len(paths) == 12
    assert accuracy == pytest.approx(report["after"]["metric"])
    assert report["after"]["metric_name"] == "accuracy"


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_our_session(
    promoted: tuple[TrainedBundle, str, dict[str, Any]], synth_classification: Path
) -> None:
    trained, name, _ = promoted
    session = InferenceSession.open(trained.bundle_path)
    tensor = session.preprocess(val_images(synth_classification)[0][:4]).tensor
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained.settings.tracking_uri(),
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@production",
           "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        body = json.dumps({"inputs": tensor.tolist()}).encode()
        answer = _post_when_up(proc, f"http://127.0.0.1:{port}/invocations", body)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    output = session.contract.decoding.output  # type: ignore[union-attr]
    predictions = answer["predictions"]
    served = np.asarray(predictions[output] if isinstance(predictions, dict) else predictions)
    np.testing.assert_allclose(served, session.run(tensor)[output], rtol=1e-4, atol=1e-4)


def test_lifecycle_on_the_backend(
    tracking_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = colour_dataset(tmp_path / "eval")
    gate = write_gate(tmp_path / "gate.yaml", data, min_samples=5)
    runs = [log_colour_run(tracking_settings, tmp_path, dataset=data),
            log_colour_run(tracking_settings, tmp_path, sharpness=30.0),
            log_colour_run(tracking_settings, tmp_path, colours=RED_AS_GREEN)]  # fmt: skip
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    for run in runs:
        assert cli(tracking_settings, "register", run, "--name", name) == 0
    s = tracking_settings
    assert cli(s, "promote", name, "1", "--to", "production", "--gate", str(gate)) == 0
    assert cli(s, "promote", name, "2", "--to", "production", "--gate", str(gate)) == 0
    assert cli(s, "promote", name, "3", "--to", "production", "--gate", str(gate)) == 8
    assert cli(s, "promote", name, "3", "--to", "staging") == 0
    assert cli(s, "rollback", name) == 0
    client = RegistryClient.from_settings(s)
    model = client.get_model(name)
    assert model.aliases == {"production": "1", "staging": "3"}
    events = parse_history(model.tags)
    assert [(e.alias, e.to_version, e.kind) for e in events] == [
        ("production", "1", "promote"), ("production", "2", "promote"),
        ("staging", "3", "promote"), ("production", "1", "rollback"),
    ]  # fmt: skip
    capsys.readouterr()
    assert cli(s, "models", "show", f"{name}@staging") == 0
    assert "staging=v3" in capsys.readouterr().out
    assert cli(s, "models", "diff", name, "1", "2") == 0
    assert "vy.semver" in capsys.readouterr().out

    doomed = client.artifact_uri(client.get_version(name, "2"))
    assert client.bytes_at(doomed) > 0
    assert cli(s, "gc", name, "--keep-last", "0", "--protect-events", "0") == 0
    out = capsys.readouterr().out
    assert "deleted 1 version(s)" in out
    assert [v.version for v in client.list_versions(name)] == ["3", "1"]
    assert client.bytes_at(doomed) == 0


def _post_when_up(proc: subprocess.Popen[bytes], url: str, body: bytes) -> Any:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {proc.returncode}")
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())
        except OSError:
            time.sleep(0.5)
    pytest.fail("mlflow models serve did not answer within 120 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
