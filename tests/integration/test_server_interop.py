"""tritonclient[http,grpc]==2.73.0 runs health, metadata, infer and Triton's extensions against
both protocols; the standard gRPC health service and reflection; the bad input of the
repository extension (tokens, unknown references, two loads at once) and REST's error shape."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.fixtures.runtime import write_colour_bundle
from tests.fixtures.serving import ADMIN_TOKEN, server
from visionyard.errors import NotFoundError
from visionyard.serving.app import RunningServer
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.serving.sources import Resolved

SCRIPT = Path(__file__).with_name("triton_client_check.py")


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GRPC_ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


class ReferenceSource:
    """A registry reference the test moves, slows down or makes unknown."""

    reference = "colour@production"

    def __init__(self, path: Path) -> None:
        self.path, self.version = path, "1"
        self.missing = False
        self.delay_s = 0.0

    def resolve(self) -> Resolved:
        time.sleep(self.delay_s)
        if self.missing:
            raise NotFoundError("registered model", self.reference, "register it first")
        return Resolved(self.version, self.path)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> ReferenceSource:
    return ReferenceSource(write_colour_bundle(tmp_path_factory.mktemp("interop") / "c").path)


@pytest.fixture(scope="module")
def running(source: ReferenceSource) -> Iterator[RunningServer]:
    with server({"colour": source}) as srv:
        yield srv


@pytest.fixture
def http(running: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.http_url, timeout=30) as client:
        yield client


@pytest.fixture
def channel(running: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(running.grpc_target) as chan:
        yield chan


def test_tritonclient_http_and_grpc(running: RunningServer) -> None:
    http = running.http_url.removeprefix("http://")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), http, running.grpc_target, ADMIN_TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok http fp32 binary=False" in lines
    assert "ok http images binary=True" in lines
    assert "ok grpc images binary=True" in lines
    for extension in ("config", "stats", "repository"):
        assert f"ok {extension} http+grpc" in lines
    assert "ok stream malformed then good" in lines
    assert lines[-1] == "all ok"


def _health(channel: grpc.Channel, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


def test_grpc_health_follows_readiness_and_reflection_lists_services(
    http: httpx.Client, channel: grpc.Channel
) -> None:
    assert _health(channel, "") == "SERVING"
    assert _health(channel, "inference.GRPCInferenceService") == "SERVING"
    with pytest.raises(grpc.RpcError) as info:
        _health(channel, "nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert http.post("/v2/repository/models/colour/unload", headers=ADMIN).status_code == 200
    try:
        assert _health(channel, "") == "NOT_SERVING"  # a readiness probe takes it out
        assert _health(channel, "liveness") == "SERVING"
    finally:
        assert http.post("/v2/repository/models/colour/load", headers=ADMIN).status_code == 200
    assert _health(channel, "") == "SERVING"
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
    found = descriptor_pool.DescriptorPool(database).FindServiceByName(
        "inference.GRPCInferenceService"
    )
    assert "ModelStreamInfer" in [m.name for m in found.methods]


def test_load_of_an_unknown_reference_is_not_found_and_the_old_version_serves(
    http: httpx.Client, channel: grpc.Channel, source: ReferenceSource
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    source.missing = True
    try:
        answer = http.post("/v2/repository/models/colour/load", headers=ADMIN)
        assert answer.status_code == 404
        assert "'colour@production' not found" in answer.json()["error"]
        with pytest.raises(grpc.RpcError) as info:
            stub.RepositoryModelLoad(
                pb.RepositoryModelLoadRequest(model_name="colour"), metadata=GRPC_ADMIN
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        source.missing = False
    assert http.get("/v2/models/colour/ready").status_code == 200  # version 1 kept serving
    config = pb.ModelRepositoryParameter(string_param="{}")
    with pytest.raises(grpc.RpcError) as info:
        stub.RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name="colour", parameters={"config": config}),
            metadata=GRPC_ADMIN,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_two_loads_at_once_switch_once_and_both_answer(
    running: RunningServer, channel: grpc.Channel, source: ReferenceSource
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
    source.version, source.delay_s = "2", 0.3
    start = threading.Barrier(3)

    def rest_load() -> dict[str, object]:
        with httpx.Client(base_url=running.http_url, timeout=30) as client:
            start.wait()
            answer = client.post("/v2/repository/models/colour/load", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

    def grpc_load() -> None:
        start.wait()
        request = pb.RepositoryModelLoadRequest(model_name="colour")
        stub.RepositoryModelLoad(request, metadata=GRPC_ADMIN)

    try:
        with ThreadPoolExecutor(3) as pool:
            rest = [pool.submit(rest_load), pool.submit(rest_load)]
            by_grpc = pool.submit(grpc_load)
            answers = [f.result(30) for f in rest]
            by_grpc.result(30)
        assert [a["version"] for a in answers] == ["2", "2"]
        assert [a["state"] for a in answers] == ["READY", "READY"]
        assert sum(bool(a["swapped"]) for a in answers) <= 1  # the gRPC load may have won
        index = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=GRPC_ADMIN)
        assert [(m.name, m.version, m.state) for m in index.models] == [("colour", "2", "READY")]
    finally:
        source.version, source.delay_s = "1", 0.0
        running.call(running.server.pool.load("colour"))


def test_rest_errors_have_the_protocols_shape(http: httpx.Client) -> None:
    for method, path, status in [
        ("GET", "/nope", 404),
        ("POST", "/v2/health/live", 405),
        ("GET", "/v2/models/ghost/stats", 404),
        ("GET", "/v2/models/ghost/config", 404),
        ("GET", "/v2/models/colour/versions/7/config", 404),
        ("POST", "/v2/repository/models/colour/load", 401),
    ]:
        answer = http.request(method, path)
        assert answer.status_code == status, (path, answer.text)
        assert set(answer.json()) <= {"error", "code"}, answer.text
        assert answer.json()["error"], answer.text
    bad = http.post("/v2/repository/index", headers=ADMIN, content=b"[1]")
    assert bad.status_code == 400
    assert "JSON object" in bad.json()["error"]
    ready = http.post("/v2/repository/index", headers=ADMIN, json={"ready": True})
    assert [row["name"] for row in ready.json()] == ["colour"]
