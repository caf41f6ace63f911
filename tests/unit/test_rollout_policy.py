"""The rollout policy file: defaults, validation in one line, gate path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionyard.errors import ConfigError
from visionyard.monitor.rollout.policy import Policy, load_policy, parse_policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rollout.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_policy_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "min_requests: 50\nmin_step_seconds: 0\nmax_error_rate: 0.02\n"
        "max_p99_latency_ratio: 2\nmin_agreement: 0.8\nmax_drift: 0.5\nsteps: [5, 50, 100]\n"
        "gate: gates/gate.yaml\n",
    )
    policy = load_policy(path)
    assert policy.min_requests == 50
    assert policy.steps == (5, 50, 100)
    assert policy.gate == str((tmp_path / "gates" / "gate.yaml").resolve())


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "")) == Policy()


def test_an_unknown_key_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy(write(tmp_path, "max_errors: 0.1\n"))
    message = str(caught.value)
    assert "\n" not in message
    assert "unknown key 'max_errors'" in message
    assert "max_error_rate" in message  # the allowed keys name the fix


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ("max_error_rate: 1.5\n", "max_error_rate", "between 0 and 1"),
        ("max_p99_latency_ratio: 0.9\n", "max_p99_latency_ratio", "above 1"),
        ("min_requests: 0\n", "min_requests", ">= 1"),
        ("min_agreement: -0.1\n", "min_agreement", "between 0 and 1"),
        ("steps: [50, 25]\n", "steps", "increasing"),
        ("steps: [0, 100]\n", "steps", "between 1 and 100"),
        ("min_step_seconds: soon\n", "min_step_seconds", "seconds"),
    ],
)
def test_an_impossible_value_is_one_line_with_the_fix(
    tmp_path: Path, text: str, key: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy(write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{key}:" in message
    assert fix in message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_policy(write(tmp_path, "- 1\n- 2\n"))


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read rollout policy"):
        load_policy(tmp_path / "nope.yaml")


def test_parse_policy_round_trips_through_json() -> None:
    policy = parse_policy({"steps": [10, 100], "max_drift": 0})
    assert Policy.model_validate(policy.model_dump(mode="json")) == policy


def test_max_duration_is_optional_and_must_be_positive(tmp_path: Path) -> None:
    assert Policy().max_duration_seconds is None
    assert load_policy(write(tmp_path, "max_duration_seconds: 3600\n")).max_duration_seconds == 3600
    with pytest.raises(ConfigError) as caught:
        load_policy(write(tmp_path, "max_duration_seconds: 0\n"))
    assert "\n" not in str(caught.value)
    assert "max_duration_seconds" in str(caught.value)
