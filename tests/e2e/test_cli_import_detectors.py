"""End to end through the CLI: ``visionyard import`` of ONNX detectors whose outputs follow the
layouts of popular toolkits (the raw YOLOv8 tensor, TensorRT EfficientNMS-style post-NMS
outputs), detected from the output shapes, then served with boxes in ORIGINAL image pixels; and
a model whose outputs fit no layout refused with one line naming its shapes.

The detectors (:mod:`tests.fixtures.detector_layouts`) box the bright pixels of the image and
name their colour, so a red rectangle on a black, non-square image must come back as "red" where
it was drawn, once the letterbox (scale 64/120, 10 px of padding on top) is undone.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fixtures.cli import Capture, run, store_flags
from tests.fixtures.detector_layouts import (
    COLOURS,
    TF_NAMES,
    end2end_onnx,
    nms_onnx,
    pooled_onnx,
    yolo_onnx,
)
from tests.fixtures.models import session_settings
from tests.fixtures.serving import server
from visionyard.contract.schema import DetectionDecoding
from visionyard.registry import resolve_bundle
from visionyard.runtime import InferenceSession
from visionyard.serving.sources import LocalBundleSource
from visionyard.settings import Settings

RED_BOX = (30.0, 20.0, 70.0, 60.0)  # x1, y1, x2, y2 on the 120x80 image
BLUE_BOX = (10.0, 90.0, 80.0, 140.0)  # on the 90x150 (portrait) image
#: bilinear edges of the downscaled rectangle: up to ~1.5 input px = ~3 original px
ATOL = 3.0


class World(NamedTuple):
    settings: Settings
    root: Path
    yolo: Path
    nms: Path
    pooled: Path
    labels: Path
    red: Path
    blue: Path
    black: Path


def _picture(
    path: Path, size: tuple[int, int], box: tuple[float, ...], rgb: tuple[int, ...]
) -> Path:
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    pixels[y1:y2, x1:x2] = rgb
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("import-detectors")
    settings = session_settings(request, root / ".visionyard", f"import-det-{uuid.uuid4().hex[:8]}")
    labels = root / "colours.json"
    labels.write_text(json.dumps(list(COLOURS)), encoding="utf-8")
    return World(
        settings, root, yolo_onnx(root / "yolov8.onnx"), nms_onnx(root / "efficientnms.onnx"),
        pooled_onnx(root / "pooled.onnx"), labels,
        _picture(root / "red.png", (120, 80), RED_BOX, (230, 20, 20)),
        _picture(root / "blue.png", (90, 150), BLUE_BOX, (20, 20, 230)),
        _picture(root / "black.png", (120, 80), (0, 0, 0, 0), (0, 0, 0)),
    )  # fmt: skip


def _import(capsys: Capture, world: World, *args: str | Path) -> tuple[int, str, str]:
    return run(capsys, *store_flags(world.settings), "import", *args)


def _name() -> str:
    return f"detector-{uuid.uuid4().hex[:6]}"


def _bundle(world: World, ref: str) -> Path:
    _, path = resolve_bundle(world.settings, ref, world.root / "cache" / uuid.uuid4().hex[:6])
    return path


def _decoding(session: InferenceSession) -> DetectionDecoding:
    assert isinstance(session.contract.decoding, DetectionDecoding)
    return session.contract.decoding


def test_a_yolov8_export_is_imported_as_is_and_detects_in_original_pixels(
    capsys: Capture, world: World
) -> None:
    name = _name()
    code, stdout, stderr = _import(
        capsys, world, "--onnx", world.yolo, "--preset", "yolo", "-n", name
    )
    assert code == 0, stderr
    assert f"registered {name} version 1" in stdout
    assert "3 (metadata:names)" in stdout  # Ultralytics' names dict in the ONNX metadata
    assert "detection, layout yolo (output0)" in stdout
    session = InferenceSession.open(_bundle(world, f"{name}/1"))
    decoding = _decoding(session)
    assert (decoding.layout, decoding.output, decoding.box_format) == ("yolo", "output0", "cxcywh")
    pre = session.contract.preprocessing
    assert (pre.resize, pre.pad_value, pre.scale) == ("letterbox", 114, 1 / 255)
    red, blue, black = session.detect([world.red, world.blue, world.black])  # batch 1 model
    assert [d.label for d in red] == ["red"]  # the 7 shifted copies are suppressed by NMS
    np.testing.assert_allclose(red[0].box, RED_BOX, atol=ATOL)
    assert red[0].score > 0.9
    assert [d.label for d in blue] == ["blue"]
    np.testing.assert_allclose(blue[0].box, BLUE_BOX, atol=ATOL)
    assert black == []


def test_an_efficientnms_export_reads_its_detections_as_they_are(
    capsys: Capture, world: World
) -> None:
    name = _name()
    code, stdout, stderr = _import(
        capsys, world, "--onnx", world.nms, "--preset", "yolo", "--labels", world.labels, "-n", name
    )
    assert code == 0, stderr
    session = InferenceSession.open(_bundle(world, f"{name}/1"))
    decoding = _decoding(session)
    assert decoding.layout == "nms"
    assert (decoding.boxes_output, decoding.scores_output) == ("det_boxes", "det_scores")
    assert (decoding.classes_output, decoding.count_output) == ("det_classes", "num_dets")
    red, black = session.detect([world.red, world.black])
    assert [(d.label, round(d.score, 3)) for d in red][1] == ("green", 0.3)
    assert red[0].label == "red"
    np.testing.assert_allclose(red[0].box, RED_BOX, atol=ATOL)
    np.testing.assert_allclose(red[1].box, (0.0, 0.0, 120.0, 80.0), atol=1e-6)  # clipped
    assert black == []


@pytest.mark.parametrize(
    ("model", "extra", "want_code", "want_text"),
    [
        ("pooled", [], 5, "outputs out [1, 3, 1, 1] float32 fit no detection layout"),
        ("nms", [], 3, "give --labels FILE"),  # post-NMS outputs never say the class count
        ("yolo", ["--set", "decoding.layout=nms"], 5, "output0 [1, 7, 8] float32"),
    ],
)
def test_outputs_that_fit_no_layout_are_refused_in_one_line(
    capsys: Capture, world: World, model: str, extra: list[str], want_code: int, want_text: str
) -> None:
    path = getattr(world, model)
    code, stdout, stderr = _import(
        capsys, world, "--onnx", path, "--preset", "yolo", *extra, "-n", _name()
    )
    assert code == want_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert want_text in lines[0]
    assert "Traceback" not in stderr
    assert "registered" not in stdout


def test_the_server_answers_predict_with_boxes_in_original_pixels(
    capsys: Capture, world: World
) -> None:
    name = _name()
    code, _, stderr = _import(capsys, world, "--onnx", world.yolo, "--preset", "yolo", "-n", name)
    assert code == 0, stderr
    source = LocalBundleSource(_bundle(world, f"{name}/1"))
    with server({"det": source}) as running, httpx.Client(base_url=running.http_url) as client:
        answer = client.post("/v1/models/det:predict", content=world.red.read_bytes(), timeout=30)
        assert answer.status_code == 200, answer.text
        (detections,) = answer.json()["detections"]
        assert [d["label"] for d in detections] == ["red"]
        np.testing.assert_allclose(detections[0]["box"], RED_BOX, atol=ATOL)
        meta = client.get("/v2/models/det").json()
        assert meta["contract"]["decoding"]["layout"] == "yolo"
        assert {"output0", "detections"} <= {o["name"] for o in meta["outputs"]}


def test_raw_outputs_named_like_the_decoded_ones_are_listed_once(
    capsys: Capture, world: World
) -> None:
    """TF-style post-NMS names (``detection_boxes`` ...) are also the server's decoded outputs:
    the model's own tensors keep those names, ``detections`` holds the original-pixel boxes."""
    name = _name()
    model = nms_onnx(world.root / "tf_names.onnx", TF_NAMES)
    code, _, stderr = _import(
        capsys, world, "--onnx", model, "--preset", "yolo", "--labels", world.labels, "-n", name
    )
    assert code == 0, stderr
    source = LocalBundleSource(_bundle(world, f"{name}/1"))
    with server({"det": source}) as running, httpx.Client(base_url=running.http_url) as client:
        names = [o["name"] for o in client.get("/v2/models/det").json()["outputs"]]
        assert sorted(names) == sorted(set(names))
        assert set(TF_NAMES) | {"detections"} <= set(names)
        answer = client.post("/v1/models/det:predict", content=world.red.read_bytes(), timeout=30)
        assert answer.status_code == 200, answer.text
        (detections,) = answer.json()["detections"]
        assert [d["label"] for d in detections] == ["red", "green"]
        np.testing.assert_allclose(detections[0]["box"], RED_BOX, atol=ATOL)


def test_an_end_to_end_export_is_one_tensor_of_detections(capsys: Capture, world: World) -> None:
    name = _name()
    model = end2end_onnx(world.root / "end2end.onnx")
    code, _, stderr = _import(
        capsys, world, "--onnx", model, "--preset", "yolo", "--labels", world.labels, "-n", name
    )
    assert code == 0, stderr
    session = InferenceSession.open(_bundle(world, f"{name}/1"))
    assert (_decoding(session).layout, _decoding(session).output) == ("end2end", "output0")
    red, black = session.detect([world.red, world.black])
    assert [d.label for d in red] == ["red", "green"]
    np.testing.assert_allclose(red[0].box, RED_BOX, atol=ATOL)
    assert black == []
