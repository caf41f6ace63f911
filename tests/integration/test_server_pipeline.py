"""A registered pipeline served as one OIP model over REST and gRPC: the crops' classes in the
answer, each stage's version in the response's parameters, and a hot swap of the classifier
stage (its alias moved) while the detector keeps serving untouched."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.fixtures.serving import ADMIN_TOKEN
from tests.pipeline_support import PipelineWorld, make_pipeline_world, scene
from visionyard.registry import Registry
from visionyard.serving.app import RunningServer, running_server
from visionyard.serving.pipeline_model import PipelineModel
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.settings import Settings

SCENE = scene("red", "blue")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> PipelineWorld:
    return make_pipeline_world(tmp_path_factory.mktemp("pipeline-serve"), sqlite_template)


@pytest.fixture(scope="module")
def running(world: PipelineWorld) -> Iterator[RunningServer]:
    serving = {
        "http_port": 0, "grpc_port": 0, "admin_token": ADMIN_TOKEN, "poll_interval_s": 3600,
        "models": {"pipe": f"{world.pipeline}@production"},
    }  # fmt: skip
    settings = Settings(home=world.settings.home, tracking=world.settings.tracking, serving=serving)
    with running_server(settings) as srv:
        yield srv


def _predict(url: str, image: bytes) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/models/pipe:predict", content=image, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _labels(detections: list[dict[str, Any]]) -> list[str]:
    return [d["label"] for d in detections]


def test_rest_and_oip_answers_carry_crop_classes_and_stage_versions(
    running: RunningServer, world: PipelineWorld
) -> None:
    body = _predict(running.http_url, SCENE)
    (found,) = body["detections"]
    assert _labels(found) == ["red", "blue"]  # the crops' pixels, not the detector's cat/dog
    assert [d["detector"]["label"] for d in found] == ["cat", "dog"]
    assert found[0]["box"] == pytest.approx([8, 8, 24, 24], abs=0.01)  # original pixels
    assert body["model_version"] == "1"
    assert body["parameters"]["detector"] == f"{world.detector}/1"
    assert body["parameters"]["classifier_version"] == "1"
    assert _labels(_predict(running.http_url, scene("green", "white"))["detections"][0]) == [
        "green", "white",
    ]  # fmt: skip
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1],
              "data": [__import__("base64").b64encode(SCENE).decode()],
              "parameters": {"content_type": "base64"}}  # fmt: skip
    oip = httpx.post(f"{running.http_url}/v2/models/pipe/infer", json={"inputs": [tensor]}).json()
    stats = running.server.pool.current("pipe").stats
    assert (stats.execution_count, stats.inference_count) == (3, 3)  # the batcher counts there too
    assert oip["parameters"]["detector_version"] == "1"
    (detections,) = oip["outputs"]
    assert _labels(json.loads(detections["data"][0])) == ["red", "blue"]


def test_grpc_answer_carries_stage_versions(running: RunningServer) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    raw = struct.pack("<I", len(SCENE)) + SCENE
    request = pb.ModelInferRequest(model_name="pipe", inputs=[tensor], raw_input_contents=[raw])
    with grpc.insecure_channel(running.grpc_target) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert reply.parameters["classifier_version"].string_param == "1"
    assert reply.outputs[0].name == "detections"
    (length,) = struct.unpack("<I", reply.raw_output_contents[0][:4])
    assert _labels(json.loads(reply.raw_output_contents[0][4 : 4 + length])) == ["red", "blue"]


def test_metadata_and_config_describe_the_pipeline_not_its_detector(
    running: RunningServer, world: PipelineWorld
) -> None:
    registry = Registry(world.settings)
    registered = registry.show(f"{world.pipeline}/1").version.tags["vy.contract_digest"]
    classifier = registry.show(f"{world.classifier}/1").version.tags["vy.contract_digest"]
    detector = registry.show(f"{world.detector}/1").version.tags["vy.contract_digest"]
    assert len({registered, classifier, detector}) == 3
    meta = httpx.get(f"{running.http_url}/v2/models/pipe").json()["parameters"]
    answer = _predict(running.http_url, SCENE)["detections"][0]
    labels = meta["contract"]["labels"]
    assert [labels[d["index"]] for d in answer] == _labels(answer) == ["red", "blue"]
    assert "cat" not in labels  # the detector's labels are not the end result's
    assert meta["contract_digest"] == registered
    assert meta["variant"] == "fp32+fp32"  # each stage's variant
    config = httpx.get(f"{running.http_url}/v2/models/pipe/config").json()["parameters"]
    assert config["contract_digest"] == {"string_value": registered}
    assert config["variant"] == {"string_value": "fp32+fp32"}
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelConfig(pb.ModelConfigRequest(name="pipe"), timeout=30)
    assert reply.config.parameters["contract_digest"].string_value == registered


def test_classifier_alias_move_swaps_that_stage_only(
    running: RunningServer, world: PipelineWorld
) -> None:
    before = running.server.pool.current("pipe")
    assert isinstance(before, PipelineModel)
    registry = Registry(world.settings)
    registry.register(world.red_as_green, world.classifier)
    registry.promote(world.classifier, "2", "production")
    assert running.call(running.server.pool.refresh("pipe")) is True
    body = _predict(running.http_url, SCENE)
    first, second = _labels(body["detections"][0])
    assert first != "red"  # the new classifier has no red colour: it answers, not the old
    assert second == "blue"
    assert body["parameters"]["classifier_version"] == "2"
    assert body["parameters"]["detector_version"] == "1"
    assert body["model_version"] == "1"  # the pipeline's own version did not move
    after = running.server.pool.current("pipe")
    assert isinstance(after, PipelineModel)
    assert after.runner.detector is before.runner.detector  # kept, not reloaded
    assert after.runner.classifier is not before.runner.classifier
    assert running.call(running.server.pool.refresh("pipe")) is False  # nothing moved since


def test_tritonclient_reads_the_pipelines_answer_and_stage_versions(
    running: RunningServer, world: PipelineWorld, tmp_path: Path
) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(SCENE)
    script = Path(__file__).with_name("triton_detection_check.py")
    result = subprocess.run(
        [sys.executable, str(script), running.http_url.removeprefix("http://"),
         running.grpc_target, "pipe", "--json-only", str(image)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["protocol"] for a in answers] == ["http", "grpc"]
    expected = _predict(running.http_url, SCENE)
    for answer in answers:
        assert answer["detections"] == expected["detections"]
        assert len(answer["detections"][0]) == 2  # (the labels depend on the live classifier)
        assert answer["version"] == expected["model_version"]
        for key in ("detector_version", "classifier_version"):
            assert answer["parameters"][key] == expected["parameters"][key], answer["parameters"]
