"""KServe v1 on ``:predict`` over a real socket: ``{"instances": [...]}`` in, ``{"predictions":
[...]}`` out, big bodies parsed off the event loop, every wrong shape one clear 400."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fixtures.runtime import COLOURS, write_colour_bundle, write_detector_bundle
from tests.fixtures.serving import encoded, server
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

RED, BLUE = COLOURS["red"], COLOURS["blue"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("kserve")
    sources = {
        "colour": LocalBundleSource(write_colour_bundle(root / "colour").path, "3"),
        "det": LocalBundleSource(write_detector_bundle(root / "det").path),
    }
    srv: RunningServer
    with (
        server(sources, max_body_bytes=2_000_000) as srv,
        httpx.Client(base_url=srv.http_url, timeout=30) as http,
    ):
        yield http


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode()


def test_predict_kserve_v1_instances_get_predictions(client: httpx.Client) -> None:
    """KServe v1: a JSON ``{"instances": [...]}`` body (content-type decides) answers
    ``{"predictions": [...]}`` in order; images as ``{"b64"}`` or under ``image_bytes``."""
    instances = [{"b64": _b64(encoded(RED))}, {"image_bytes": {"b64": _b64(encoded(BLUE))}}]
    answer = client.post("/v1/models/colour:predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p[0]["label"] for p in body["predictions"]] == ["red", "blue"]
    assert body["model_version"] == "3"
    det = client.post(
        "/v1/models/det:predict", json={"instances": [{"b64": _b64(encoded(RED, (64, 64)))}]}
    )
    assert det.json()["predictions"][0][0]["box"] == pytest.approx([8.0, 8.0, 24.0, 24.0])


def test_predict_kserve_v1_big_body_is_parsed_off_the_loop(client: httpx.Client) -> None:
    """Above 256 KB the body is parsed in the helper process: same answers, same errors."""
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 256 * 1024
    instances = [{"b64": _b64(buffer.getvalue())}, {"b64": _b64(encoded(BLUE))}]
    answer = client.post("/v1/models/colour:predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    assert answer.json()["predictions"][1][0]["label"] == "blue"
    bad = client.post("/v1/models/colour:predict", json={"instances": [{"b64": "!" * 300_000}]})
    assert bad.status_code == 400
    assert "instance 0: invalid base64" in bad.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b'{"inputs": []}', "no instances"),
        (b'{"instances": {"b64": "AA=="}}', "instances is not a non-empty list"),
        (b'{"instances": []}', "instances is not a non-empty list"),
        (b'{"instances": [{"key": 1}]}', "instance 0 holds no image"),
        (b'{"instances": [{"b64": "not base64!"}]}', "instance 0: invalid base64"),
        (json.dumps({"instances": [{"b64": "AA=="}] * 65}).encode(), "65 instances"),
    ],
)
def test_predict_kserve_v1_wrong_shape_is_one_clear_400(
    client: httpx.Client, body: bytes, says: str
) -> None:
    answer = client.post(
        "/v1/models/colour:predict", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert answer.json()["code"] == "inference.invalid_input"
