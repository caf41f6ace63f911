"""Pieces of ``/ui`` without a server: which capture files may be served, latency figures from
histogram buckets, and a page that escapes what clients and models put in it."""

from __future__ import annotations

import math
from pathlib import Path

from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.rest import ui_page
from visionyard.serving.rest.ui import Figures, capture_file, gallery
from visionyard.serving.types import Timings


def folder(tmp_path: Path) -> Path:
    root = tmp_path / "captures"
    day = root / "m" / "1" / "20260101"
    day.mkdir(parents=True)
    (day / "a-0.jpg").write_bytes(b"\xff\xd8jpeg")
    (day / "a-0.json").write_text('{"file": "a-0.jpg", "time": "2026-01-01T00:00:00+00:00"}')
    (day / "b-0.png").write_bytes(b"png")
    (day / "b-0.json").write_text('{"file": "b-0.png", "time": "2026-01-01T00:00:09+00:00"}')
    (day / ".c-0.png.tmp").write_bytes(b"half")
    (tmp_path / "outside.png").write_bytes(b"secret")
    (day / "link.png").symlink_to(tmp_path / "outside.png")
    return root


def test_only_image_files_inside_the_folder_are_served(tmp_path: Path) -> None:
    root = folder(tmp_path)
    assert capture_file(root, "m/1/20260101/a-0.jpg") == (root / "m/1/20260101/a-0.jpg").resolve()
    for bad in ("../outside.png", "m/1/20260101/link.png", "m/1/20260101/a-0.json",
                "m/1/20260101/.c-0.png.tmp", "m/1", "", "m/\0.png", "/etc/passwd",
                f"{tmp_path}/outside.png", "m/1/20260101/none.png"):  # fmt: skip
        assert capture_file(root, bad) is None, bad
    assert capture_file(None, "m/1/20260101/a-0.jpg") is None
    assert capture_file(tmp_path / "missing", "a.png") is None


def test_gallery_lists_complete_captures_newest_first(tmp_path: Path) -> None:
    items = gallery(folder(tmp_path))
    assert [item["file"] for item in items] == ["b-0.png", "a-0.jpg"]
    assert items[0]["src"] == "/ui/captures/m/1/20260101/b-0.png"
    assert gallery(tmp_path / "not-yet") == []
    assert len(gallery(folder(tmp_path / "again"), limit=1)) == 1


def test_figures_from_the_server_metrics() -> None:
    metrics = ServingMetrics()
    for seconds in [0.004] * 98 + [0.2, 9.0]:
        metrics.observe_timings("m", "1", "rest", Timings(0, 0, 0), seconds)
    for _ in range(3):
        metrics.observe("m", "1", "rest", "ok")
    metrics.observe("m", "1", "grpc", "image.invalid")
    figures = Figures.of(metrics)
    assert figures.requests("m") == {"ok": 3, "errors": 1}
    latency = figures.latency("m")
    assert latency["count"] == 100
    assert latency["p50_ms"] == 5.0  # the bucket holding the median: (2.5, 5] ms
    assert latency["p99_ms"] == 250.0
    assert latency["mean_ms"] is not None
    assert math.isclose(latency["mean_ms"], (0.004 * 98 + 9.2) * 10, rel_tol=1e-6)
    assert Figures.of(metrics).latency("other") == {"count": 0, "mean_ms": None,
                                                     "p50_ms": None, "p99_ms": None}  # fmt: skip


def test_page_escapes_names_labels_and_messages() -> None:
    evil = "<img src=x onerror=alert(1)>"
    model = {
        "name": evil, "reference": evil, "state": "ready", "error": "", "version": "1",
        "requests": {"ok": 1, "errors": 0},
        "latency": {"count": 1, "mean_ms": 1.0, "p50_ms": 1.0, "p99_ms": math.inf},
        "monitor": {"state": "drift", "verdict": "drift", "message": evil, "features": []},
    }  # fmt: skip
    item = {"src": "/ui/captures/m/1/d/x.png", "predicted": evil, "reasons": ["low_confidence"],
            "model": "m", "version": "1", "time": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    page = ui_page.render({"models": [model], "gallery": [item], "captures": "/tmp/c"})
    assert evil not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&gt; 5 s" in page
    assert page.count("<img") == 1


def test_page_says_when_capture_is_off_or_empty() -> None:
    assert "capture is off" in ui_page.render({"models": [], "gallery": [], "captures": None})
    empty = ui_page.render({"models": [], "gallery": [], "captures": "/c"})
    assert "no captured images yet in /c" in empty
