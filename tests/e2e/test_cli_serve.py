"""``visionyard serve`` as a user runs it: a child process, real requests, a clean stop."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import httpx
import pytest
from PIL import Image

from tests.fixtures.runtime import write_colour_bundle
from visionyard.cli.main import main
from visionyard.serving.launch import serve_subprocess
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 0, 255)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_serve_answers_rest_and_grpc_then_stops(tmp_path: Path) -> None:
    bundle = write_colour_bundle(tmp_path / "colour")
    log = tmp_path / "serve.log"
    with serve_subprocess({"colour": str(bundle.path)}, log_path=log) as urls:
        response = httpx.post(
            f"{urls.http_url}/v1/models/colour:predict",
            content=_jpeg(),
            headers={"X-Request-ID": "e2e-1"},
            timeout=30,
        )
        assert response.status_code == 200
        assert response.json()["predictions"][0][0]["label"] == "blue"
        with grpc.insecure_channel(urls.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelReady(pb.ModelReadyRequest(name="colour")).ready
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("request_id") == "e2e-1"]
    assert access
    assert access[0]["status"] == 200
    assert access[0]["model"] == "colour"


def test_serve_with_a_config_file(tmp_path: Path) -> None:
    bundle = write_colour_bundle(tmp_path / "colour")
    config = tmp_path / "serve.yaml"
    config.write_text(f"serving:\n  models:\n    c: {bundle.path}\n  max_batch_size: 4\n")
    with serve_subprocess({}, args=["--config", str(config)]) as urls:
        meta = httpx.get(f"{urls.http_url}/v2/models/c", timeout=30).json()
        assert meta["versions"] == ["1"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["serve"], "no models to serve"), (["serve", "--model", "oops"], "NAME=REFERENCE")],
)
def test_serve_user_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 3
    assert needle in capsys.readouterr().err
