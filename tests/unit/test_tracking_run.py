"""TrackedRun against a recording fake client: batching, end states, input checks."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from visionyard.errors import NotFoundError, TrackingError
from visionyard.tracking.run import TrackedRun
from visionyard.tracking.store import TrackingConfig


class FakeClient:
    """Records the MlflowClient calls TrackedRun makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.metric_batches: list[list[Any]] = []
        self.status: str | None = None
        self.fail_batches = False

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (),
                  synchronous: bool | None = None) -> None:  # fmt: skip
        if self.fail_batches:
            raise OSError("disk full")
        self.calls.append(("log_batch", {"metrics": metrics, "params": params, "tags": tags}))
        if metrics:
            self.metric_batches.append(list(metrics))

    def set_terminated(self, run_id: str, status: str) -> None:
        self.status = status

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.calls.append(("log_artifact", {"path": path, "artifact_path": artifact_path}))

    def log_artifacts(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self.calls.append(("log_artifacts", {"path": path, "artifact_path": artifact_path}))


def make_run(client: FakeClient, flush_points: int = 1000) -> TrackedRun:
    config = TrackingConfig("sqlite:////x.db", "sqlite:////x.db", None, "e", flush_points, 60)
    return TrackedRun(client, "run1", "1", config)  # type: ignore[arg-type]


def test_metrics_are_written_in_batches_not_one_call_per_point() -> None:
    client = FakeClient()
    with make_run(client) as run:
        for step in range(1250):
            run.log_metrics(step, {"loss": 1.0 / (step + 1), "acc": step / 1250})
    sizes = [len(b) for b in client.metric_batches]
    assert sum(sizes) == 2500
    assert max(sizes) <= 1000
    assert len(sizes) <= 5  # a handful of batches, not 2,500 calls
    steps = sorted({m.step for batch in client.metric_batches for m in batch})
    assert steps == list(range(1250))
    assert client.status == "FINISHED"


def test_exception_flushes_then_ends_failed() -> None:
    client = FakeClient()

    def train() -> None:
        with make_run(client) as run:
            run.log_metrics(0, {"loss": 1.0})
            raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        train()
    assert len(client.metric_batches) == 1
    assert client.status == "FAILED"


@pytest.mark.parametrize(
    ("exc", "status"),
    [(KeyboardInterrupt(), "KILLED"), (SystemExit(0), "FINISHED"), (SystemExit(2), "FAILED")],
)
def test_end_status_follows_how_the_block_ended(exc: BaseException, status: str) -> None:
    client = FakeClient()
    with pytest.raises(type(exc)), make_run(client):
        raise exc
    assert client.status == status


def test_sigterm_unwinds_the_block_and_ends_killed() -> None:
    client = FakeClient()

    def train() -> None:
        with make_run(client) as run:
            run.log_metric("loss", 0.5, step=3)
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(SystemExit) as info:
        train()
    assert info.value.code == 128 + signal.SIGTERM
    assert client.status == "KILLED"
    assert len(client.metric_batches) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_failed_final_flush_marks_the_run_failed_and_raises() -> None:
    client = FakeClient()
    run = make_run(client)
    run.log_metrics(0, {"loss": 1.0})
    client.fail_batches = True
    with pytest.raises(TrackingError, match="disk full"):
        run.end()
    assert client.status == "FAILED"


def test_end_is_idempotent_and_the_run_closes() -> None:
    client = FakeClient()
    run = make_run(client)
    run.log_metrics(0, {"loss": 1.0})
    thread = run._buffer._thread
    assert thread is not None
    run.end()
    run.end("FAILED")
    assert not thread.is_alive()
    assert client.status == "FINISHED"
    assert run.ended
    with pytest.raises(TrackingError, match="has ended"):
        run.log_metrics(1, {"loss": 1.0})


def test_errors_while_an_exception_leaves_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient()
    run = make_run(client)
    run.log_metrics(0, {"loss": 1.0})
    client.fail_batches = True
    run.end("FAILED", raise_errors=False)
    assert client.status == "FAILED"
    assert "disk full" in caplog.text


def test_non_numeric_metrics_are_refused() -> None:
    with make_run(FakeClient()) as run, pytest.raises(TrackingError, match="'loss' at step 4"):
        run.log_metrics(4, {"loss": "nan-ish"})  # type: ignore[dict-item]


def test_params_are_strings_and_split_into_batches_of_100() -> None:
    client = FakeClient()
    with make_run(client) as run:
        run.log_params({f"p{i}": i for i in range(150)} | {"layers": [64, 128]})
    batches = [c[1]["params"] for c in client.calls if c[1].get("params")]
    assert [len(b) for b in batches] == [100, 51]
    values = {p.key: p.value for b in batches for p in b}
    assert values["p7"] == "7"
    assert values["layers"] == "[64, 128]"


def test_figures_must_be_png(tmp_path: Path) -> None:
    client = FakeClient()
    jpeg = tmp_path / "plot.png"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0 not a png")
    png = tmp_path / "ok.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n rest")
    with make_run(client) as run:
        with pytest.raises(TrackingError, match="not a PNG"):
            run.log_figure_png(jpeg)
        with pytest.raises(NotFoundError):
            run.log_figure_png(tmp_path / "missing.png")
        run.log_figure_png(png)
    assert ("log_artifact", {"path": str(png), "artifact_path": "figures"}) in client.calls


def test_bundle_is_uploaded_under_bundle(tmp_path: Path) -> None:
    client = FakeClient()
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with make_run(client) as run:
        uri = run.log_bundle(tmp_path)
    assert uri == "runs:/run1/bundle"
    assert ("log_artifacts", {"path": str(tmp_path), "artifact_path": "bundle"}) in client.calls


def test_a_loaded_bundle_object_is_logged_with_its_digest(tmp_path: Path) -> None:
    client = FakeClient()
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    bundle = SimpleNamespace(path=tmp_path, digest=lambda: "b" * 64)
    with make_run(client) as run:
        run.log_bundle(bundle)
    tags = {t.key: t.value for c in client.calls for t in c[1].get("tags", ())}
    assert tags["visionyard.bundle_digest"] == "b" * 64
    assert tags["visionyard.bundle_files"] == "1"
