"""Monitoring inside the server: records made from the work a batcher worker already does, the
window, drift against a reference profile, the gauges, the report's states, capture offers."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures.runtime import COLOURS, write_colour_bundle
from tests.fixtures.serving import encoded
from visionyard.monitor import FeatureSample, Profile, Record
from visionyard.monitor.detectors import DEFAULT_ALPHA, DEFAULT_MIN_SAMPLES
from visionyard.runtime.session import InferenceSession
from visionyard.serving.batching import BatchConfig, Batcher
from visionyard.serving.logs import request_id
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.model import IMAGE_INPUT, Limits, LoadedModel
from visionyard.serving.monitoring import Monitoring, Reference, VersionMonitor
from visionyard.serving.sources import LocalBundleSource, Resolved
from visionyard.serving.types import Tensor
from visionyard.serving.watch import BEHIND_BATCHES, PIXEL_BATCH, Pending
from visionyard.settings import MonitorSettings

MID = encoded((128, 60, 60))  # between red and black: top-1 ~0.51, margin ~0.02


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_bundle(tmp_path_factory.mktemp("mon") / "b").path


@pytest.fixture(scope="module")
def session(bundle: Path) -> InferenceSession:
    return InferenceSession.open(bundle)


@pytest.fixture
def metrics() -> ServingMetrics:
    return ServingMetrics()


@pytest.fixture
def monitoring(metrics: ServingMetrics, tmp_path: Path) -> Monitoring:
    settings = MonitorSettings.model_validate(
        {"min_samples": 10, "capture": {"dir": tmp_path / "cap", "min_confidence": 0.6}}
    )
    return Monitoring(settings, metrics.monitor)


def loaded(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> tuple[LoadedModel, VersionMonitor]:
    model = LoadedModel("m", "1", session, Batcher(session.run, BatchConfig()))
    model.monitor = monitoring.attach(
        "m", "1", session, LocalBundleSource(bundle), Resolved("1", bundle)
    )
    return model, model.monitor.monitor


def serve(model: LoadedModel, images: list[bytes]) -> Any:
    """What a batcher worker does with one request: prepare, run, finish."""
    data = np.empty(len(images), dtype=object)
    data[:] = images
    tensor = Tensor(IMAGE_INPUT, "BYTES", (len(images),), data)
    work = model.work(tensor, Limits(), lambda raw, metas: "answer")
    rows, context = work.prepare()
    answer = work.finish(model.session.run(rows), context)
    assert work.after is not None
    work.after()  # what the worker does once the answer has gone
    return answer


def sample_of(model: LoadedModel, images: list[bytes]) -> FeatureSample:
    serve(model, images)
    assert model.monitor is not None
    return model.monitor.monitor.snapshot()[0]


def test_a_served_request_adds_image_and_prediction_records(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> None:
    model, _ = loaded(monitoring, session, bundle)
    window = sample_of(model, [encoded(COLOURS["red"]), encoded(COLOURS["blue"], fmt="PNG")])
    assert window.images == 2
    assert window.continuous["brightness_r"].tolist() == pytest.approx([254, 0], abs=2)
    assert window.continuous["confidence"].min() > 0.99
    assert window.categorical["class"] == {"blue": 1, "red": 1}
    assert window.categorical["encoding"] == {"jpeg": 1, "png": 1}


def test_the_answer_is_unchanged_and_a_tensor_request_adds_predictions_only(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> None:
    model, monitor = loaded(monitoring, session, bundle)
    assert serve(model, [MID]) == "answer"
    batch = session.preprocess([encoded(COLOURS["green"])])
    tensor = Tensor("input", "FP32", tuple(batch.tensor.shape), batch.tensor)
    work = model.work(tensor, Limits(), lambda raw, metas: "tensor answer")
    rows, context = work.prepare()
    assert work.finish(session.run(rows), context) == "tensor answer"
    assert work.after is not None
    work.after()
    window = monitor.snapshot()[0]
    assert window.categorical["class"] == {"green": 1, "red": 1}
    assert window.continuous["brightness_r"].size == 1  # only the encoded image has pixels


def test_a_broken_monitor_never_fails_the_request(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> None:
    model, monitor = loaded(monitoring, session, bundle)

    def broken(records: list[Record], waiting: list[Pending]) -> None:
        raise RuntimeError("a bug in monitoring")

    assert model.monitor is not None
    model.monitor.target.observe = broken
    assert serve(model, [MID]) == "answer"
    assert monitor.snapshot()[0].images == 0


def test_watch_carries_the_request_id(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> None:
    model, _ = loaded(monitoring, session, bundle)
    assert model.monitor is not None
    request_id("client-id-7")
    assert model.monitor.watch([MID]).request_id == "client-id-7"


def gauge(metrics: ServingMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"model": "m", "version": "1", **labels})


def red_profile(model: LoadedModel) -> Profile:
    images = [encoded(COLOURS["red"], (20 + i % 9, 20)) for i in range(40)]
    return Profile({}, sample_of(model, images))


def test_drift_is_measured_against_the_reference_and_shown_in_gauges(
    monitoring: Monitoring, session: InferenceSession, bundle: Path, metrics: ServingMetrics
) -> None:
    model, monitor = loaded(monitoring, session, bundle)
    monitor.reference = Reference("ready", "", red_profile(model))
    monitor.window.window.clear()
    sample_of(model, [encoded((100 + i, 20, 20), (20 + i % 9, 20)) for i in range(30)])
    report = monitor.refresh()
    assert report["state"] == "drift"
    assert "brightness_r" in report["drifting"]
    assert gauge(metrics, "visionyard_drift_detected") == 1
    p_value = gauge(metrics, "visionyard_drift_p_value", feature="brightness_r")
    assert p_value is not None
    assert p_value < 0.01
    assert gauge(metrics, "visionyard_drift_statistic", feature="brightness_r") == 1.0
    assert gauge(metrics, "visionyard_monitor_window_size") == 30
    red, black = (gauge(metrics, "visionyard_class_share", label=x) for x in ("red", "black"))
    assert red is not None
    assert black is not None
    assert red + black == pytest.approx(1.0)
    assert black > red  # dark reds are mostly taken for black: the class mix moved
    assert gauge(metrics, "visionyard_confidence_quantile", quantile="0.5") is not None
    monitoring.detach(model.monitor)  # the version leaves: its series go
    assert gauge(metrics, "visionyard_drift_detected") is None
    assert gauge(metrics, "visionyard_monitor_window_size") is None


def test_same_traffic_as_the_reference_is_ok(
    monitoring: Monitoring, session: InferenceSession, bundle: Path, metrics: ServingMetrics
) -> None:
    model, monitor = loaded(monitoring, session, bundle)
    monitor.reference = Reference("ready", "", red_profile(model))
    report = monitor.refresh()
    assert report["state"] == "ok"
    assert gauge(metrics, "visionyard_drift_detected") == 0


def test_report_without_profile_names_the_command_and_small_windows_are_not_drift(
    monitoring: Monitoring, session: InferenceSession, bundle: Path, metrics: ServingMetrics
) -> None:
    model, monitor = loaded(monitoring, session, bundle)
    monitor.load_reference(Resolved("1", bundle))
    serve(model, [MID])
    report = monitor.refresh()
    assert report["state"] == "no reference profile"
    assert "run visionyard monitor profile m/1 --data DIR" in report["message"]
    assert report["window"]["images"] == 1
    monitor.reference = Reference("ready", "", red_profile(model))
    monitor.window.window.clear()
    serve(model, [encoded((10, 10, 10))] * 3)
    report = monitor.refresh()
    assert report["state"] == "not enough data"
    assert report["message"] == "not enough data (n=3 < 10)"
    assert gauge(metrics, "visionyard_drift_detected") is None


def test_hard_images_are_offered_to_the_capture_writer(
    monitoring: Monitoring, session: InferenceSession, bundle: Path, tmp_path: Path
) -> None:
    model, _ = loaded(monitoring, session, bundle)
    monitoring.start()
    try:
        serve(model, [MID, encoded(COLOURS["red"])])
    finally:
        monitoring.close()
    kept = sorted(p.name for p in (tmp_path / "cap").rglob("*.*"))
    assert len(kept) == 2  # the mid colour (image + sidecar); the clear red is not hard
    assert kept[0].endswith("-0.jpg")


def test_image_every_samples_image_statistics_but_keeps_every_prediction(
    metrics: ServingMetrics, session: InferenceSession, bundle: Path
) -> None:
    sparse = Monitoring(MonitorSettings(image_every=2), metrics.monitor)
    model, monitor = loaded(sparse, session, bundle)
    for _ in range(4):
        serve(model, [MID])
    window = monitor.snapshot()[0]
    assert window.categorical["class"] == {"red": 4}
    assert window.continuous["brightness_r"].size == 2


def test_server_defaults_are_the_monitor_cores() -> None:
    settings = MonitorSettings()
    assert settings.alpha == DEFAULT_ALPHA
    assert settings.min_samples == DEFAULT_MIN_SAMPLES


def test_the_background_thread_refreshes_and_removes_a_left_versions_series(
    metrics: ServingMetrics, session: InferenceSession, bundle: Path
) -> None:
    running = Monitoring(MonitorSettings(compare_every_images=2), metrics.monitor)
    running.start()
    try:
        model, monitor = loaded(running, session, bundle)
        serve(model, [MID, MID])  # two images: a refresh is due
        for _ in range(300):  # a hang guard: the thread refreshes soon
            if gauge(metrics, "visionyard_monitor_window_size") == 2:
                break
            time.sleep(0.05)
        assert gauge(metrics, "visionyard_monitor_window_size") == 2
        assert monitor.reference.state == "none"  # it looked for the bundle's profile
        running.detach(model.monitor)
    finally:
        running.close()
    assert gauge(metrics, "visionyard_monitor_window_size") is None


def test_a_slow_drift_test_spaces_out_the_next_ones_within_the_compare_budget(
    metrics: ServingMetrics, session: InferenceSession, bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """At a high request rate `compare_every_images` alone would run drift tests back to back;
    after a test that took t seconds the next one waits t / compare_budget seconds."""
    settings = MonitorSettings(compare_every_images=2, compare_budget=0.05)
    running = Monitoring(settings, metrics.monitor)
    model, monitor = loaded(running, session, bundle)
    clock = iter([100.0, 100.5] + [101.0] * 10)  # the refresh below takes 0.5 s
    monkeypatch.setattr("visionyard.serving.monitoring.time.monotonic", lambda: next(clock))
    serve(model, [MID, MID])
    assert monitor.due(100.0)
    monitor.refresh()
    serve(model, [MID, MID, MID])  # more than compare_every_images again...
    assert not monitor.due(105.0)  # ...but 0.5 s / 0.05 = 10 s have not passed
    assert monitor.due(110.6)


def test_pixel_statistics_wait_for_a_batch_or_a_reading_and_keep_their_times(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> None:
    model, monitor = loaded(monitoring, session, bundle)
    before = time.time()
    serve(model, [encoded(COLOURS["red"]), encoded(COLOURS["blue"])])
    served = time.time()
    assert len(monitor.window.window) == 0  # waiting in the backlog, not computed yet
    time.sleep(0.3)
    sample, span = monitor.snapshot()  # reading the window completes them
    assert sample.images == 2
    assert sample.continuous["brightness_r"].tolist() == pytest.approx([254, 0], abs=2)
    assert span is not None
    assert before <= span[0] <= span[1] <= served  # when they were served, not when read
    for _ in range(PIXEL_BATCH):
        serve(model, [MID])
    assert len(monitor.window.window) == 2  # a batch waits: the monitor thread is woken for it
    assert monitoring._event.is_set()
    monitoring._tick()  # what the woken vy-monitor thread does
    assert len(monitor.window.window) == 2 + PIXEL_BATCH
    for _ in range(BEHIND_BATCHES * PIXEL_BATCH - 1):
        serve(model, [MID])
    assert len(monitor.window.window) == 2 + PIXEL_BATCH  # the thread is behind, still waiting
    serve(model, [MID])  # four batches wait: this worker computes them itself
    assert len(monitor.window.window) == 2 + PIXEL_BATCH + BEHIND_BATCHES * PIXEL_BATCH


def test_a_failing_pixel_batch_is_dropped_logged_once_and_refresh_still_reports(
    monitoring: Monitoring,
    session: InferenceSession,
    bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import visionyard.serving.monitoring as module

    model, monitor = loaded(monitoring, session, bundle)
    serve(model, [MID])

    def broken(items: object) -> list[Record]:
        raise ValueError("a bug in the pixel statistics")

    monkeypatch.setattr(module, "complete", broken)
    report = monitor.refresh()  # on the monitor thread in the server: must not raise
    assert report["window"]["images"] == 0
    assert "monitoring failed on a request" in caplog.text
    monkeypatch.undo()
    serve(model, [MID])
    assert monitor.refresh()["window"]["images"] == 1  # only the failed batch was lost


def test_the_running_monitor_thread_computes_a_full_backlog(
    monitoring: Monitoring, session: InferenceSession, bundle: Path
) -> None:
    model, monitor = loaded(monitoring, session, bundle)
    monitoring.start()
    try:
        deadline = time.monotonic() + 10
        while monitor.last is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread's first refresh (a new version) reads what waits:
        assert monitor.last is not None  # serving before it would have it take a part
        for _ in range(PIXEL_BATCH):
            serve(model, [MID])
        deadline = time.monotonic() + 10
        while len(monitor.window.window) < PIXEL_BATCH and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(monitor.window.window) == PIXEL_BATCH
        assert len(monitor.backlog) == 0
        if sys.platform.startswith("linux"):  # named for top -H and per-thread CPU readings
            names = {p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm")}
            assert "vy-monitor" in names
    finally:
        monitoring.close()
