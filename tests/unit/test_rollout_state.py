"""The rollout state: JSON round trip, share, and reads of missing or garbled tags."""

from __future__ import annotations

import json

import pytest

from visionyard.errors import RegistryError
from visionyard.monitor.rollout.events import new_event
from visionyard.monitor.rollout.policy import Policy
from visionyard.monitor.rollout.state import ROLLOUT_TAG, Rollout, read_rollout
from visionyard.tracking.registry_client import ModelInfo


def rollout(**changes: object) -> Rollout:
    base = Rollout(
        model="m", rollout_id="r1", candidate="2", baseline="1", mode="canary",
        steps=(5, 25, 100), step=0, step_started_at=100.0, sticky_header="X-User",
        policy=Policy(min_requests=10), status="running", started_at=100.0,
    )  # fmt: skip
    return base.evolve(**changes)


class Reader:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags
        self.reads = 0

    def get_model(self, name: str) -> ModelInfo:
        self.reads += 1
        return ModelInfo(name, 0, 0, "", None, dict(self.tags), {"production": "1"})


def test_json_round_trip_keeps_every_field() -> None:
    done = rollout(status="rolled_back", decided_at=200.0, reason="x", figures={"a": 1.5},
                   rule="max_error_rate", basis="k")  # fmt: skip
    assert Rollout.from_json(done.to_json()) == done
    assert json.loads(done.to_json())["schema"] == 1


def test_share_is_the_step_while_running_else_zero() -> None:
    assert rollout(step=1).share == 25
    assert rollout(status="promoted").share == 0


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"schema": 99}', json.dumps({**rollout().to_dict(), "step": 7})]
)
def test_a_garbled_projection_is_a_registry_error_naming_the_fix(text: str) -> None:
    with pytest.raises(RegistryError, match="delete_registered_model_tag"):
        read_rollout(Reader({ROLLOUT_TAG: text}), "m")


def test_no_rollout_is_none_in_one_read() -> None:
    reader = Reader({"vy.event.1": "{}", "other": "x"})
    assert read_rollout(reader, "m") is None
    assert reader.reads == 1


def test_the_chain_head_wins_over_the_projection_in_one_read() -> None:
    start = new_event(None, "start", rollout(), "ann")
    advance = new_event(start.key, "advance", rollout(step=1), "bob")
    tags = dict([start.to_tag(), advance.to_tag(), (ROLLOUT_TAG, start.state.to_json())])
    reader = Reader(tags)
    found = read_rollout(reader, "m")
    assert found is not None
    assert (found.step, found.basis, reader.reads) == (1, advance.key, 1)


def test_a_garbled_event_is_a_registry_error() -> None:
    start = new_event(None, "start", rollout(), "ann")
    with pytest.raises(RegistryError, match="unreadable"):
        read_rollout(Reader({start.key: '{"kind": "start"}'}), "m")


def test_a_service_with_a_client_is_accepted() -> None:
    class Service:
        client = Reader({ROLLOUT_TAG: rollout().to_json()})

    found = read_rollout(Service(), "m")
    assert found is not None
    assert found.rollout_id == "r1"
