"""The generated rules under the ecosystem's tools: ``promtool check rules`` and ``promtool test
rules``, and a real ``prometheus`` scraping a live server and evaluating the rules on its data.

Debian's ``prometheus`` package provides both binaries (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fixtures.runtime import COLOURS, write_colour_bundle
from tests.fixtures.serving import encoded, server
from visionyard.cli.main import main
from visionyard.deploy import observability as obs
from visionyard.serving.sources import LocalBundleSource
from visionyard.settings import Settings

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH (apt-get install prometheus; .ci/run does)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not on PATH (apt-get install prometheus; .ci/run does)"
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("observability")
    assert main(["deploy", "observability", "--out", str(out)]) == 0
    return out / "prometheus"


@needs_promtool
def test_promtool_checks_the_generated_rules(written: Path) -> None:
    result = promtool("check", "rules", "alerts.yml", cwd=written)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@needs_promtool
def test_promtool_runs_the_generated_unit_test(written: Path) -> None:
    result = promtool("test", "rules", "alerts_test.yml", cwd=written)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [  # each change breaks what the unit test expects of that alert
        ("VisionyardHighErrorRate", "> 0.05", "> 0.5"),  # the hot model no longer fires
        ("VisionyardHighErrorRate", "|image\\\\.invalid", ""),  # client errors would count
        ("VisionyardDrift", "== 1", "== 0"),  # fires on the quiet series
    ],
)
def test_the_unit_test_fails_when_an_alert_is_wrong(
    written: Path, tmp_path: Path, alert: str, old: str, new: str
) -> None:
    rules = yaml.safe_load((written / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] == alert:
            assert old in rule["expr"]
            rule["expr"] = rule["expr"].replace(old, new)
    (tmp_path / "alerts.yml").write_text(obs.dump_yaml(rules))
    shutil.copy(written / "alerts_test.yml", tmp_path)
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@needs_promtool
def test_drift_must_hold_for_its_duration(tmp_path: Path) -> None:
    alerts = obs.alert_rules(Settings())
    drift = next(a for a in alerts if a.name == "VisionyardDrift")
    rules = obs.rules_document([drift])
    rules["groups"][0]["rules"][0]["for"] = "0m"  # fires at once: the "not yet" check fails
    (tmp_path / "alerts.yml").write_text(obs.dump_yaml(rules))
    (tmp_path / "alerts_test.yml").write_text(obs.dump_yaml(obs.rules_test([drift])))
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert 'version="2"' in result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """A function that starts a real prometheus scraping ``target`` every second."""
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str, rules_dir: Path) -> str:
        assert PROMETHEUS is not None
        config = obs.scrape_config(target, interval="1s")
        shutil.copy(rules_dir / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "prometheus.yml").write_text(obs.dump_yaml(config))
        port = _free_port()
        args = [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with (tmp_path / "prometheus.log").open("wb") as log:  # the child keeps its own copy
            started.append(subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True))
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _until(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def _query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = client.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.mark.slow
@needs_prometheus
def test_a_real_prometheus_scrapes_the_server_and_evaluates_the_rules(
    tmp_path: Path, written: Path, prometheus_for: Any
) -> None:
    bundle = write_colour_bundle(tmp_path / "colour")
    with server({"colour": LocalBundleSource(bundle.path, "3")}) as running:
        target = running.http_url.removeprefix("http://")
        base = prometheus_for(target, written)
        with httpx.Client(base_url=base, timeout=10) as prom:
            _until("prometheus ready", lambda: prom.get("/-/ready").status_code == 200)
            _until("a first scrape", lambda: _query(prom, 'up{job="visionyard"} == 1'))
            ok = 'sum(visionyard_requests_total{model="colour",status="ok"})'
            with httpx.Client(base_url=running.http_url, timeout=30) as http:
                _predict(http, 1)  # series are born on a first request: let a scrape see them,
                _until("the first request", lambda: _query(prom, f"{ok} >= 1"))
                _predict(http, 4)  # so that rate() sees the next ones as an increase
            found = _until("5 requests counted", lambda: _query(prom, f"{ok} >= 5"))
            assert float(found[0]["value"][1]) == 5
            for alert in obs.alert_rules(Settings())[1:3]:  # p99 latency, queue saturation
                below = alert.expr.rsplit(">", 1)[0] + ">= 0"  # its query, any value
                rows = _until(f"{alert.name}'s query on live data", lambda e=below: _query(prom, e))
                assert [r["metric"]["model"] for r in rows] == ["colour"]
            rules = _until("rules evaluated", lambda: _evaluated(prom))
    assert {r["name"] for r in rules} == {a.name for a in obs.alert_rules(Settings())}
    assert {r["health"] for r in rules} == {"ok"}, rules
    assert {r["state"] for r in rules} == {"inactive"}  # a healthy server: nothing fires


def _predict(http: httpx.Client, count: int) -> None:
    for _ in range(count):
        answer = http.post("/v1/models/colour:predict", content=encoded(COLOURS["red"]))
        assert answer.status_code == 200


def _evaluated(prom: httpx.Client) -> list[dict[str, Any]]:
    groups = prom.get("/api/v1/rules").json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return (
        rules
        if rules and all(r.get("lastEvaluation", "0001").startswith("2") for r in rules)
        else []
    )
