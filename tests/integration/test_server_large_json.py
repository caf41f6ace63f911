"""Large JSON infer bodies: refused early when larger than the model's largest batch, parsed
off the event loop otherwise, so that health and other requests stay responsive (issue 16/4)."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.runtime import colour_classifier_onnx, colour_contract, write_colour_bundle
from tests.fixtures.serving import serving_settings
from visionyard.serving.app import RunningServer, running_server
from visionyard.serving.sources import LocalBundleSource

SIZE = 224  # an ImageNet-sized input: a batch of 8 is ~24 MB of JSON numbers


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("large")
    big = write_colour_bundle(
        root / "big", model=colour_classifier_onnx(size=SIZE), contract=colour_contract(size=SIZE)
    )
    sources = {
        "big": LocalBundleSource(big.path),
        "small": LocalBundleSource(write_colour_bundle(root / "small").path),
    }
    settings = serving_settings()
    settings.images.max_bytes = 10_000  # so that the tensor input bounds the small model
    with running_server(settings, sources) as srv:
        yield srv


def _body(batch: int, size: int, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)
    tensor = {"name": "input", "datatype": "FP32", "shape": list(data.shape), "data": data.tolist()}
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "top_labels"}]}).encode()


def test_json_larger_than_the_largest_batch_is_413_before_it_is_read(
    running: RunningServer,
) -> None:
    body = _body(500, 8)  # 500 images of 3x8x8; the model takes at most 64 per request
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        response = client.post("/v2/models/small/infer", content=body)
        assert response.status_code == 413, response.text
        assert "model 'small' takes at most" in response.json()["error"]
        assert response.headers["connection"] == "close"
        metrics = client.get("/metrics").text
    assert 'model="small",protocol="rest",status="serving.body_too_large"' in metrics


def test_a_tensor_batch_above_the_limit_is_400(running: RunningServer) -> None:
    body = _body(65, 8)  # small enough in bytes, one image too many
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        response = client.post("/v2/models/small/infer", content=body)
    assert response.status_code == 400, response.text
    assert "65 images in one request; send 1 to 64" in response.json()["error"]


def _rss_mb() -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _poll_health(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        client.get("/v2/health/live")  # connect once, outside the measurement
        while not stop.is_set():
            started = time.perf_counter()
            assert client.get("/v2/health/live").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)


def _infer(url: str, body: bytes, statuses: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        statuses.append(client.post("/v2/models/big/infer", content=body).status_code)


@pytest.mark.slow
def test_health_stays_fast_while_large_json_requests_run(running: RunningServer) -> None:
    body = _body(8, SIZE)
    assert len(body) > 20_000_000
    small = _body(1, 8)
    with httpx.Client(base_url=running.http_url, timeout=60) as client:  # warm the parser
        assert client.post("/v2/models/small/infer", content=small).status_code == 200
        client.post("/v2/models/big/infer", content=_body(1, SIZE))
    rss_before = _rss_mb()
    stop, latencies, statuses = threading.Event(), list[float](), list[int]()
    poller = threading.Thread(target=_poll_health, args=(running.http_url, stop, latencies))
    poller.start()
    senders = [
        threading.Thread(target=_infer, args=(running.http_url, body, statuses)) for _ in range(3)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(300)
    stop.set()
    poller.join(30)
    assert statuses == [200, 200, 200]
    assert len(latencies) > 20
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 0.050, f"p99 of /v2/health/live was {p99 * 1000:.1f} ms"
    assert _rss_mb() - rss_before < 200, "server memory did not come back after the requests"
