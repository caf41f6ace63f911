"""Rollouts through real servers on loopback and a real registry: a canary of 50 % answers from
both versions (REST and gRPC, sticky on a header), and a shadow whose candidate fails every
request costs the clients nothing and is rolled back on its own."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.fixtures.runtime import COLOURS, colour_classifier_onnx, colour_contract
from tests.fixtures.serving import ADMIN_TOKEN, encoded
from visionyard.bundle.store import write_bundle
from visionyard.monitor.rollout.lifecycle import StartRequest, start_rollout
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.state import read_rollout
from visionyard.registry import Registry
from visionyard.serving.app import RunningServer, running_server
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc
from visionyard.serving.rollout.follower import RolloutConfig
from visionyard.serving.rollout.wiring import RolloutWiring
from visionyard.settings import Settings
from visionyard.tracking import start_run

RED = encoded(COLOURS["red"])
FAST = RolloutConfig(poll_interval_s=1.0, decide_interval_s=0.2)


def failing_on_real_images() -> bytes:
    """The colour classifier, but its output is reshaped to an impossible shape when the image
    is flat (every channel's spread below 0.1): the warm-up's random input passes, every flat
    colour image fails inside ONNX Runtime."""
    base = onnx.load_from_string(colour_classifier_onnx())
    graph = base.graph
    logits = graph.node[-1].output[0]
    graph.node[-1].output[0] = "raw_logits"
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["hi"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMin", ["input"], ["lo"], axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["hi", "lo"], ["spread"]),
        helper.make_node("ReduceMax", ["spread"], ["peak"], keepdims=0),
        helper.make_node("Less", ["peak", "flat"], ["is_flat"]),
        helper.make_node("Cast", ["is_flat"], ["flag"], to=TensorProto.INT64),
        helper.make_node("Add", ["classes", "flag"], ["width"]),
        helper.make_node("Unsqueeze", ["width", "axis0"], ["width1"]),
        helper.make_node("Concat", ["minus_one", "width1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["raw_logits", "shape"], [logits]),
    ]
    graph.node.extend(nodes)
    constants = {
        "flat": np.array(0.1, np.float32),
        "classes": np.array(len(COLOURS), np.int64),
        "axis0": np.array([0], np.int64),
        "minus_one": np.array([-1], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    onnx.checker.check_model(base)
    return base.SerializeToString()


def _register(settings: Settings, tmp: Path, name: str, model: bytes) -> str:
    bundle = write_bundle(tmp / uuid.uuid4().hex[:8], model=model, contract=colour_contract())
    with start_run(settings=settings) as run:
        run.log_bundle(bundle.path)
        run_id = run.run_id
    return str(Registry(settings).register(run_id, name).version.version)


def _models(settings: Settings, tmp: Path, candidate: bytes) -> str:
    """A registered model with version 1 in production and ``candidate`` as version 2."""
    name = f"ro-{uuid.uuid4().hex[:8]}"
    assert _register(settings, tmp, name, colour_classifier_onnx()) == "1"
    assert _register(settings, tmp, name, candidate) == "2"
    Registry(settings).promote(name, "1", "production")
    return name


def _server_settings(settings: Settings, name: str) -> Settings:
    serving = {"http_port": 0, "grpc_port": 0, "admin_token": ADMIN_TOKEN, "poll_interval_s": 0.2,
               "models": {"m": f"{name}@production"}}  # fmt: skip
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=serving)})


def _wait(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def _rollout_shown(http: httpx.Client) -> Any:
    return http.get("/v2/models/m").json()["parameters"].get("rollout")


def _grpc_versions(running: RunningServer, count: int, key: str | None = None) -> list[str]:
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(RED)
    request = pb.ModelInferRequest(model_name="m", inputs=[tensor])
    metadata = (("x-user", key),) if key else None
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return [stub.ModelInfer(request, metadata=metadata).model_version for _ in range(count)]


def test_a_canary_of_half_answers_from_both_versions(
    tracking_settings: Settings, tmp_path: Path
) -> None:
    name = _models(tracking_settings, tmp_path, colour_classifier_onnx(sharpness=12.0))
    policy = Policy(min_requests=100_000)  # holds: the test watches the split, not decisions
    start = StartRequest(name, "2", "canary", (50, 100), policy, sticky_header="X-User")
    rollout = start_rollout(Registry(tracking_settings), start)
    wiring = RolloutWiring(config=FAST)
    with (
        running_server(_server_settings(tracking_settings, name), rollouts=wiring) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        shown = _wait(lambda: _rollout_shown(http))
        assert (shown["rollout_id"], shown["candidate"], shown["share"]) == (
            rollout.rollout_id, "2", 50.0,
        )  # fmt: skip
        rest = [http.post("/v1/models/m:predict", content=RED).json()["model_version"]
                for _ in range(120)]  # fmt: skip
        versions = Counter(rest + _grpc_versions(running, 80))
        sticky = {http.post("/v1/models/m:predict", content=RED, headers={"X-User": "alice"})
                  .json()["model_version"] for _ in range(15)}  # fmt: skip
        sticky_grpc = set(_grpc_versions(running, 15, key="alice"))
        metrics = http.get("/metrics").text
        figures = _rollout_shown(http)["figures"]
    assert set(versions) == {"1", "2"}
    assert figures["production"]["requests"] + figures["candidate"]["requests"] == 230
    assert figures["candidate"]["errors"] == 0
    assert 60 < versions["2"] < 140  # binomial(200, 0.5): +- 5.6 sigma
    assert len(sticky) == 1
    assert sticky_grpc == sticky  # the same key lands on the same side over both protocols
    canary = 'model="m",role="canary",status="ok",version="2"'
    assert f"visionyard_rollout_requests_total{{{canary}}}" in metrics
    assert 'visionyard_rollout_share_ratio{mode="canary",model="m",version="2"} 0.5' in metrics


def test_a_failing_shadow_costs_the_clients_nothing_and_is_rolled_back(
    tracking_settings: Settings, tmp_path: Path
) -> None:
    name = _models(tracking_settings, tmp_path, failing_on_real_images())
    policy = Policy(min_requests=10, min_step_seconds=0)
    registry = Registry(tracking_settings)
    start_rollout(registry, StartRequest(name, "2", "shadow", (100,), policy))
    wiring = RolloutWiring(config=FAST)
    with (
        running_server(_server_settings(tracking_settings, name), rollouts=wiring) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        _wait(lambda: _rollout_shown(http))
        codes: Counter[int] = Counter()
        began = time.monotonic()
        while _rollout_shown(http) and time.monotonic() - began < 30:
            response = http.post("/v1/models/m:predict", content=RED)
            codes[response.status_code] += 1
            assert response.json()["model_version"] == "1"
        versions = set(_grpc_versions(running, 5))
        # traffic left the candidate before the decision was written: wait for the record
        recorded = 'visionyard_rollout_decisions_total{action="rollback",model="m"} 1.0'
        _wait(lambda: recorded in http.get("/metrics").text)
        metrics = http.get("/metrics").text
    assert codes[200] >= 10
    assert set(codes) == {200}  # not one failed request
    assert versions == {"1"}
    after = read_rollout(registry, name)
    assert after is not None
    assert (after.status, after.rule) == ("rolled_back", "max_error_rate")
    assert registry.client.get_model(name).aliases["production"] == "1"
    assert (
        'visionyard_rollout_requests_total{model="m",role="shadow",status="error",version="2"}'
        in metrics
    )
    assert 'visionyard_rollout_decisions_total{action="rollback",model="m"} 1.0' in metrics


def test_a_good_canary_is_promoted_and_served_without_a_second_load(
    tracking_settings: Settings, tmp_path: Path
) -> None:
    name = _models(tracking_settings, tmp_path, colour_classifier_onnx(sharpness=12.0))
    # the default p99 bound (1.5x production over 10 requests) fired on a loaded CI machine
    # (rolled back, version 1 answered): this test is about promotion, not latency
    policy = Policy(min_requests=10, min_step_seconds=0, max_p99_latency_ratio=1000.0)
    registry = Registry(tracking_settings)
    start_rollout(registry, StartRequest(name, "2", "canary", (50, 100), policy))
    wiring = RolloutWiring(config=FAST)
    with (
        running_server(_server_settings(tracking_settings, name), rollouts=wiring) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        _wait(lambda: _rollout_shown(http))
        candidate = running.server.plane.routes["m"].candidate
        codes: Counter[int] = Counter()
        began = time.monotonic()
        while _rollout_shown(http) and time.monotonic() - began < 30:
            codes[http.post("/v1/models/m:predict", content=RED).status_code] += 1
        after = {http.post("/v1/models/m:predict", content=RED).json()["model_version"]
                 for _ in range(10)}  # fmt: skip
        serving = running.server.pool.current("m")
    assert set(codes) == {200}
    assert after == {"2"}, read_rollout(registry, name)
    state = read_rollout(registry, name)
    assert state is not None
    assert state.status == "promoted"
    assert registry.client.get_model(name).aliases["production"] == "2"
    assert serving is candidate  # the loaded candidate was adopted, not loaded again
