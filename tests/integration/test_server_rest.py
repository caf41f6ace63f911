"""The OIP v2 REST API over a real socket: health, metadata, infer (JSON, binary, images)."""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.fixtures.runtime import COLOURS, write_colour_bundle, write_detector_bundle
from tests.fixtures.serving import ADMIN_TOKEN, bomb_png, encoded, server
from visionyard.serving.app import RunningServer
from visionyard.serving.sources import LocalBundleSource

RED, BLUE = COLOURS["red"], COLOURS["blue"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("rest")
    sources = {
        "colour": LocalBundleSource(write_colour_bundle(root / "colour").path, "3"),
        "det": LocalBundleSource(write_detector_bundle(root / "det").path),
    }
    with server(sources, max_body_bytes=2_000_000) as srv:
        yield srv


@pytest.fixture
def client(running: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.http_url, timeout=30) as http:
        yield http


def _images(*images: bytes) -> dict[str, object]:
    data = [base64.b64encode(i).decode() for i in images]
    params = {"content_type": "base64"}
    return {
        "name": "image",
        "datatype": "BYTES",
        "shape": [len(data)],
        "data": data,
        "parameters": params,
    }


def _outputs(body: dict[str, object]) -> dict[str, dict[str, object]]:
    return {o["name"]: o for o in body["outputs"]}  # type: ignore[attr-defined,index]


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2").json()
    assert meta["name"] == "visionyard"
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("path", ["/v2/models/colour", "/v2/models/colour/versions/3"])
def test_model_metadata_shows_tensors_and_contract(client: httpx.Client, path: str) -> None:
    meta = client.get(path).json()
    assert meta["versions"] == ["3"]
    assert meta["platform"] == "onnxruntime_onnx"
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["input"] == {"name": "input", "datatype": "FP32", "shape": [-1, 3, 8, 8]}
    assert inputs["image"]["datatype"] == "BYTES"
    assert {"logits", "top_labels", "top_scores"} <= {o["name"] for o in meta["outputs"]}
    assert meta["contract"]["labels"] == list(COLOURS)
    assert meta["parameters"]["contract_digest"].startswith("sha256:")


def test_a_local_bundles_server_path_is_not_shown_to_clients(
    running: RunningServer, client: httpx.Client
) -> None:
    where = str(running.server.pool.entry("colour").source.reference)
    assert where.startswith("/")  # served from an absolute path on the server
    meta = client.get("/v2/models/colour").json()["parameters"]
    config = client.get("/v2/models/colour/config").json()["parameters"]
    for shown in (meta["reference"], config["reference"]["string_value"]):
        assert shown == "…/colour"  # the folder's name: the layout above it stays private
    assert where not in client.get("/v2/models/colour").text
    info = [line for line in client.get("/metrics").text.splitlines()
            if line.startswith('visionyard_model_info{') and 'model="colour"' in line]  # fmt: skip
    assert info
    assert all('reference="…/colour"' in line for line in info)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/colour/ready", 200),
        ("/v2/models/colour/versions/3/ready", 200),
        ("/v2/models/colour/versions/9/ready", 503),
        ("/v2/models/nope/ready", 404),
        ("/v2/models/nope", 404),
        ("/v2/models/colour/versions/9", 404),
    ],
)
def test_model_ready_and_unknown(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    if status == 404:
        assert "not found" in response.json()["error"]


def test_infer_json_tensor(client: httpx.Client) -> None:
    tensor = np.zeros((2, 3, 8, 8), np.float32)
    tensor[0, 0] = 1.0  # red
    tensor[1, 2] = 1.0  # blue
    body = {
        "id": "r1",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [2, 3, 8, 8], "data": tensor.tolist()}
        ],
        "outputs": [{"name": "top_labels"}, {"name": "logits"}],
    }
    response = client.post("/v2/models/colour/infer", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["id"] == "r1"
    assert result["model_version"] == "3"
    outputs = _outputs(result)
    assert outputs["top_labels"]["shape"] == [2, 5]
    assert outputs["top_labels"]["data"][0] == "red"  # type: ignore[index]
    assert outputs["top_labels"]["data"][5] == "blue"  # type: ignore[index]
    assert outputs["logits"]["shape"] == [2, 5]


def test_infer_binary_tensors_in_and_out(client: httpx.Client) -> None:
    tensor = np.zeros((1, 3, 8, 8), np.float32)
    tensor[0, 1] = 1.0  # green
    raw = tensor.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 3, 8, 8],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [
                {"name": "logits", "parameters": {"binary_data": True}},
                {"name": "top_labels"},
            ],
        }
    ).encode()
    response = client.post(
        "/v2/models/colour/versions/3/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    result = json.loads(response.content[:length])
    outputs = _outputs(result)
    size = outputs["logits"]["parameters"]["binary_data_size"]  # type: ignore[index]
    logits = np.frombuffer(response.content[length : length + size], np.float32)
    assert int(logits.argmax()) == 1
    assert outputs["top_labels"]["data"][0] == "green"  # type: ignore[index]


def test_binary_bytes_images_and_triton_classification(client: httpx.Client) -> None:
    images = [encoded(RED), encoded(BLUE, fmt="PNG"), encoded(RED, fmt="WEBP")]
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [3],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"classification": 2}}],
        }
    ).encode()
    response = client.post(
        "/v2/models/colour/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    strings = _outputs(response.json())["logits"]
    assert strings["datatype"] == "BYTES"
    assert strings["shape"] == [3, 2]
    first = strings["data"][0].split(":")  # type: ignore[index]
    assert first[1:] == ["0", "red"]
    assert strings["data"][2].endswith(":2:blue")  # type: ignore[index]
    # Triton's value is the output tensor's own value (here a logit), not a probability
    body = {"inputs": [_images(images[0])], "outputs": [{"name": "logits"}]}
    logits = _outputs(client.post("/v2/models/colour/infer", json=body).json())["logits"]
    assert float(first[0]) == pytest.approx(max(logits["data"]), abs=1e-5)  # type: ignore[arg-type]
    # the parameter classification_probabilities keeps probabilities available
    probabilities = json.loads(header)
    probabilities["parameters"] = {"classification_probabilities": True}
    again = json.dumps(probabilities).encode()
    response = client.post(
        "/v2/models/colour/infer",
        content=again + raw,
        headers={"Inference-Header-Content-Length": str(len(again))},
    )
    top = _outputs(response.json())["logits"]["data"][0].split(":")  # type: ignore[index]
    assert top[1:] == ["0", "red"]
    assert 0.9 < float(top[0]) <= 1.0


def test_detection_boxes_in_original_coordinates(client: httpx.Client) -> None:
    image = encoded((90, 90, 90), size=(128, 96), fmt="PNG")  # letterboxed to 64x48 + pad 8
    response = client.post("/v2/models/det/infer", json={"inputs": [_images(image)]})
    assert response.status_code == 200, response.text
    outputs = _outputs(response.json())
    detections = json.loads(outputs["detections"]["data"][0])  # type: ignore[index]
    assert [d["label"] for d in detections] == ["cat", "dog"]
    assert detections[0]["box"] == pytest.approx([16.0, 0.0, 48.0, 32.0])
    assert outputs["num_detections"]["data"] == [2]


def test_predict_raw_body_and_multipart(client: httpx.Client) -> None:
    raw = client.post("/v1/models/colour:predict", content=encoded(BLUE))
    assert raw.status_code == 200, raw.text
    assert raw.json()["predictions"][0][0]["label"] == "blue"
    files = [
        ("a", ("a.jpg", encoded(RED), "image/jpeg")),
        ("b", ("b.png", encoded(BLUE, fmt="PNG"), "image/png")),
    ]
    multi = client.post("/v1/models/colour:predict", files=files)
    assert [p[0]["label"] for p in multi.json()["predictions"]] == ["red", "blue"]
    det = client.post("/v1/models/det:predict", content=encoded(RED, size=(64, 64)))
    assert det.json()["detections"][0][0]["box"] == pytest.approx([8.0, 8.0, 24.0, 24.0])


def _tensor_body(datatype: str, shape: list[int], data: list[float]) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "input", "datatype": datatype, "shape": shape, "data": data}]}
    ).encode()


def _image_body(*images: bytes) -> bytes:
    return json.dumps({"inputs": [_images(*images)]}).encode()


_BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 3, 8, 8],
                "parameters": {"binary_data_size": 768},
            }
        ]
    }
).encode()
_HEADER_LENGTH = {"Inference-Header-Content-Length": str(len(_BINARY_HEADER))}
BAD_REQUESTS = [
    ("malformed JSON", b"{not json", {}, 400, "not valid JSON"),
    ("not an object", b"[1, 2]", {}, 400, "JSON object"),
    ("no inputs", b'{"inputs": []}', {}, 400, "non-empty"),
    ("wrong datatype", _tensor_body("INT32", [1, 3, 8, 8], [0] * 192), {}, 400, "datatype INT32"),
    ("wrong shape", _tensor_body("FP32", [1, 3, 4, 4], [0.0] * 48), {}, 400, "[N, 3, 8, 8]"),
    ("element count", _tensor_body("FP32", [1, 3, 8, 8], [0.0] * 5), {}, 400, "5 elements"),
    (
        "unknown input",
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0]}]}',
        {},
        400,
        "exactly one input",
    ),
    (
        "unknown output",
        json.dumps({"inputs": [_images(encoded(RED))], "outputs": [{"name": "nope"}]}).encode(),
        {},
        400,
        "unknown output",
    ),
    ("binary too short", _BINARY_HEADER + b"\0" * 10, _HEADER_LENGTH, 400, "only 10 remain"),
    ("binary too long", _BINARY_HEADER + b"\0" * 800, _HEADER_LENGTH, 400, "800 follow"),
    (
        "header length too big",
        b"{}",
        {"Inference-Header-Content-Length": "99"},
        400,
        "does not fit",
    ),
    ("corrupt image", _image_body(b"\xff\xd8\xff garbage"), {}, 400, "image 0"),
    ("truncated image", _image_body(encoded(RED, (200, 200))[:300]), {}, 400, "image 0"),
    ("zero-byte image", _image_body(b""), {}, 400, "empty"),
    ("bomb image", _image_body(bomb_png()), {}, 413, "exceeds the limit"),
]


@pytest.mark.parametrize(
    ("why", "body", "headers", "status", "needle"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_get_a_clear_4xx(
    client: httpx.Client, why: str, body: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    response = client.post("/v2/models/colour/infer", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200  # still serving


def test_unknown_model_or_version_is_404(client: httpx.Client) -> None:
    body = {"inputs": [_images(encoded(RED))]}
    assert client.post("/v2/models/nope/infer", json=body).status_code == 404
    assert client.post("/v2/models/colour/versions/7/infer", json=body).status_code == 404


def test_oversized_body_is_413(client: httpx.Client) -> None:
    big = b"x" * 2_100_000
    assert client.post("/v2/models/colour/infer", content=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streaming check answers
        for _ in range(30):
            yield b"y" * 100_000

    assert client.post("/v2/models/colour/infer", content=chunks()).status_code == 413

    def upload() -> Iterator[bytes]:  # a multipart upload streamed past the limit
        yield b'--b\r\nContent-Disposition: form-data; name="f"; filename="x.jpg"\r\n\r\n'
        yield from chunks()

    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    answer = client.post("/v1/models/colour:predict", content=upload(), headers=headers)
    assert answer.status_code == 413
    assert client.get("/v2/health/live").status_code == 200


def test_bad_image_names_its_index(client: httpx.Client) -> None:
    body = {"inputs": [_images(encoded(RED), b"not an image")]}
    response = client.post("/v2/models/colour/infer", json=body)
    assert response.status_code == 400
    assert "image 1" in response.json()["error"]


def test_request_id_header_and_access_log(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="visionyard.access"):
        response = client.get("/v2/models/colour", headers={"X-Request-ID": "req-42"})
        generated = client.get("/v2/health/live")
    assert response.headers["x-request-id"] == "req-42"
    assert len(generated.headers["x-request-id"]) == 32
    fields = [getattr(r, "fields", {}) for r in caplog.records]
    mine = [f for f in fields if f.get("request_id") == "req-42"]
    assert mine
    assert mine[0]["status"] == 200
    assert mine[0]["path"] == "/v2/models/colour"


def test_metrics_count_requests_and_show_versions(client: httpx.Client) -> None:
    client.post("/v1/models/colour:predict", content=encoded(RED))
    client.post("/v2/models/colour/infer", content=b"{bad")
    text = client.get("/metrics").text
    assert (
        'visionyard_requests_total{model="colour",protocol="rest",status="ok",version="3"}' in text
    )
    assert 'status="inference.invalid_input"' in text
    assert (
        'visionyard_request_duration_seconds_bucket{le="0.005",model="colour",protocol="rest",'
        'stage="inference",version="3"}' in text
    )
    assert 'visionyard_model_info{model="colour",reference=' in text
    assert "visionyard_batch_size_count" in text
    assert 'visionyard_queue_depth{model="colour"} 0.0' in text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 200),
    ],
)
def test_admin_calls_need_the_token(
    client: httpx.Client, headers: dict[str, str], status: int
) -> None:
    response = client.post("/v2/repository/index", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert {row["name"] for row in response.json()} == {"colour", "det"}
    else:
        assert response.headers["www-authenticate"] == "Bearer"


def test_admin_load_keeps_serving(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.post("/v2/repository/models/colour/load", headers=auth)
    assert response.status_code == 200
    assert response.json()["state"] == "READY"
    assert response.json()["swapped"] is False
    assert client.post("/admin/reload", headers=auth).json()["det"]["version"] == "1"
