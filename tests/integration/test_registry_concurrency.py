"""Promotions racing on one alias from real concurrent processes, against the PostgreSQL-backed
``mlflow server`` (``VISIONYARD_TEST_BACKEND=postgres``; skipped on SQLite).

Each child process runs ``visionyard promote`` several times through the CLI, with random
delays around its registry writes so that moves interleave, and prints the key of every event
it appended. At the end: the alias equals the last event of its history, and every appended
event is in the history (none lost, none invented).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures.tracking import tracking_env
from tests.registry_support import log_colour_run
from visionyard.cli.main import main
from visionyard.registry.history import parse_history
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient

PROCESSES = 4
PROMOTIONS = 4
VERSIONS = ("1", "2", "3", "4")

CHILD = textwrap.dedent(
    """
    import json, random, sys, time
    from visionyard.cli.main import main
    from visionyard.tracking.registry_client import RegistryClient

    name, start_at, seed, versions = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    rng = random.Random(seed)
    write_tag, write_alias = RegistryClient.set_model_tag, RegistryClient.set_alias

    def set_model_tag(self, model, key, value):
        time.sleep(rng.random() * 0.05)
        write_tag(self, model, key, value)
        if key.startswith("vy.event."):
            print(json.dumps({"appended": key}), flush=True)
        time.sleep(rng.random() * 0.05)

    def set_alias(self, model, alias, version):
        time.sleep(rng.random() * 0.05)
        write_alias(self, model, alias, version)

    RegistryClient.set_model_tag, RegistryClient.set_alias = set_model_tag, set_alias
    while time.time() < start_at:
        time.sleep(0.005)
    for version in versions:
        rc = main(["promote", name, version, "--to", "production", "--reason", f"p{seed}"])
        print(json.dumps({"version": version, "rc": rc}), flush=True)
    """
)


@pytest.fixture
def model(tracking_settings: Settings, tracking_backend: str, tmp_path: Path) -> str:
    if tracking_backend != "postgres":
        pytest.skip("needs the PostgreSQL-backed mlflow server (VISIONYARD_TEST_BACKEND=postgres)")
    name = f"race-{uuid.uuid4().hex[:8]}"
    flags = [
        "--home",
        str(tracking_settings.home),
        "--tracking-uri",
        tracking_settings.tracking_uri(),
    ]
    for sharpness in (10.0, 20.0, 30.0, 40.0):
        run = log_colour_run(tracking_settings, tmp_path, sharpness=sharpness)
        assert main([*flags, "register", run, "--name", name]) == 0
    return name


def test_racing_promotions_keep_alias_and_history_consistent(
    model: str, tracking_settings: Settings, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    start_at = time.time() + 8.0  # every child has imported mlflow by then
    children = []
    for seed in range(PROCESSES):
        order = [VERSIONS[(seed + i) % len(VERSIONS)] for i in range(PROMOTIONS)]
        cmd = [sys.executable, str(script), model, str(start_at), str(seed), *order]
        children.append(
            subprocess.Popen(cmd, env=tracking_env(tracking_settings), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )  # fmt: skip
    outputs = [child.communicate(timeout=300) for child in children]
    appended: list[str] = []
    codes: list[int] = []
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr[-2000:]
        for line in stdout.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                appended += [record["appended"]] if "appended" in record else []
                codes += [record["rc"]] if "rc" in record else []
    assert len(codes) == PROCESSES * PROMOTIONS
    errors = "".join(err for _, err in outputs)
    assert set(codes) <= {0, 9}, errors[-3000:]  # 9: a concurrent move detected and reported
    assert 0 in codes

    model_info = RegistryClient.from_settings(tracking_settings).get_model(model)
    events = [e for e in parse_history(model_info.tags) if e.alias == "production"]
    assert sorted(e.key for e in events) == sorted(appended)  # none lost, none invented
    assert len(set(appended)) == len(appended)
    assert model_info.aliases["production"] == events[-1].to_version
    raced, stale = errors.count("a concurrent move of"), errors.count("moved while this command")
    assert raced + stale == codes.count(9)
    print(
        f"{len(appended)} events from {len(codes)} promotions: {codes.count(0)} applied or "
        f"no-op, {stale} refused at the compare step, {raced} superseded after appending"
    )
