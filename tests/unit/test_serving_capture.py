"""The capture writer: quota, rate limit, drops counted, an unwritable folder logged once, and a
request-path call that returns even while the writer is stuck; the captures folder listed and
exported as a dataset with a manifest."""

from __future__ import annotations

import json
import logging
import random
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.fixtures.serving import encoded
from visionyard.data.captures import export_captures, iter_captures, summarize
from visionyard.data.manifest import DatasetManifest
from visionyard.errors import DatasetError
from visionyard.serving.capture import CaptureJob, CapturePolicy, CaptureWriter, write_capture
from visionyard.serving.metrics import ServingMetrics
from visionyard.settings import CaptureSettings

JPEG = encoded((200, 10, 10))


def job(index: int = 0, *, label: str = "red", when: datetime | None = None) -> CaptureJob:
    answer = {"predicted": label, "top_k": [{"label": label, "score": 0.4}], "confidence": 0.4}
    return CaptureJob(
        "m", "3", f"req-{index}", 0, JPEG, "jpeg", ("low_confidence",), answer,
        when or datetime(2026, 5, 17, 12, 0, tzinfo=UTC),
    )  # fmt: skip


def dropped(metrics: ServingMetrics, reason: str) -> float:
    labels = {"model": "m", "reason": reason}
    return metrics.registry.get_sample_value("visionyard_capture_dropped_total", labels) or 0.0


def captured(metrics: ServingMetrics) -> float:
    labels = {"model": "m"}
    return metrics.registry.get_sample_value("visionyard_captured_total", labels) or 0.0


def writer(root: Path, metrics: ServingMetrics, **overrides: object) -> CaptureWriter:
    settings = CaptureSettings.model_validate({"dir": root, **overrides})
    return CaptureWriter(settings, metrics.monitor)


def test_written_image_and_sidecar_form_a_day_folder(tmp_path: Path) -> None:
    metrics = ServingMetrics()
    w = writer(tmp_path, metrics)
    w.start()
    assert w.offer(job(1))
    w.close()
    folder = tmp_path / "m" / "3" / "20260517"
    assert (folder / "req-1-0.jpg").read_bytes() == JPEG
    sidecar = json.loads((folder / "req-1-0.json").read_text())
    assert sidecar["request_id"] == "req-1"
    assert sidecar["reasons"] == ["low_confidence"]
    assert sidecar["predicted"] == "red"
    assert sidecar["time"].startswith("2026-05-17T12:00")
    assert captured(metrics) == 1


def test_quota_drops_what_does_not_fit(tmp_path: Path) -> None:
    metrics = ServingMetrics()
    (tmp_path / "old.bin").write_bytes(b"x" * 100)  # already there: counts against the quota
    w = writer(tmp_path, metrics, max_bytes=100 + len(JPEG) + 200)
    w.start()
    for i in range(4):
        w.offer(job(i))
    w.close()
    assert captured(metrics) == 1  # the first fits; with its sidecar, no second one does
    assert dropped(metrics, "quota") == 3
    assert len(list(tmp_path.glob("m/3/*/*.jpg"))) == 1


def test_rate_limit_drops_beyond_the_minute_and_refills() -> None:
    metrics = ServingMetrics()
    now = [0.0]
    settings = CaptureSettings.model_validate({"dir": "/nonexistent", "max_per_minute": 2})
    w = CaptureWriter(settings, metrics.monitor, write=lambda root, j: 0, clock=lambda: now[0])
    assert [w.offer(job(i)) for i in range(3)] == [True, True, False]
    assert dropped(metrics, "rate_limit") == 1
    now[0] = 30.0  # half a minute: one more
    assert w.offer(job(9))
    assert not w.offer(job(10))


def test_offer_returns_while_the_writer_is_stuck() -> None:
    metrics = ServingMetrics()
    entered, release = threading.Event(), threading.Event()

    def stuck(root: Path, item: CaptureJob) -> int:
        entered.set()
        release.wait(30)
        return 0

    settings = CaptureSettings.model_validate({"dir": "/nonexistent", "queue_size": 1})
    w = CaptureWriter(settings, metrics.monitor, write=stuck)
    w.start()
    assert w.offer(job(0))
    assert entered.wait(30)  # the writer holds job 0 and does not come back
    answers: list[bool] = []
    caller = threading.Thread(target=lambda: answers.extend(w.offer(job(i)) for i in (1, 2, 3)))
    caller.start()
    caller.join(30)  # a hang guard, not a timing assertion
    assert not caller.is_alive()
    assert answers == [True, False, False]  # one fits the queue, the rest are dropped
    assert dropped(metrics, "queue_full") == 2
    release.set()
    w.close()


def test_unwritable_folder_drops_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the capture folder should be")
    metrics = ServingMetrics()
    w = writer(blocker, metrics)
    w.start()
    with caplog.at_level(logging.ERROR, logger="visionyard.serving"):
        for i in range(5):
            assert w.offer(job(i))  # accepted: the failure happens on the writer thread
        w.close()
    assert dropped(metrics, "write_error") == 5
    errors = [r for r in caplog.records if "cannot write captures" in r.getMessage()]
    assert len(errors) == 1


def test_policy_names_each_reason() -> None:
    policy = CapturePolicy(
        CaptureSettings(min_confidence=0.6, max_margin=0.2, sample_rate=0.0), random.Random(0)
    )
    assert policy.reasons(0.5, 0.1) == ("low_confidence", "low_margin")
    assert policy.reasons(0.9, 0.8) == ()
    assert policy.reasons(None, None) == ()
    everything = CapturePolicy(CaptureSettings(sample_rate=1.0), random.Random(0))
    assert everything.reasons(0.99, 0.9) == ("sampled",)


@pytest.fixture
def captures(tmp_path: Path) -> Path:
    root = tmp_path / "captures"
    for i, label in enumerate(("red", "red", "blue")):
        write_capture(root, job(i, label=label))
    write_capture(root, job(7, when=datetime(2026, 5, 20, tzinfo=UTC)))
    (root / "m" / "3" / "20260517" / "half.json").write_text("{")  # not a capture: skipped
    return root


def test_list_summarizes_per_model_version_and_day(captures: Path) -> None:
    rows = summarize(iter_captures(captures))
    assert [(r.day, r.count) for r in rows] == [("20260517", 3), ("20260520", 1)]
    assert rows[0].reasons == {"low_confidence": 3}
    assert rows[0].bytes == 3 * len(JPEG)
    assert [c.day for c in iter_captures(captures, since=date(2026, 5, 18))] == ["20260520"]


def test_export_makes_an_imagefolder_with_a_manifest(captures: Path, tmp_path: Path) -> None:
    built = export_captures(iter_captures(captures, model="m"), tmp_path / "ds")
    assert built.labels == ("blue", "red")
    assert len(built) == 4
    saved = DatasetManifest.load(tmp_path / "ds" / "manifest.json")
    assert saved.digest == built.digest
    lines = (tmp_path / "ds" / "captures.jsonl").read_text().splitlines()
    assert {json.loads(line)["path"].split("/")[0] for line in lines} == {"red", "blue"}
    flat = export_captures(iter_captures(captures), tmp_path / "flat", layout="unlabelled")
    assert flat.labels == ("unlabelled",)


def test_export_refuses_nothing_to_export_and_a_full_folder(captures: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no captures match"):
        export_captures(iter_captures(captures, model="other"), tmp_path / "none")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        export_captures(iter_captures(captures), tmp_path / "busy")
