"""Monitoring through what an operator touches: a real server on loopback whose bundle carries a
reference profile (listed in its manifest, so checked with it), darkened traffic, ``/metrics``,
``GET /v2/models/m/monitor``, the captured hard images with their sidecars, and
``visionyard data capture list | export`` on them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.cli import Capture, run
from tests.fixtures.runtime import (
    COLOURS,
    colour_classifier_onnx,
    colour_contract,
    flat_png,
    write_colour_bundle,
)
from tests.fixtures.serving import ADMIN_TOKEN, encoded, serving_settings
from visionyard.bundle.store import write_bundle
from visionyard.monitor import build_profile, image_files, save_profile
from visionyard.runtime.session import InferenceSession
from visionyard.serving.app import RunningServer, running_server
from visionyard.serving.reference import BUNDLE_PROFILE
from visionyard.serving.sources import LocalBundleSource

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DARK = 30  # images sent, each a darkened red: most are taken for black, some are hard


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("monitoring")
    first = write_colour_bundle(root / "first").path
    for name in ("red", "green", "blue"):
        (root / "val" / name).mkdir(parents=True)
        for i in range(20):
            data = flat_png(COLOURS[name], (16 + i % 7, 12 + i % 5))
            (root / "val" / name / f"{i}.png").write_bytes(data)
    session = InferenceSession.open(first)
    profile = build_profile(session, image_files(root / "val"), root=root / "val")
    save_profile(profile, root / "profile")
    carried = {f"{BUNDLE_PROFILE.as_posix()}/{p.name}": p for p in (root / "profile").iterdir()}
    model = colour_classifier_onnx()
    bundle = write_bundle(
        root / "bundle", model=model, contract=colour_contract(), extra_files=carried
    ).path
    return {"bundle": bundle, "captures": root / "captures", "root": root}


@pytest.fixture(scope="module")
def running(folders: dict[str, Path]) -> Iterator[RunningServer]:
    settings = serving_settings().model_copy(deep=True)
    monitor = {
        "min_samples": 20, "compare_every_images": 10,
        "capture": {"dir": folders["captures"], "min_confidence": 0.6, "max_margin": 0.05},
    }  # fmt: skip
    settings = settings.model_validate({**settings.model_dump(), "monitor": monitor})
    with running_server(settings, {"m": LocalBundleSource(folders["bundle"])}) as srv:
        with httpx.Client(base_url=srv.http_url, timeout=30) as http:
            for i in range(DARK):
                image = encoded((90 + 2 * i, 25, 25), (20 + i % 9, 16))
                headers = {"X-Request-ID": f"dark-{i}"}
                answer = http.post("/v1/models/m:predict", content=image, headers=headers)
                assert answer.status_code == 200
        yield srv


def report(running: RunningServer) -> dict[str, Any]:
    """The monitor endpoint's answer once the reference profile has loaded (bounded wait)."""
    with httpx.Client(base_url=running.http_url, timeout=30, headers=AUTH) as http:
        for _ in range(100):
            body: dict[str, Any] = http.get("/v2/models/m/monitor").json()
            if body["reference"]["state"] != "loading":
                return body
            time.sleep(0.1)
    return body


def test_monitor_endpoint_shows_drift_against_the_bundle_profile(running: RunningServer) -> None:
    body = report(running)
    assert body["reference"] == {"state": "ready", "message": "", "images": 60}
    assert body["window"]["images"] == DARK
    assert body["window"]["span_s"] >= 0
    assert body["state"] == "drift"
    features = {row["feature"]: row for row in body["features"]}
    assert features["brightness_r"]["verdict"] == "drift"
    assert features["embedding"]["verdict"] == "skipped"  # the colour model has no embedding


def test_monitor_endpoint_is_an_admin_route(running: RunningServer) -> None:
    answer = httpx.get(f"{running.http_url}/v2/models/m/monitor", timeout=30)
    assert answer.status_code == 401
    missing = httpx.get(f"{running.http_url}/v2/models/nope/monitor", headers=AUTH, timeout=30)
    assert missing.status_code == 404


def test_the_live_window_can_be_saved_and_read_back(running: RunningServer) -> None:
    from visionyard.monitor.saved_window import read_window

    url = f"{running.http_url}/v2/models/m/monitor/window"
    assert httpx.get(url, timeout=30).status_code == 401
    answer = httpx.get(url, headers=AUTH, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert 'filename="m-1-window.npz"' in answer.headers["content-disposition"]
    saved = read_window(answer.content, "the answer")
    assert (saved.model, saved.version, saved.sample.images) == ("m", "1", DARK)
    assert len(saved.sample.continuous["brightness_r"]) == DARK
    assert sum(saved.sample.categorical["class"].values()) == DARK
    assert saved.meta["span"][0] <= saved.meta["span"][1]


def test_metrics_carry_the_drift_gauges(running: RunningServer) -> None:
    report(running)  # compares now: the gauges hold this comparison
    text = httpx.get(f"{running.http_url}/metrics", timeout=30).text
    assert 'visionyard_drift_detected{model="m",version="1"} 1.0' in text
    assert f'visionyard_monitor_window_size{{model="m",version="1"}} {DARK}.0' in text
    assert 'visionyard_drift_p_value{feature="brightness_r",model="m",version="1"}' in text
    assert 'visionyard_confidence_quantile{model="m",quantile="0.9",version="1"}' in text
    assert 'visionyard_class_share{label="black",model="m",version="1"}' in text


def captured_sidecars(folder: Path) -> list[dict[str, Any]]:
    """The sidecars the writer has written (it runs on its own thread: bounded wait)."""
    found: list[dict[str, Any]] = []
    for _ in range(100):
        found = [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]
        if found:
            time.sleep(0.2)  # let the writer finish the rest of its queue
            return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]
        time.sleep(0.1)
    return found


def test_hard_images_are_captured_and_exported_as_a_dataset(
    running: RunningServer, folders: dict[str, Path], capsys: Capture
) -> None:
    sidecars = captured_sidecars(folders["captures"])
    assert sidecars, "no low-confidence image was captured"
    for meta in sidecars:
        assert meta["request_id"].startswith("dark-")
        assert meta["confidence"] < 0.6 or meta["margin"] < 0.05
        image = next(folders["captures"].rglob(meta["file"]))
        assert image.read_bytes()[:2] == b"\xff\xd8"  # the request's own JPEG bytes
    code, out, _ = run(capsys, "data", "capture", "list", folders["captures"])
    assert code == 0
    assert f"{len(sidecars)}" in out
    dataset = folders["root"] / "dataset"
    code, out, err = run(
        capsys, "data", "capture", "export", folders["captures"], "--model", "m", "--out", dataset
    )
    assert code == 0, err
    assert "digest: sha256:" in out
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert len(manifest["entries"]) == len(sidecars)
