"""Hot swap under load, a broken version that leaves the old one serving, queue limits, tokens."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.fixtures.runtime import COLOURS, write_colour_bundle
from tests.fixtures.serving import ADMIN_TOKEN, MovableSource, encoded, server
from visionyard.serving.app import RunningServer
from visionyard.serving.model import LoadedModel
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RED = encoded(COLOURS["red"])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("swap")
    good = {v: write_colour_bundle(root / v, metadata={"v": v}).path for v in ("1", "2", "3")}
    broken = write_colour_bundle(root / "broken").path
    (broken / "model.onnx").write_bytes(b"tampered")  # checksum no longer matches
    return {**good, "broken": broken}


@pytest.fixture(scope="module")
def source(bundles: dict[str, Path]) -> MovableSource:
    return MovableSource("1", bundles["1"])


@pytest.fixture(scope="module")
def running(source: MovableSource) -> Iterator[RunningServer]:
    with server({"m": source}, max_queue_size=4, inference_token="infer-secret") as srv:
        yield srv


@pytest.fixture
def client(running: RunningServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer infer-secret"}
    with httpx.Client(base_url=running.http_url, timeout=30, headers=headers) as http:
        yield http


def _load(url: str, stop: threading.Event, seen: Counter[str]) -> None:
    headers = {"Authorization": "Bearer infer-secret"}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        for _ in range(2000):  # bounded
            if stop.is_set():
                return
            response = http.post("/v1/models/m:predict", content=RED)
            key = response.json()["model_version"] if response.status_code == 200 else "failed"
            seen[key] += 1


def test_swap_under_load_fails_no_request(
    running: RunningServer, source: MovableSource, bundles: dict[str, Path], client: httpx.Client
) -> None:
    stop, seen = threading.Event(), Counter[str]()
    threads = [
        threading.Thread(target=_load, args=(running.http_url, stop, seen)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    source.move("2", bundles["2"])
    swapped = client.post("/v2/repository/models/m/load", headers=AUTH).json()
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert swapped["swapped"] is True
    assert swapped["version"] == "2"
    assert seen["failed"] == 0
    assert seen["1"] > 0
    assert seen["2"] > 0
    assert client.get("/v2/models/m").json()["versions"] == ["2"]


def test_broken_version_leaves_the_old_one_serving(
    running: RunningServer, source: MovableSource, bundles: dict[str, Path], client: httpx.Client
) -> None:
    before = client.get("/v2/models/m").json()["versions"]
    source.move("9", bundles["broken"])
    swapped = running.call(running.server.pool.refresh("m"))
    assert swapped is False
    meta = client.get("/v2/models/m").json()
    assert meta["versions"] == before
    assert "bundle.tampered" in meta["parameters"]["last_error"]
    server_paths = (str(bundles["broken"]), str(bundles["broken"].parent))
    index = client.post("/v2/repository/index", headers=AUTH).text
    assert not any(p in meta["parameters"]["last_error"] or p in index for p in server_paths)
    assert client.post("/v1/models/m:predict", content=RED).status_code == 200
    metrics = client.get("/metrics").text
    assert 'visionyard_model_load_failures_total{model="m"} 1.0' in metrics
    assert running.call(running.server.pool.refresh("m")) is False  # not retried every poll
    source.move("3", bundles["3"])
    assert running.call(running.server.pool.refresh("m")) is True
    assert client.get("/v2/models/m").json()["parameters"]["last_error"] is None


def test_polling_follows_the_source(
    running: RunningServer, source: MovableSource, bundles: dict[str, Path], client: httpx.Client
) -> None:
    task = running.call(_start_watch(running, 0.05))
    try:
        source.move("1", bundles["1"])
        deadline = time.monotonic() + 10
        while client.get("/v2/models/m").json()["versions"] != ["1"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        running.call(_cancel(task))


async def _start_watch(running: RunningServer, interval: float) -> asyncio.Task[None]:
    return asyncio.create_task(running.server.pool.watch(interval))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


def test_full_queue_is_503_with_retry_after(running: RunningServer, client: httpx.Client) -> None:
    model = running.server.pool.current("m")
    running.call(_hold(model, 4))
    try:
        response = client.post("/v1/models/m:predict", content=RED)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        with grpc.insecure_channel(running.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(
                model_name="m",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
                ],
                raw_input_contents=[len(RED).to_bytes(4, "little") + RED],
            )
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, metadata=[("authorization", "Bearer infer-secret")])
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # REST: 503
            assert ("retry-after", "1") in list(info.value.trailing_metadata())  # type: ignore[attr-defined]
    finally:
        running.call(_hold(model, -4))
    assert client.post("/v1/models/m:predict", content=RED).status_code == 200


async def _hold(model: LoadedModel, count: int) -> None:
    model.in_flight += count


def test_inference_token_is_required_when_set(running: RunningServer) -> None:
    with httpx.Client(base_url=running.http_url) as anonymous:
        assert anonymous.post("/v1/models/m:predict", content=RED).status_code == 401
        wrong = anonymous.post(
            "/v1/models/m:predict", content=RED, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        upload = anonymous.post("/v1/models/m:predict", files={"file": ("red.png", RED)})
        assert upload.status_code == 401  # refused before the upload is parsed
        infer = anonymous.post("/v2/models/m/infer", json={"inputs": []})
        assert infer.status_code == 401  # the token is checked before the body
        assert anonymous.get("/v2/health/ready").status_code == 200  # health stays open
        for name in ("probe-1", "probe-2"):  # made-up names must not grow the label set
            assert anonymous.post(f"/v2/models/{name}/infer", content=b"{}").status_code == 401
        metrics = anonymous.get("/metrics").text
        assert 'model="m",protocol="rest",status="serving.unauthorized"' in metrics
        assert 'model="_unknown",protocol="rest",status="serving.unauthorized"' in metrics
        assert "probe-" not in metrics
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(pb.ModelInferRequest(model_name="m"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unload_then_load(running: RunningServer, client: httpx.Client) -> None:
    assert client.post("/v2/repository/models/m/unload", headers=AUTH).status_code == 200
    assert client.get("/v2/health/ready").status_code == 503
    assert client.post("/v1/models/m:predict", content=RED).status_code == 503
    assert client.post("/v2/repository/models/m/load", headers=AUTH).json()["state"] == "READY"
    assert client.post("/v1/models/m:predict", content=RED).status_code == 200


def test_unload_sticks_through_polls_and_shows_in_metadata(
    running: RunningServer, client: httpx.Client
) -> None:
    assert client.post("/v2/repository/models/m/unload", headers=AUTH).status_code == 200
    try:
        assert running.call(running.server.pool.refresh_all()) == {"m": False}  # a poll
        meta = client.get("/v2/models/m")
        assert meta.status_code == 200, meta.text
        assert meta.json()["versions"] == []
        assert meta.json()["parameters"]["state"] == "unloaded"
        assert client.post("/v1/models/m:predict", content=RED).status_code == 503
    finally:
        loaded = client.post("/v2/repository/models/m/load", headers=AUTH).json()
    assert loaded["state"] == "READY"
    assert client.get("/v2/models/m").json()["parameters"]["state"] == "ready"


def test_model_metadata_needs_the_inference_token(running: RunningServer) -> None:
    with httpx.Client(base_url=running.http_url) as anonymous:
        assert anonymous.get("/v2/models/m").status_code == 401
        assert anonymous.get("/v2/models/m/versions/1").status_code == 401
        assert anonymous.get("/v2/health/live").status_code == 200  # probes stay open
        assert anonymous.get("/v2/models/m/ready").status_code in (200, 503)
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelMetadata(pb.ModelMetadataRequest(name="m"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = [("authorization", "Bearer infer-secret")]
        assert stub.ModelMetadata(pb.ModelMetadataRequest(name="m"), metadata=token).name == "m"
