"""``visionyard deploy plan`` end to end: a real server on loopback, driven level by level, the
plan JSON that ``deploy k8s`` reads, and the refusals (unresolvable reference, a p99 target no
concurrency meets)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.cli import run, store_flags
from tests.registry_support import log_colour_run
from visionyard.deploy.plan import CapacityPlan, Level, choose, levels_for, read_plan
from visionyard.errors import ConfigError
from visionyard.settings import Settings


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Settings:
    """``colours@production`` (version 1) in a SQLite store of its own."""
    root = tmp_path_factory.mktemp("deploy-plan")
    home = root / ".visionyard"
    home.mkdir()
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "deploy-plan"})
    run_id = log_colour_run(settings, root)
    from visionyard.cli.main import main

    flags = store_flags(settings)
    assert main([*flags, "register", run_id, "--name", "colours"]) == 0
    assert main([*flags, "promote", "colours", "1", "--to", "production"]) == 0
    return settings


@pytest.mark.slow
def test_plan_measures_levels_and_writes_the_hpa_targets(
    store: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "plan.json"
    code, out, err = run(
        capsys, *store_flags(store), "deploy", "plan", "colours@production",
        "--p99-ms", "5000", "--seconds", "3", "--max-concurrency", "4", "--out", target,
    )  # fmt: skip
    assert code == 0, err
    plan = read_plan(target)
    assert plan.model.reference == "colours@production"
    assert plan.model.version == "1"
    assert plan.p99_target_ms == 5000
    concurrencies = [level.concurrency for level in plan.levels]
    assert concurrencies == [1, 2, 4][: len(concurrencies)]
    assert len(concurrencies) >= 2
    for level in plan.levels:
        assert level.failures == 0
        assert level.requests > 10
        assert 0 < level.p50_ms <= level.p99_ms < 5000
        # answers/s is what the client counted over the level, give or take the last requests
        expected = level.requests / plan.seconds_per_level
        assert 0.7 * expected < level.images_per_s < 1.3 * expected
        # the server's own in-flight gauge: never more than the clients, busy most of the time
        assert 0.3 * level.concurrency <= level.in_flight <= level.concurrency + 0.01
        assert level.cpu_cores is not None
        assert 0.05 < level.cpu_cores <= plan.host_cpus + 0.5
    assert plan.capacity in plan.levels
    hpa = plan.hpa
    assert hpa.metric == "visionyard_queue_depth"
    assert hpa.in_flight_per_pod == round(plan.capacity.in_flight * 0.8, 2)
    assert plan.capacity.cpu_cores is not None
    assert hpa.cpu_request_millicores is not None
    assert hpa.cpu_request_millicores >= plan.capacity.cpu_cores * 1000
    assert hpa.cpu_request_millicores % 100 == 0
    assert hpa.cpu_utilization_percent == 80
    assert hpa.images_per_s_per_pod == round(plan.capacity.images_per_s, 2)
    raw = json.loads(target.read_text())
    assert raw["kind"] == "visionyard.capacity-plan"
    assert raw["version"] == 1
    assert f"capacity: {plan.capacity.images_per_s:.1f} images/s per replica" in out
    assert f"HPA target: visionyard_queue_depth {hpa.in_flight_per_pod:g} per pod" in out
    assert f"plan written to {target}" in out
    assert "Traceback" not in err


@pytest.mark.slow
def test_plan_refuses_an_unresolvable_reference(
    store: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "plan.json"
    code, _, err = run(
        capsys, *store_flags(store), "deploy", "plan", "colours@staging", "--p99-ms", "100",
        "--out", target,
    )  # fmt: skip
    assert code == 3
    assert "model reference 'colours@staging' does not resolve" in err
    assert len(err.strip().splitlines()) == 1
    assert not target.exists()


@pytest.mark.slow
def test_plan_says_when_no_concurrency_meets_the_target(
    store: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "plan.json"
    code, _, err = run(
        capsys, *store_flags(store), "deploy", "plan", "colours@production", "--p99-ms", "0.1",
        "--seconds", "1", "--max-concurrency", "2", "--out", target,
    )  # fmt: skip
    assert code == 3, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: no concurrency meets p99 <= 0.1 ms: at concurrency 1 p99 is")
    p99 = float(last.split("p99 is ")[1].split(" ms")[0])
    assert p99 > 0.1
    assert not target.exists()
    assert "Traceback" not in err


def _level(concurrency: int, rate: float, p99: float, failures: int = 0) -> Level:
    return Level(
        concurrency=concurrency, images_per_s=rate, p50_ms=p99 / 2, p99_ms=p99,
        in_flight=concurrency, cpu_cores=1.0, requests=100, failures=failures,
    )  # fmt: skip


def test_choose_takes_the_lowest_concurrency_near_the_best_passing_rate() -> None:
    levels = [_level(1, 50, 20), _level(2, 90, 25), _level(4, 93, 40), _level(8, 200, 300)]
    assert choose(levels, 100).concurrency == 2  # 90 is within 5 % of 93; 8 misses p99
    assert choose(levels[:3] + [_level(8, 99, 50, failures=1)], 100).concurrency == 2
    with pytest.raises(ConfigError, match="at concurrency 1 p99 is 20.0 ms"):
        choose(levels, 10)
    assert levels_for(32) == [1, 2, 4, 8, 16, 32]
    assert levels_for(6) == [1, 2, 4, 6]
    assert levels_for(1) == [1]


def test_read_plan_refuses_what_is_not_a_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"kind": "visionyard.capacity-plan", "version": 1}))
    with pytest.raises(ConfigError, match="is not a capacity plan from 'visionyard deploy plan'"):
        read_plan(path)
    with pytest.raises(ConfigError, match="cannot read capacity plan"):
        read_plan(tmp_path / "missing.json")
    assert CapacityPlan.model_json_schema()["title"] == "CapacityPlan"
