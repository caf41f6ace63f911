"""A detector trained here, served: tritonclient (HTTP and gRPC) reads its typed outputs and its
JSON detections, in the original pixels of images of different sizes, equal to the in-process
answers; a dynamic batch of differently sized images answers each as it would alone."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fixtures.models import TrainedBundle
from tests.fixtures.serving import server
from visionyard.bundle.store import load_bundle
from visionyard.contract.postprocess import Detection
from visionyard.runtime.session import InferenceSession
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

SCRIPT = Path(__file__).with_name("triton_detection_check.py")
SIZES = ((64, 64), (160, 96), (50, 130), (97, 61))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, trained_detector: TrainedBundle) -> list[Path]:
    """Synthetic shapes pasted onto canvases of different sizes and aspect ratios."""
    from visionyard.data.synth import make_detection_set

    folder = tmp_path_factory.mktemp("sizes")
    source = make_detection_set(folder / "coco", seed=23, n_images=len(SIZES))
    paths = []
    for i, (width, height) in enumerate(SIZES):
        shapes = Image.open(source / "images" / f"{i:05d}.png").convert("RGB")
        scaled = shapes.resize((min(width, height), min(width, height)))
        canvas = Image.new("RGB", (width, height), (90, 90, 90))
        canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
        paths.append(folder / f"{width}x{height}.png")
        canvas.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def local(trained_detector: TrainedBundle) -> InferenceSession:
    return InferenceSession.from_bundle(load_bundle(trained_detector.bundle_path))


@pytest.fixture(scope="module")
def running(trained_detector: TrainedBundle) -> Iterator[RunningServer]:
    sources = {"det": LocalBundleSource(trained_detector.bundle_path)}
    with server(sources, max_batch_size=8, max_queue_delay_ms=50.0) as srv:
        yield srv


def _same(found: list[dict[str, object]], expected: list[Detection]) -> None:
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        assert got["label"] == want.label
        np.testing.assert_allclose(got["box"], want.box, atol=2e-3)  # type: ignore[arg-type]
        assert got["score"] == pytest.approx(want.score, abs=1e-5)


def test_tritonclient_reads_typed_and_json_detections_in_original_pixels(
    running: RunningServer, images: list[Path], local: InferenceSession
) -> None:
    expected = local.detect(images)
    assert any(expected), "the tiny detector finds nothing: the comparison would be empty"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), running.http_url.removeprefix("http://"),
         running.grpc_target, "det", *map(str, images)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["protocol"] for a in answers] == ["http", "grpc"]
    for answer in answers:
        assert answer["num_detections"] == [len(e) for e in expected]
        width = max(len(e) for e in expected)
        assert np.array(answer["boxes"]).shape == (len(images), width, 4)
        for i, want in enumerate(expected):
            _same(answer["detections"][i], want)
            count = len(want)
            np.testing.assert_allclose(answer["boxes"][i][:count], [d.box for d in want],
                                       atol=2e-3)  # fmt: skip
            assert answer["classes"][i][:count] == [d.index for d in want]
            assert answer["classes"][i][count:] == [-1] * (width - count)  # padding
        for (width_px, height_px), found in zip(SIZES, answer["detections"], strict=True):
            for det in found:
                x1, y1, x2, y2 = det["box"]
                assert 0 <= x1 <= x2 <= width_px
                assert 0 <= y1 <= y2 <= height_px


def test_a_dynamic_batch_of_different_sizes_answers_each_as_alone(
    running: RunningServer, images: list[Path], local: InferenceSession
) -> None:
    alone = [local.detect([path])[0] for path in images]
    bodies = [path.read_bytes() for path in images] * 6

    def predict(body: bytes) -> list[dict[str, object]]:
        with httpx.Client(base_url=running.http_url, timeout=30) as client:
            response = client.post("/v1/models/det:predict", content=body)
            assert response.status_code == 200, response.text
            found: list[dict[str, object]] = response.json()["detections"][0]
            return found

    before = _batches(running)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(predict, bodies))
    for i, found in enumerate(answers):
        _same(found, alone[i % len(images)])
    count, images_seen = (a - b for a, b in zip(_batches(running), before, strict=True))
    assert images_seen == len(bodies)
    assert count < len(bodies)  # some requests shared a batch


def _batches(running: RunningServer) -> tuple[float, float]:
    """(executed batches, images in them) of the batch-size histogram on /metrics."""
    text = httpx.get(f"{running.http_url}/metrics", timeout=10).text
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith('visionyard_batch_size_count{model="det"}'):
            count = float(line.split()[-1])
        if line.startswith('visionyard_batch_size_sum{model="det"}'):
            total = float(line.split()[-1])
    return count, total


def test_an_image_with_no_objects_is_an_empty_answer_not_an_error(
    running: RunningServer, local: InferenceSession, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 80), (90, 90, 90)).save(blank)
    assert local.detect([blank]) == [[]]  # the detector sees nothing on a flat grey image
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        response = client.post("/v1/models/det:predict", content=blank.read_bytes())
        assert response.status_code == 200, response.text
        assert response.json()["detections"] == [[]]
        image = base64.b64encode(blank.read_bytes()).decode()
        tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [image],
                  "parameters": {"content_type": "base64"}}  # fmt: skip
        wanted = [{"name": "num_detections"}, {"name": "detections"}]
        body = {"inputs": [tensor], "outputs": wanted}
        typed = client.post("/v2/models/det/infer", json=body)
        assert typed.status_code == 200, typed.text
        outputs = {o["name"]: o["data"] for o in typed.json()["outputs"]}
        assert outputs["num_detections"] == [0]
        assert json.loads(outputs["detections"][0]) == []
