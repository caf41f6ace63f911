"""Server bugs and odd inputs never leak: JSON errors, generic messages, counted in metrics.

A JSON integer longer than Python's int-to-string limit is a client error (400, without
Python's hint); an unexpected exception in any REST route answers JSON ``{"error", "code":
"internal"}`` (never uvicorn's plain-text 500 or a server path), gRPC answers INTERNAL with a
generic message, and failed inference requests count as ``status="internal"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.fixtures.runtime import write_colour_bundle
from tests.fixtures.serving import ADMIN_TOKEN, server
from visionyard.serving import dataplane
from visionyard.serving.app import RunningServer
from visionyard.serving.grpc import server as grpc_server
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.serving.sources import LocalBundleSource

LONG = b"1" + b"0" * 5000  # past Python's 4300-digit int-to-string limit
SECRET = "/srv/visionyard/serving-cache/colour/.1.lock"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("internal")
    sources = {"colour": LocalBundleSource(write_colour_bundle(root / "colour").path, "3")}
    with server(sources) as srv:
        yield srv


@pytest.fixture
def client(running: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.http_url, timeout=30) as http:
        yield http


@pytest.fixture
def stub(running: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(running.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _tensor(data: bytes = b"[0]", shape: bytes = b"[1]") -> bytes:
    return (
        b'{"inputs":[{"name":"input","shape":'
        + shape
        + b',"datatype":"FP32","data":'
        + data
        + b"}]}"
    )


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v2/models/colour/infer", b'{"id":' + LONG + b',"inputs":[]}', {}),
        ("/v2/models/colour/infer", _tensor(shape=b"[" + LONG + b"]"), {}),
        ("/v2/models/colour/infer", _tensor(data=b"[" + LONG + b"]"), {}),
        # above 256 KB: parsed in the helper process
        ("/v2/models/colour/infer", b'{"id":' + LONG + b"}" + b" " * 300_000, {}),
        ("/v1/models/colour:predict", b'{"instances":[' + LONG + b"]}", {}),
        ("/v1/models/colour:predict", b'{"instances":[' + LONG + b"]}" + b" " * 300_000, {}),
        ("/v2/repository/index", b'{"ready":' + LONG + b"}", ADMIN),
    ],
)
def test_a_json_integer_past_the_digit_limit_is_a_clear_400(
    client: httpx.Client, path: str, body: bytes, headers: dict[str, str]
) -> None:
    headers = {"Content-Type": "application/json", **headers}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "inference.invalid_input"
    message = response.json()["error"]
    assert "digits" in message
    assert "sys.set_int_max_str_digits" not in message
    assert "Exceeds the limit" not in message


def _count(text: str, status: str, protocol: str = "rest") -> float:
    pattern = (
        r'visionyard_requests_total\{model="colour",protocol="'
        + protocol
        + r'",status="'
        + re.escape(status)
        + r'",version="[^"]*"\} ([0-9.e+]+)'
    )
    return sum(float(m) for m in re.findall(pattern, text))


def _fail_count(client: httpx.Client) -> int:
    stats = client.get("/v2/models/colour/stats").json()["model_stats"][0]
    count: int = stats["inference_stats"]["fail"]["count"]
    return count


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise IsADirectoryError(21, "Is a directory", SECRET)


async def _async_boom(*args: Any, **kwargs: Any) -> Any:
    _boom()


def _infer_json() -> dict[str, Any]:
    data = [0.5] * (3 * 8 * 8)
    return {"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": data}]}


def _grpc_infer() -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=[1, 3, 8, 8]
    )
    tensor.contents.fp32_contents.extend([0.5] * (3 * 8 * 8))
    return pb.ModelInferRequest(model_name="colour", inputs=[tensor])


def test_an_internal_error_while_inferring_is_counted_on_both_protocols(
    running: RunningServer,
    client: httpx.Client,
    stub: pb_grpc.GRPCInferenceServiceStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = client.get("/metrics").text
    fails = _fail_count(client)
    monkeypatch.setattr(dataplane, "check_outputs", _boom)  # inside the admitted request
    response = client.post("/v2/models/colour/infer", json=_infer_json())
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "code": "internal"}
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_grpc_infer())
    assert info.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert SECRET not in info.value.details()  # type: ignore[attr-defined]
    monkeypatch.undo()
    monkeypatch.setattr(running.server.parser, "parse", _async_boom)  # before admission
    assert client.post("/v2/models/colour/infer", json=_infer_json()).status_code == 500
    monkeypatch.setattr(grpc_server, "parse_infer", _boom)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_grpc_infer())
    assert info.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    after = client.get("/metrics").text
    assert _count(after, "internal") - _count(before, "internal") == 2
    assert _count(after, "internal", "grpc") - _count(before, "internal", "grpc") == 2
    assert _fail_count(client) - fails == 2  # the two admitted ones: Triton's "fail"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/models/colour/load"),
        ("POST", "/v2/repository/models/colour/unload"),
        ("POST", "/v2/repository/index"),
        ("GET", "/v2/models/colour"),
    ],
)
def test_an_unexpected_error_in_any_route_answers_json_without_server_paths(
    running: RunningServer,
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
) -> None:
    pool = running.server.pool
    for name in ("load", "unload"):
        monkeypatch.setattr(pool, name, _async_boom)
    monkeypatch.setattr(pool, "entry", _boom)
    with caplog.at_level("ERROR"):
        response = client.request(method, path, headers=ADMIN)
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal server error", "code": "internal"}
    assert SECRET not in response.text
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("rpc", ["RepositoryModelLoad", "RepositoryModelUnload"])
def test_an_unexpected_error_in_a_repository_rpc_is_internal_with_a_generic_message(
    running: RunningServer,
    stub: pb_grpc.GRPCInferenceServiceStub,
    monkeypatch: pytest.MonkeyPatch,
    rpc: str,
) -> None:
    monkeypatch.setattr(
        running.server.pool, rpc.removeprefix("RepositoryModel").lower(), _async_boom
    )
    request = getattr(pb, f"{rpc}Request")(model_name="colour")
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, rpc)(request, metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),))
    assert info.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    details = info.value.details()  # type: ignore[attr-defined]
    assert SECRET not in details
    assert "IsADirectoryError" not in details
