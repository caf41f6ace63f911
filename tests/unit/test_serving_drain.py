"""The data plane's drain (SIGTERM): not ready at once, new inference refused retryably with
the draining state named, the REST reply closing its connection, idle waiting bounded."""

from __future__ import annotations

import asyncio

import pytest

from visionyard.serving.dataplane import DRAINING, DataPlane
from visionyard.serving.errors import ModelUnavailableError
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.rest.hot import error_reply
from visionyard.serving.types import InferRequest


def _plane() -> DataPlane:
    metrics = ServingMetrics()
    return DataPlane(ModelPool({}, PoolConfig(), metrics), metrics)


def test_drain_turns_not_ready_and_refuses_new_inference_retryably() -> None:
    plane = _plane()
    assert plane.ready()
    plane.drain()
    assert not plane.ready()
    assert plane.live()
    with pytest.raises(ModelUnavailableError) as caught:
        asyncio.run(plane.infer(InferRequest("m", None, []), "rest"))
    assert caught.value.state == DRAINING
    assert caught.value.code == "serving.unavailable"
    reply = error_reply(caught.value)
    assert reply.status == 503
    assert reply.headers["Connection"] == "close"
    assert plane.in_flight == 0


def test_a_busy_or_unloaded_model_keeps_its_connection() -> None:
    reply = error_reply(ModelUnavailableError("m", "loading"))
    assert reply.status == 503
    assert "Connection" not in reply.headers


def test_wait_idle_returns_when_requests_finish_or_time_is_up() -> None:
    plane = _plane()
    assert asyncio.run(plane.wait_idle(0.0))
    plane.in_flight = 1
    assert not asyncio.run(plane.wait_idle(0.05))

    async def finish_soon() -> bool:
        asyncio.get_running_loop().call_later(0.05, lambda: setattr(plane, "in_flight", 0))
        return await plane.wait_idle(5.0)

    assert asyncio.run(finish_soon())


def test_the_server_exits_before_the_kubelet_kills_it() -> None:
    """The server gives up ``STOP_MARGIN_S`` after ``drain_s``; the pod's grace period leaves
    ``GRACE_MARGIN_S`` after the drain (on top of the preStop sleep): the first must be less."""
    from visionyard.cli.serve import STOP_MARGIN_S
    from visionyard.deploy.spec import GRACE_MARGIN_S, PRESTOP_SLEEP_S, grace_period_s
    from visionyard.settings import Settings

    assert STOP_MARGIN_S < GRACE_MARGIN_S
    settings = Settings(serving={"drain_s": 7.5})
    assert grace_period_s(settings) >= PRESTOP_SLEEP_S + 7.5 + STOP_MARGIN_S
