"""Rollout routing in the data plane (no network): the canary split, sticky keys, the shadow
that never touches the client, shedding, per-role figures, and agreement."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from tests.fixtures.runtime import COLOURS, colour_classifier_onnx, flat_png, write_colour_bundle
from tests.registry_support import RED_AS_GREEN
from visionyard.contract.postprocess import Detection, ImageResult, Prediction
from visionyard.errors import InferenceError
from visionyard.runtime.session import InferenceSession
from visionyard.serving.batching import BatchConfig, Batcher
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.model import LoadedModel
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.predict import predict_request
from visionyard.serving.rollout.agreement import box_iou, compare_one
from visionyard.serving.rollout.routed import Router
from visionyard.serving.rollout.routing import Route, bucket
from visionyard.serving.rollout.shadow import ShadowConfig, ShadowJob, ShadowRunner
from visionyard.serving.rollout.stats import CANARY, PRODUCTION, SHADOW, StepStats
from visionyard.serving.sources import LocalBundleSource

Run = Callable[[np.ndarray], dict[str, np.ndarray]]


def _route(share: float, mode: str = CANARY, sticky: str | None = None, seed: int = 0) -> Route:
    candidate = cast(LoadedModel, object())
    stats = StepStats("r1", 0)
    return Route("m", "r1", mode, share, 0, candidate, stats, sticky, random.Random(seed).random)


def test_the_split_sends_about_the_share_to_the_candidate() -> None:
    route = _route(30.0)
    chosen = sum(route.chosen(None) for _ in range(10_000))
    assert 2_800 < chosen < 3_200  # 30 % +- 4.4 sigma
    assert not any(_route(0.0).chosen(None) for _ in range(100))
    assert all(_route(100.0).chosen(None) for _ in range(100))


def test_a_sticky_key_lands_on_the_same_side_and_stays_as_the_share_grows() -> None:
    keys = [f"user-{i}" for i in range(2_000)]
    small, large = _route(10.0, sticky="x-user"), _route(50.0, sticky="x-user")
    first = [small.chosen({"x-user": k}) for k in keys]
    assert first == [small.chosen({"x-user": k}) for k in keys]  # deterministic
    assert 150 < sum(first) < 250
    grown = [large.chosen({"x-user": k}) for k in keys]
    assert all(g for f, g in zip(first, grown, strict=True) if f)  # canary keys stay canary
    assert 900 < sum(grown) < 1_100
    # not Python's salted hash: the same point on every process (every replica)
    assert bucket("r1", "user-1") == pytest.approx(bucket("r1", "user-1"))
    assert round(bucket("r1", "user-1"), 6) == round(_blake_point("r1", "user-1"), 6)
    # a request without the header is split at random
    assert 0 < sum(small.chosen({}) for _ in range(1_000)) < 1_000


def _blake_point(rollout_id: str, key: str) -> float:
    import hashlib

    digest = hashlib.blake2b(f"{rollout_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def test_agreement_of_classes_and_boxes() -> None:
    red = ImageResult([Prediction(0, "red", 0.9)])
    assert compare_one(red, ImageResult([Prediction(0, "red", 0.7)])).agree
    other = compare_one(red, ImageResult([Prediction(1, "green", 0.6)]))
    assert not other.agree
    assert other.confidence_delta == pytest.approx(-0.3)
    box = Detection((0, 0, 10, 10), 0.9, 0, "cat")
    moved = Detection((1, 1, 11, 11), 0.8, 0, "cat")
    far = Detection((50, 50, 60, 60), 0.8, 0, "cat")
    assert box_iou(box.box, moved.box) == pytest.approx(81 / 119)
    assert compare_one(ImageResult(detections=[box]), ImageResult(detections=[moved])).agree
    missed = compare_one(ImageResult(detections=[box]), ImageResult(detections=[far]))
    assert not missed.agree
    assert missed.score == 0
    assert compare_one(ImageResult(), ImageResult()).agree


@dataclass
class Harness:
    plane: DataPlane
    pool: ModelPool
    shadow: ShadowRunner
    candidate: LoadedModel
    metrics: ServingMetrics

    def route(self, mode: str, share: float, seed: int = 1) -> Route:
        draw = random.Random(seed).random
        stats = StepStats("r1", 0)
        route = Route("m", "r1", mode, share, 0, self.candidate, stats, None, draw)
        self.plane.routes["m"] = route
        return route

    async def infer(self, count: int) -> list[str]:
        contract = self.pool.current("m").session.contract
        request = predict_request("m", [flat_png(COLOURS["red"])], contract)
        versions = []
        for _ in range(count):
            try:
                versions.append((await self.plane.infer(request, "rest")).model_version)
            except Exception:
                versions.append("failed")
        return versions


@pytest.fixture
def bundles(tmp_path: Path) -> tuple[Path, Path]:
    return (write_colour_bundle(tmp_path / "p").path, write_colour_bundle(tmp_path / "c").path)


def _candidate(bundle: Path, run: Callable[[Run], Run]) -> LoadedModel:
    session = InferenceSession.open(bundle)
    batcher = Batcher(run(session.run), BatchConfig(workers=1), name="vy-test-candidate")
    return LoadedModel("m", "2", session, batcher)


async def _harness(bundles: tuple[Path, Path], run: Callable[[Run], Run], **shadow: Any) -> Harness:
    metrics = ServingMetrics()
    pool = ModelPool({"m": LocalBundleSource(bundles[0])}, PoolConfig(), metrics)
    await pool.start()
    candidate = _candidate(bundles[1], run)
    candidate.batcher.start()
    plane = DataPlane(pool, metrics)
    runner = ShadowRunner(pool, metrics.rollout, ShadowConfig(**shadow))
    runner.start()
    plane.router = Router(plane, runner, metrics.rollout)
    return Harness(plane, pool, runner, candidate, metrics)


async def _close(h: Harness) -> None:
    await h.shadow.close()
    await h.candidate.retire()
    await h.pool.close()


def _same(run: Run) -> Run:
    return run


def _raising(run: Run) -> Run:
    def broken(tensor: np.ndarray) -> dict[str, np.ndarray]:
        raise InferenceError("the candidate is broken")

    return broken


def _sleeping(seconds: float) -> Callable[[Run], Run]:
    def wrap(run: Run) -> Run:
        def slow(tensor: np.ndarray) -> dict[str, np.ndarray]:
            time.sleep(seconds)
            return run(tensor)

        return slow

    return wrap


def test_a_canary_splits_requests_and_counts_them_per_role(bundles: tuple[Path, Path]) -> None:
    async def scenario() -> None:
        h = await _harness(bundles, _same)
        route = h.route(CANARY, 50.0)
        versions = await h.infer(200)
        await _close(h)
        assert set(versions) == {"1", "2"}
        assert 70 < versions.count("2") < 130
        roles = route.stats.roles
        assert roles[CANARY].requests == versions.count("2")
        assert roles[PRODUCTION].requests == versions.count("1")
        assert roles[CANARY].errors == 0
        assert roles[CANARY].p99() is not None
        text = h.metrics.render().decode()
        assert (
            'visionyard_rollout_requests_total{model="m",role="canary",status="ok",version="2"}'
            in text
        )

    asyncio.run(scenario())


def test_a_failing_canary_fails_its_share_and_its_errors_are_counted(
    bundles: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        h = await _harness(bundles, _raising)
        route = h.route(CANARY, 50.0)
        versions = await h.infer(100)
        await _close(h)
        stats = route.stats.roles
        assert stats[CANARY].errors == stats[CANARY].requests == versions.count("failed") > 20
        assert stats[PRODUCTION].errors == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("run", [_raising, _sleeping(0.3)], ids=["raises", "sleeps"])
def test_a_shadow_never_fails_or_delays_the_client(
    bundles: tuple[Path, Path], run: Callable[[Run], Run]
) -> None:
    async def scenario() -> None:
        h = await _harness(bundles, run, busy_in_flight=100, timeout_s=0.2)
        route = h.route(SHADOW, 100.0)
        began = time.perf_counter()
        versions = await h.infer(10)
        elapsed = time.perf_counter() - began
        await asyncio.sleep(0.8)  # let the shadow queue drain
        await _close(h)
        assert versions == ["1"] * 10
        assert elapsed < 1.5  # ten shadows of 0.3 s would be 3 s if the client waited
        shadow = route.stats.roles[SHADOW]
        assert shadow.requests >= 1
        assert shadow.errors == shadow.requests
        assert route.stats.roles[PRODUCTION].errors == 0

    asyncio.run(scenario())


def test_a_good_shadow_agrees_and_is_measured(bundles: tuple[Path, Path]) -> None:
    async def scenario() -> None:
        h = await _harness(bundles, _same, busy_in_flight=100)
        route = h.route(SHADOW, 100.0)
        await h.infer(5)
        for _ in range(100):
            if route.stats.shadow.compared >= 5:
                break
            await asyncio.sleep(0.02)
        await _close(h)
        assert route.stats.shadow.compared == 5
        assert route.stats.shadow.agreement == 1.0
        assert route.stats.shadow.confidence_delta == pytest.approx(0.0, abs=1e-6)
        text = h.metrics.render().decode()
        assert 'visionyard_shadow_agreement{model="m",version="2"} 1.0' in text

    asyncio.run(scenario())


def test_shadows_are_shed_when_the_queue_is_full_or_production_is_busy(
    bundles: tuple[Path, Path],
) -> None:
    async def scenario() -> None:
        h = await _harness(bundles, _sleeping(0.2), queue_size=2, busy_in_flight=100)
        route = h.route(SHADOW, 100.0)
        job = ShadowJob(route, _request(h), [ImageResult([Prediction(0, "red", 1.0)])], "1", "id")
        offered = [h.shadow.offer(job) for _ in range(10)]
        assert offered.count(True) == 2  # the queue holds two; the worker has not run yet
        await asyncio.sleep(0)
        h.shadow.config = ShadowConfig(busy_in_flight=0)  # production counts as busy
        await h.shadow.run(job)
        await _close(h)
        text = h.metrics.render().decode()
        assert 'visionyard_shadow_shed_total{model="m",reason="queue_full"} 8.0' in text
        assert 'visionyard_shadow_shed_total{model="m",reason="busy"} 1.0' in text
        assert route.stats.shed == 9

    asyncio.run(scenario())


def test_a_shadow_runs_at_idle_priority_and_is_timed_by_its_own_cpu(
    bundles: tuple[Path, Path],
) -> None:
    policies: list[int] = []

    def waiting(run: Run) -> Run:  # 0.2 s of waiting (as if production took the core back)
        def wrapped(tensor: np.ndarray) -> dict[str, np.ndarray]:
            policies.append(os.sched_getscheduler(0))
            time.sleep(0.2)
            return run(tensor)

        return wrapped

    async def scenario() -> Route:
        h = await _harness(bundles, waiting, busy_in_flight=100)
        route = h.route(SHADOW, 100.0)
        await h.infer(2)
        for _ in range(100):
            if route.stats.shadow.compared >= 2:
                break
            await asyncio.sleep(0.02)
        await _close(h)
        return route

    route = asyncio.run(scenario())
    assert route.stats.shadow.compared == 2
    assert policies == [os.SCHED_IDLE] * 2  # lowered: it only takes cores production leaves
    latencies = list(route.stats.roles[SHADOW].latencies)
    assert len(latencies) == 2
    assert max(latencies) < 0.15  # its own CPU seconds, not the 0.2 s it waited


def test_a_shadow_that_never_got_a_core_before_its_timeout_is_shed_not_failed(
    bundles: tuple[Path, Path],
) -> None:
    async def scenario() -> tuple[Route, str]:
        h = await _harness(bundles, _sleeping(0.5), busy_in_flight=100, timeout_s=0.2, workers=2)
        route = h.route(SHADOW, 100.0)
        job = ShadowJob(route, _request(h), [ImageResult([Prediction(0, "red", 1.0)])], "1", "id")
        # the first holds the lane past its timeout (a candidate error); the second waits
        # behind it and never starts (production's spare capacity never came: shed, busy)
        await asyncio.gather(h.shadow.run(job), h.shadow.run(job))
        await asyncio.sleep(0.4)
        await _close(h)
        return route, h.metrics.render().decode()

    route, text = asyncio.run(scenario())
    shadow = route.stats.roles[SHADOW]
    assert (shadow.requests, shadow.errors) == (1, 1)
    assert route.stats.shed == 1
    assert 'visionyard_shadow_shed_total{model="m",reason="busy"} 1.0' in text


def _request(h: Harness) -> Any:
    contract = h.pool.current("m").session.contract
    return predict_request("m", [flat_png(COLOURS["red"])], contract)


class FakeWriter:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def offer(self, job: Any) -> bool:
        self.jobs.append(job)
        return True


def test_a_disagreeing_shadow_is_measured_and_its_images_captured(tmp_path: Path) -> None:
    production = write_colour_bundle(tmp_path / "p").path
    red_as_green = colour_classifier_onnx(RED_AS_GREEN)
    candidate = write_colour_bundle(tmp_path / "c", model=red_as_green).path

    async def scenario() -> tuple[Route, FakeWriter]:
        h = await _harness((production, candidate), _same, busy_in_flight=100)
        writer = FakeWriter()
        h.shadow.writer = cast(Any, writer)
        route = h.route(SHADOW, 100.0)
        await h.infer(4)
        for _ in range(100):
            if route.stats.shadow.compared >= 4:
                break
            await asyncio.sleep(0.02)
        await _close(h)
        return route, writer

    route, writer = asyncio.run(scenario())
    assert route.stats.shadow.compared == 4
    assert route.stats.shadow.agreement == 0.0
    assert len(writer.jobs) == 4
    job = writer.jobs[0]
    assert job.reasons == ("shadow_disagreement",)
    assert (job.version, job.answer["production_predicted"]) == ("2", "red")
    assert job.answer["predicted"] not in (None, "red")  # red moved onto green: read as black
