"""Hostile or unusual tensors over REST and gRPC: overflowing shapes, NaN and Infinity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.fixtures.serving import server
from visionyard.serving.app import RunningServer
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.serving.sources import LocalBundleSource

Tensor = pb.ModelInferRequest.InferInputTensor
HUGE = [4294967296, 4294967296]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("robust")
    sources = {
        "colour": LocalBundleSource(write_colour_bundle(root / "colour").path),
        "nanok": LocalBundleSource(
            write_colour_bundle(root / "nanok", metadata={"accepts_non_finite": True}).path
        ),
    }
    with server(sources) as srv:
        yield srv


@pytest.fixture
def client(running: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.http_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def stub(running: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(running.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _strict_json(text: str) -> Any:
    """Parse as RFC 8259 JSON: NaN/Infinity literals are an error."""

    def refuse(literal: str) -> Any:
        raise ValueError(f"invalid JSON literal {literal}")

    return json.loads(text, parse_constant=refuse)


def _tensor_body(data: str, shape: str = "[1, 3, 8, 8]") -> bytes:
    """A JSON infer body with ``data`` spliced in as text (to send non-standard literals)."""
    return (
        '{"inputs":[{"name":"input","datatype":"FP32","shape":' + shape + ',"data":' + data + "}]}"
    ).encode()


def _grpc_code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize("datatype", ["FP32", "BYTES", "UINT8"])
def test_overflowing_shape_is_400(client: httpx.Client, datatype: str) -> None:
    body = {"inputs": [{"name": "input", "datatype": datatype, "shape": HUGE, "data": []}]}
    response = client.post("/v2/models/colour/infer", json=body)
    assert response.status_code == 400, response.text
    assert "too many elements" in response.json()["error"]


@pytest.mark.parametrize("raw", [True, False])
def test_overflowing_shape_is_invalid_argument(
    stub: pb_grpc.GRPCInferenceServiceStub, raw: bool
) -> None:
    tensor = Tensor(name="input", datatype="FP32", shape=HUGE)
    request = pb.ModelInferRequest(
        model_name="colour", inputs=[tensor], raw_input_contents=[b""] if raw else []
    )
    code, details = _grpc_code(lambda: stub.ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "too many elements" in details


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_literals_are_400(client: httpx.Client, literal: str) -> None:
    data = "[" + ",".join([literal] + ["0.5"] * 191) + "]"
    response = client.post("/v2/models/nanok/infer", content=_tensor_body(data))
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_non_finite_input_is_refused_unless_the_model_accepts_it(client: httpx.Client) -> None:
    data = json.dumps(["NaN"] + [0.5] * 191)
    refused = client.post("/v2/models/colour/infer", content=_tensor_body(data))
    assert refused.status_code == 400
    assert "accepts_non_finite" in refused.json()["error"]
    accepted = client.post("/v2/models/nanok/infer", content=_tensor_body(data))
    assert accepted.status_code == 200, accepted.text
    outputs = {o["name"]: o for o in _strict_json(accepted.text)["outputs"]}
    assert "NaN" in outputs["logits"]["data"]


def test_non_finite_grpc_input_is_refused_unless_the_model_accepts_it(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    values = np.full(192, 0.5, np.float32)
    values[0] = np.inf
    tensor = Tensor(name="input", datatype="FP32", shape=[1, 3, 8, 8])
    tensor.contents.fp32_contents.extend(values.tolist())
    code, details = _grpc_code(
        lambda: stub.ModelInfer(pb.ModelInferRequest(model_name="colour", inputs=[tensor]))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "accepts_non_finite" in details
    reply = stub.ModelInfer(pb.ModelInferRequest(model_name="nanok", inputs=[tensor]))
    assert reply.model_name == "nanok"
