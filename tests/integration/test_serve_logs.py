"""``visionyard serve`` as a real process: every stderr line is JSON from start to stop; REST
and gRPC access lines alike (request id from the OIP ``id`` when no ``X-Request-ID`` is sent,
version, client), client errors at warning with their code and message, the load's progress;
Ctrl-C (SIGINT) with a request in flight answers it, then exits 0 saying it stopped."""

from __future__ import annotations

import base64
import io
import json
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from PIL import Image

from tests.fixtures.runtime import COLOURS
from tests.fixtures.serving import encoded
from tests.integration.test_serve_lifecycle import _in_flight, replica, start
from tests.integration.test_serve_lifecycle import bundle as bundle  # noqa: F401 (fixture)
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow
RED = encoded(COLOURS["red"])


def _big_png() -> bytes:
    """A flat 36-megapixel PNG (120 KB): a fraction of a second of decoding on the server."""
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), COLOURS["red"]).save(buffer, "PNG")
    return buffer.getvalue()


def _grpc_infer(target: str, request_id: str) -> str:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    raw = struct.pack("<I", len(RED)) + RED
    request = pb.ModelInferRequest(
        model_name="m", id=request_id, inputs=[tensor], raw_input_contents=[raw]
    )
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        return str(stub.ModelInfer(request, timeout=10).model_version)


def _rest_infer_body(request_id: str) -> dict[str, Any]:
    image = {"name": "image", "datatype": "BYTES", "shape": [1],
             "data": [base64.b64encode(RED).decode()],
             "parameters": {"content_type": "base64"}}  # fmt: skip
    return {"id": request_id, "inputs": [image]}


def test_json_logs_oip_ids_client_errors_and_ctrl_c_with_a_request_in_flight(
    bundle: Path,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    log = tmp_path / "serve.log"
    with replica({"m": str(bundle)}, log) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        request.addfinalizer(http.close)
        rest = http.post("/v2/models/m/infer", json=_rest_infer_body("rest-oip-1"))
        assert rest.headers["x-request-id"] == "rest-oip-1"
        assert _grpc_infer(server.grpc_target, "grpc-oip-1") == "1"
        bad = http.post("/v1/models/m:predict", json={"instances": "nope"})
        assert bad.status_code == 400
        answered: dict[str, httpx.Response] = {}
        files = [("a", ("a.png", _big_png(), "image/png"))]
        client = threading.Thread(
            target=lambda: answered.update(r=http.post("/v1/models/m:predict", files=files))
        )
        client.start()
        while _in_flight(http) < 1:
            assert client.is_alive(), "the request ended before it was seen in flight"
            time.sleep(0.01)
        server.process.send_signal(signal.SIGINT)
        client.join(30)
        code = server.process.wait(30)
    assert answered["r"].status_code == 200, answered["r"].text
    assert code == 0
    lines = [json.loads(line) for line in log.read_text("utf-8").splitlines()]  # all JSON
    messages = [line["message"] for line in lines]
    for said in ("starting", "fetched version", "verified, loaded and warmed version",
                 "serving; Ctrl-C to stop", "stop requested", "draining: not ready, finishing "
                 "requests in flight", "stopped"):  # fmt: skip
        assert said in messages, said
    assert messages[-1] == "stopped"
    access = {line["request_id"]: line for line in lines if line["logger"] == "visionyard.access"}
    grpc_line = access["grpc-oip-1"]
    assert (grpc_line["protocol"], grpc_line["version"]) == ("grpc", "1")
    assert grpc_line["client"] == access["rest-oip-1"]["client"] == "127.0.0.1"
    assert access["rest-oip-1"]["version"] == "1"
    refused = next(line for line in access.values() if line["status"] == 400)
    assert refused["level"] == "warning"
    assert refused["error_code"] == "inference.invalid_input"
    assert "instances is not a non-empty list" in refused["error"]


def test_ctrl_c_when_idle_exits_0_and_says_stopped(
    bundle: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = start({"m": str(bundle)}, tmp_path / "serve.log")
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(30) == 0
    if server.process.stdout is not None:
        server.process.stdout.close()
    last = json.loads(server.logged().splitlines()[-1])
    assert last["message"] == "stopped"
