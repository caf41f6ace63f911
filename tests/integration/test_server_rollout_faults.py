"""Faulty rollout candidates through a real server on loopback and a real registry, each rolled
back on its own by the rule that catches it: a canary failing 20 % of its requests (error
rate), a candidate 3x slower or more (~90 ms more model work per image than production's whole
request on an idle machine; p99 ratio), one answering with shuffled labels (shadow agreement),
one that sees drifted inputs (drift against its reference profile), and a shadow starved under
sustained load (``max_duration``, with the shed count shown). Plus a server restarted
mid-rollout that resumes it from the registry.

One store and one server serve the five fault models (one registered model each, so their
rollouts are independent); the restart test starts its own servers.
"""

from __future__ import annotations

import io
import math
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from PIL import Image

from tests.fixtures.cli import Capture, run, store_flags
from tests.fixtures.runtime import COLOURS, colour_classifier_onnx, colour_contract, flat_png
from tests.fixtures.serving import ADMIN_TOKEN, encoded
from tests.fixtures.tracking import BACKEND
from tests.integration.test_server_rollout import failing_on_real_images
from visionyard.bundle.store import write_bundle
from visionyard.monitor import image_files
from visionyard.monitor.rollout.events import all_events, chain
from visionyard.monitor.rollout.lifecycle import StartRequest, start_rollout
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.state import Rollout, read_rollout
from visionyard.monitor.store import Images, profile_version
from visionyard.registry import Registry
from visionyard.serving.app import RunningServer, running_server
from visionyard.serving.rollout.follower import RolloutConfig
from visionyard.serving.rollout.wiring import RolloutWiring
from visionyard.settings import Settings
from visionyard.tracking import start_run

pytestmark = [pytest.mark.postgres] if BACKEND == "postgres" else []

RED = encoded(COLOURS["red"])
FAST = RolloutConfig(poll_interval_s=1.0, decide_interval_s=0.2)
#: Policies isolate the rule under test: the others are switched off (or out of reach).
QUIET = {"min_step_seconds": 600, "max_p99_latency_ratio": 1000.0, "max_drift": 1.0,
         "min_agreement": 0.0}  # fmt: skip


def two_tone() -> bytes:
    """Half red, half blue: not flat, so the failing candidate answers it."""
    image = Image.new("RGB", (32, 24), COLOURS["red"])
    image.paste(COLOURS["blue"], (16, 0, 32, 24))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def slow_classifier(extra_s: float = 0.08, width: int = 256) -> bytes:
    """The colour classifier with the same answers and ~``extra_s`` more work per image on THIS
    machine (so that one hiccup in production's own p99 on a busy machine cannot hide a 2x
    ratio). The work is calibrated, not a fixed count: 24 rounds took ~90 ms on the machine of
    2026-12-04 and ~5 ms on a faster one, where production's own p99 hiccups hid the ratio and
    the test held the rollout for 40 s in CI. A bigger model, not a sleep."""
    probe = 16
    seconds = _fastest_run(_with_chain(width, probe))
    return _with_chain(width, max(probe, math.ceil(probe * extra_s / seconds)))


def _fastest_run(model: bytes, runs: int = 5) -> float:
    """The fastest of ``runs`` single-image runs of ``model`` in ONNX Runtime (s)."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, 8, 8), np.float32)}
    session.run(None, feed)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - began)
    return min(times)


def _with_chain(width: int, rounds: int) -> bytes:
    """The colour classifier plus a chain of ``rounds`` matrix products seeded by the image (so
    nothing folds to a constant), multiplied by 0 and added to the logits."""
    base = onnx.load_from_string(colour_classifier_onnx())
    graph = base.graph
    logits = graph.node[-1].output[0]
    graph.node[-1].output[0] = "fast_logits"
    turn, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((width, width)))
    nodes = [helper.make_node("ReduceMean", ["input"], ["level"], keepdims=0),
             helper.make_node("Mul", ["level", "seed"], ["h0"])]  # fmt: skip
    nodes += [helper.make_node("MatMul", [f"h{i}", "turn"], [f"h{i + 1}"]) for i in range(rounds)]
    nodes += [
        helper.make_node("ReduceSum", [f"h{rounds}"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["fast_logits", "nothing"], [logits]),
    ]
    graph.node.extend(nodes)
    constants = {"turn": turn.astype(np.float32), "seed": np.eye(width, dtype=np.float32),
                 "zero": np.array(0.0, np.float32)}  # fmt: skip
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    onnx.checker.check_model(base)
    return bytes(base.SerializeToString())


def shuffled_classifier() -> bytes:
    """Same weights, output columns rotated by one: the contract's labels are unchanged (a
    candidate whose label list differs is refused at ``rollout start``), every top-1 is wrong."""
    colours = list(COLOURS.values())
    return colour_classifier_onnx(colours[1:] + colours[:1])


@dataclass(frozen=True)
class Fleet:
    """The store, the registered model of each fault (version 1 in production, version 2 the
    candidate), and the one server following them all."""

    settings: Settings
    names: dict[str, str]
    running: RunningServer

    @property
    def registry(self) -> Registry:
        return Registry(self.settings)


def _store(request: pytest.FixtureRequest, root: Path) -> Settings:
    """A fresh tracking store for this module (what ``tracking_settings`` makes per test)."""
    home = root / ".visionyard"
    home.mkdir()
    tracking: dict[str, object] = {"experiment": f"faults-{uuid.uuid4().hex[:8]}",
                                   "flush_interval_s": 30.0}  # fmt: skip
    if BACKEND == "postgres":
        tracking["uri"] = request.getfixturevalue("mlflow_server")
    else:
        shutil.copyfile(request.getfixturevalue("sqlite_template"), home / "mlflow.db")
    return Settings(home=home, tracking=tracking)


def _profile(settings: Settings, reference: str, root: Path) -> None:
    """Store a reference profile of flat red, green and blue images beside a registered version
    (what ``visionyard monitor profile REF --data DIR`` does)."""
    for colour in ("red", "green", "blue"):
        (root / "val" / colour).mkdir(parents=True)
        for i in range(20):
            data = flat_png(COLOURS[colour], (16 + i % 7, 12 + i % 5))
            (root / "val" / colour / f"{i}.png").write_bytes(data)
    images = Images(image_files(root / "val"), root / "val")
    profile_version(settings, reference, images, root / "work")


def _register(settings: Settings, root: Path, name: str, model: bytes) -> str:
    bundle = write_bundle(root / uuid.uuid4().hex[:8], model=model, contract=colour_contract())
    with start_run(settings=settings) as tracked:
        tracked.log_bundle(bundle.path)
        run_id = tracked.run_id
    return str(Registry(settings).register(run_id, name).version.version)


def _model(settings: Settings, root: Path, candidate: bytes) -> str:
    """A registered model: the colour classifier in production, ``candidate`` as version 2."""
    name = f"rf-{uuid.uuid4().hex[:8]}"
    assert _register(settings, root, name, colour_classifier_onnx()) == "1"
    assert _register(settings, root, name, candidate) == "2"
    Registry(settings).promote(name, "1", "production")
    return name


def _server_settings(settings: Settings, models: dict[str, str]) -> Settings:
    serving = {
        "http_port": 0,
        "grpc_port": 0,
        "admin_token": ADMIN_TOKEN,
        "poll_interval_s": 0.2,
        "models": {served: f"{name}@production" for served, name in models.items()},
    }
    monitor = {"min_samples": 20, "compare_every_images": 10}  # fmt: skip
    body = settings.model_dump()
    body["serving"] = {**body["serving"], **serving}
    body["monitor"] = {**body["monitor"], **monitor}
    return Settings.model_validate(body)


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("rollout-faults")
    settings = _store(request, root)
    clean = colour_classifier_onnx(sharpness=12.0)
    names = {
        "failing": _model(settings, root, failing_on_real_images()),
        "slow": _model(settings, root, slow_classifier()),
        "shuffled": _model(settings, root, shuffled_classifier()),
        "drift": _model(settings, root, clean),
        "starved": _model(settings, root, clean),
    }
    _profile(settings, f"{names['drift']}/2", root / "profile")
    wiring = RolloutWiring(config=FAST)
    with running_server(_server_settings(settings, names), rollouts=wiring) as running:
        yield Fleet(settings, names, running)


def _wait(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def _shown(http: httpx.Client, served: str) -> Any:
    return http.get(f"/v2/models/{served}").json()["parameters"].get("rollout")


def _drive(
    fleet: Fleet, served: str, image: Callable[[int], bytes], timeout: float = 40.0
) -> tuple[Counter[str], Rollout]:
    """Send images one at a time until the server no longer routes the rollout; the answers'
    versions by count (``failed``: answers other than 200) and the rollout as the registry has
    it."""
    name = fleet.names[served]
    versions: Counter[str] = Counter()
    with httpx.Client(base_url=fleet.running.http_url, timeout=30) as http:
        _wait(lambda: _shown(http, served))
        began = time.monotonic()
        while _shown(http, served) and time.monotonic() - began < timeout:
            sent = sum(versions.values())
            response = http.post(f"/v1/models/{served}:predict", content=image(sent))
            ok = response.status_code == 200
            versions[response.json()["model_version"] if ok else "failed"] += 1
        after = {http.post(f"/v1/models/{served}:predict", content=RED).json()["model_version"]
                 for _ in range(5)}  # fmt: skip
    assert after == {"1"}  # traffic is back on production
    state = _wait(lambda: _ended(fleet.registry, name))
    return versions, state


def _send_until(http: httpx.Client, done: Callable[[], bool], timeout: float = 30.0) -> None:
    began = time.monotonic()
    while not done():
        assert time.monotonic() - began < timeout, "timed out"
        assert http.post("/v1/models/m:predict", content=RED).status_code == 200


def _ended(registry: Registry, name: str) -> Rollout | None:
    state = read_rollout(registry, name)
    return state if state is not None and not state.running else None


def _one_rollback(registry: Registry, name: str) -> None:
    """The registry records the start and ONE rollback; production never moved."""
    kinds = [event.kind for event in chain(all_events(name, registry.client.get_model(name).tags))]
    assert kinds == ["start", "rollback"]
    assert registry.client.get_model(name).aliases["production"] == "1"


def test_a_canary_failing_a_fifth_of_its_requests_is_rolled_back_on_the_error_rate(
    fleet: Fleet,
) -> None:
    name = fleet.names["failing"]
    policy = Policy(**{**QUIET, "max_error_rate": 0.05}, min_requests=20)
    start_rollout(fleet.registry, StartRequest(name, "2", "canary", (50, 100), policy))
    # one image in five is flat: the candidate fails it inside ONNX Runtime, answers the others
    two = two_tone()
    versions, state = _drive(fleet, "failing", lambda i: RED if i % 5 == 0 else two)
    assert (state.status, state.rule) == ("rolled_back", "max_error_rate")
    figures = state.figures
    assert figures["candidate_requests"] >= 20  # what it served before the rollback
    assert 0.05 < figures["candidate_error_rate"] < 0.6, figures
    assert figures["production_errors"] == 0
    # the canary's clients saw every recorded failure, and more may come in the moments between
    # the deciding window and the route's removal (a registry on PostgreSQL answers slower): the
    # error rate they saw is the canary's, not production's
    assert figures["candidate_errors"] <= versions["failed"]
    seen = versions["failed"] / (versions["failed"] + versions["2"])
    assert 0.05 < seen < 0.6, versions
    _one_rollback(fleet.registry, name)


def test_a_candidate_3x_slower_is_rolled_back_on_the_p99_ratio(fleet: Fleet) -> None:
    name = fleet.names["slow"]
    policy = Policy(**{**QUIET, "max_p99_latency_ratio": 2.0}, min_requests=20)
    start_rollout(fleet.registry, StartRequest(name, "2", "canary", (50, 100), policy))
    versions, state = _drive(fleet, "slow", lambda _: RED)
    assert (state.status, state.rule) == ("rolled_back", "max_p99_latency_ratio")
    figures = state.figures
    assert figures["p99_ratio"] > 2.0, figures  # the figures that fired the rule are recorded
    assert figures["candidate_p99_s"] > figures["production_p99_s"]
    assert figures["candidate_requests"] >= 20  # what it served before the rollback
    assert versions["2"] >= 20
    assert "failed" not in versions
    assert "x production's (limit 2x)" in (state.reason or "")
    _one_rollback(fleet.registry, name)


def test_a_shadow_with_shuffled_labels_is_rolled_back_on_agreement(fleet: Fleet) -> None:
    name = fleet.names["shuffled"]
    policy = Policy(**{**QUIET, "min_agreement": 0.9}, min_requests=15)
    start_rollout(fleet.registry, StartRequest(name, "2", "shadow", (100,), policy))
    versions, state = _drive(fleet, "shuffled", lambda _: RED)
    assert set(versions) == {"1"}  # the clients only ever see production
    assert (state.status, state.rule) == ("rolled_back", "min_agreement")
    assert state.figures["shadow_agreement"] == 0.0
    assert state.figures["shadow_count"] >= 15
    _one_rollback(fleet.registry, name)


def test_a_candidate_seeing_drifted_inputs_is_rolled_back_on_drift(fleet: Fleet) -> None:
    name = fleet.names["drift"]
    policy = Policy(**{**QUIET, "max_drift": 0.25}, min_requests=20)
    start_rollout(fleet.registry, StartRequest(name, "2", "shadow", (100,), policy))

    def dark(i: int) -> bytes:  # darkened reds: far from the profile's flat colours
        return encoded((90 + 2 * (i % 30), 25, 25), (20 + i % 9, 16))

    versions, state = _drive(fleet, "drift", dark)
    assert set(versions) == {"1"}
    assert (state.status, state.rule) == ("rolled_back", "max_drift")
    assert state.figures["drift_share"] > 0.25
    assert state.figures["shadow_agreement"] >= 0.9  # the answers agree: only drift caught it
    _one_rollback(fleet.registry, name)


def test_a_shadow_starved_under_load_ends_at_its_max_duration_with_the_shed_count(
    fleet: Fleet, capsys: Capture
) -> None:
    name, served = fleet.names["starved"], "starved"
    policy = Policy(**QUIET, min_requests=100_000, max_duration_seconds=4)
    start_rollout(fleet.registry, StartRequest(name, "2", "shadow", (100,), policy))
    codes: Counter[int] = Counter()
    stop = threading.Event()

    def client() -> None:  # sustained load: production's workers always busy
        with httpx.Client(base_url=fleet.running.http_url, timeout=30) as http:
            while not stop.is_set():
                codes[http.post(f"/v1/models/{served}:predict", content=RED).status_code] += 1

    with httpx.Client(base_url=fleet.running.http_url, timeout=30) as http:
        _wait(lambda: _shown(http, served))
        threads = [threading.Thread(target=client) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            shed = _wait(lambda: (_shown(http, served) or {}).get("figures", {}).get("shadow_shed"))
            state = _wait(lambda: _ended(fleet.registry, name), timeout=30)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert shed > 0  # the model metadata shows the shed shadows while it runs
    assert set(codes) == {200}
    assert (state.status, state.rule) == ("rolled_back", "max_duration")
    assert state.figures["shadow_shed"] > 0
    assert "shadow requests shed" in (state.reason or "")
    code, out, _ = run(capsys, *store_flags(fleet.settings), "rollout", "status", name)
    assert code == 0
    assert "shadow_shed" in out
    assert "max_duration" in out
    _one_rollback(fleet.registry, name)


def test_a_server_restarted_mid_rollout_resumes_it_from_the_registry(
    fleet: Fleet, tmp_path: Path
) -> None:
    settings = fleet.settings
    name = _model(settings, tmp_path, colour_classifier_onnx(sharpness=12.0))
    policy = Policy(**{**QUIET, "min_step_seconds": 0}, min_requests=10)
    started = start_rollout(
        Registry(settings), StartRequest(name, "2", "canary", (50, 100), policy)
    )
    config = _server_settings(settings, {"m": name})
    wiring = RolloutWiring(config=FAST)
    with (
        running_server(config, rollouts=wiring) as first,
        httpx.Client(base_url=first.http_url, timeout=30) as http,
    ):
        _wait(lambda: _shown(http, "m"))
        _send_until(http, lambda: (_shown(http, "m") or {}).get("step") == 1)  # it advanced
    registry = Registry(settings)
    kinds = [e.kind for e in chain(all_events(name, registry.client.get_model(name).tags))]
    assert kinds == ["start", "advance"]
    with (
        running_server(config, rollouts=wiring) as second,
        httpx.Client(base_url=second.http_url, timeout=30) as http,
    ):
        resumed = _wait(lambda: _shown(http, "m"))
        assert (resumed["rollout_id"], resumed["step"], resumed["share"]) == (
            started.rollout_id, 1, 100.0,
        )  # fmt: skip
        time.sleep(1.5)  # idle polls and decisions of the new server record nothing
        kinds = [e.kind for e in chain(all_events(name, registry.client.get_model(name).tags))]
        assert kinds == ["start", "advance"]
        _send_until(http, lambda: not _shown(http, "m"))  # promoted
    events = chain(all_events(name, registry.client.get_model(name).tags))
    assert [e.kind for e in events] == ["start", "advance", "promote"]
    assert {e.state.rollout_id for e in events} == {started.rollout_id}
    assert registry.client.get_model(name).aliases["production"] == "2"
