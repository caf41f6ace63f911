"""Alert rules, their promtool test and the dashboard: generated from one source, querying only
metrics the server exports; ``visionyard deploy observability`` writes them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.nvml import FakeNvml
from visionyard.cli.main import main
from visionyard.deploy import observability as obs
from visionyard.deploy.dashboard import build_dashboard, dashboard_json
from visionyard.monitor import gpu
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.rest.hot import HTTP_STATUS
from visionyard.settings import Settings

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every sample name the server's /metrics can carry (GPU gauges through a fake NVML)."""
    monkeypatch.setattr(gpu, "load_nvml", lambda: FakeNvml(devices=1))
    names: set[str] = set()
    for family in ServingMetrics().registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def queried(text: str) -> set[str]:
    return set(re.findall(r"\bvisionyard_[a-z0-9_]+", text))


def dashboard_queries() -> list[str]:
    board = json.loads(dashboard_json())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_query_only_metrics_the_server_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = exported_names(monkeypatch)
    rules = "\n".join(a.expr for a in obs.alert_rules(Settings()))
    used = queried(rules) | queried("\n".join(dashboard_queries()))
    assert used - exported == set()
    for name in ("visionyard_drift_detected", "visionyard_gpu_memory_used_bytes"):
        assert name in used


def test_client_statuses_are_what_rest_answers_with_4xx() -> None:
    assert set(obs.CLIENT_STATUSES) == {code for code, http in HTTP_STATUS.items() if http < 500}


def test_the_six_alerts_and_their_thresholds_come_from_settings_and_parameters() -> None:
    settings = Settings(serving={"max_queue_size": 40})
    thresholds = obs.AlertThresholds(error_ratio=0.2, p99_seconds=0.25, drift_for="30m")
    alerts = {a.name: a for a in obs.alert_rules(settings, thresholds)}
    assert list(alerts) == [
        "VisionyardHighErrorRate",
        "VisionyardHighLatencyP99",
        "VisionyardQueueSaturated",
        "VisionyardModelLoadFailures",
        "VisionyardDrift",
        "VisionyardGpuMemoryHigh",
    ]
    assert alerts["VisionyardHighErrorRate"].expr.endswith("> 0.2")
    assert alerts["VisionyardHighLatencyP99"].expr.endswith("> 0.25")
    assert "visionyard_queue_depth) / 40 > 0.8" in alerts["VisionyardQueueSaturated"].expr
    assert alerts["VisionyardDrift"].hold == "30m"
    assert "== 1" in alerts["VisionyardDrift"].expr
    # the promtool test follows: drift for 30m fires after 30 minutes, not after 15
    checks = alerts["VisionyardDrift"].checks
    assert [c.eval_time for c in checks] == ["20m", "37m"]
    assert [c.fires for c in checks] == [[], [{"model": "m", "version": "2"}]]


def test_the_unit_test_expects_each_alert_firing_and_quiet() -> None:
    document = obs.rules_test(obs.alert_rules(Settings()))
    assert document["rule_files"] == ["alerts.yml"]
    by_name = {t["name"]: t for t in document["tests"]}
    assert set(by_name) == {a.name for a in obs.alert_rules(Settings())}
    for name in ("VisionyardHighErrorRate", "VisionyardDrift"):
        expected = [c["exp_alerts"] for c in by_name[name]["alert_rule_test"]]
        assert expected[0] == []  # not firing (yet)
        assert expected[1]  # firing
    fired = by_name["VisionyardHighErrorRate"]["alert_rule_test"][1]["exp_alerts"][0]
    assert fired["exp_labels"] == {"model": "hot", "severity": "critical"}
    assert fired["exp_annotations"]["summary"] == "hot: more than 5% of requests fail"


def test_dashboard_panels_cover_traffic_drift_capture_and_gpu() -> None:
    board = json.loads(dashboard_json())
    titles = [p["title"] for p in board["panels"]]
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == [
        "Traffic",
        "Drift",
        "Capture",
        "GPU",
    ]
    wanted = [
        "Requests per second",
        "Server-side error rate",
        "Latency p50 / p99",
        "Queue depth",
        "Batch size (mean)",
        "Drift verdict",
        "Drift p-value per feature",
        "Captured images per second",
        "Dropped captures per second",
        "GPU memory",
    ]
    assert [t for t in wanted if t not in titles] == []
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    assert board["uid"] == "visionyard-serving"
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "model"}


def test_every_dashboard_query_has_a_ref_id_and_filters_by_model_or_device() -> None:
    board = json.loads(dashboard_json())
    for panel in board["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert all(refs), panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for expr in dashboard_queries():
        assert 'model=~"$model"' in expr or "visionyard_gpu_" in expr, expr


def test_drift_verdict_maps_one_to_drift_in_red() -> None:
    verdict = next(p for p in json.loads(dashboard_json())["panels"] if p["type"] == "stat")
    options = verdict["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert options["1"] == {"text": "drift", "color": "red"}
    assert build_dashboard().title == "visionyard serving"


def test_cli_writes_the_four_files_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["deploy", "observability", "--out", str(tmp_path), "--target", "10.1.2.3:9000",
         "--error-ratio", "0.1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    for rel in ("prometheus/alerts.yml", "prometheus/alerts_test.yml",
                "prometheus/prometheus.yml", "grafana/visionyard.json"):  # fmt: skip
        assert (tmp_path / rel).is_file()
        assert str(tmp_path / rel) in printed
    assert "promtool test rules" in printed
    scrape = yaml.safe_load((tmp_path / "prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"] == [{"targets": ["10.1.2.3:9000"]}]
    assert scrape["rule_files"] == ["alerts.yml"]
    rules = yaml.safe_load((tmp_path / "prometheus/alerts.yml").read_text())
    error_rule = rules["groups"][0]["rules"][0]
    assert error_rule["alert"] == "VisionyardHighErrorRate"
    assert error_rule["expr"].endswith("> 0.1")
    assert json.loads((tmp_path / "grafana/visionyard.json").read_text())["panels"]


def test_cli_default_target_is_the_servers_http_port(tmp_path: Path) -> None:
    config = tmp_path / "vy.toml"
    config.write_text('[serving]\nhost = "0.0.0.0"\nhttp_port = 8500\n')
    assert main(["--config", str(config), "deploy", "observability", "--out", str(tmp_path)]) == 0
    scrape = yaml.safe_load((tmp_path / "prometheus/prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["0.0.0.0:8500"]


def test_cli_refuses_a_bad_duration_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["deploy", "observability", "--out", str(tmp_path), "--drift-for", "soon"])
    err = capsys.readouterr().err
    assert code == 3
    assert "--drift-for 'soon' is not a Prometheus duration" in err
    assert "Traceback" not in err
    assert not (tmp_path / "prometheus").exists()


def test_cli_without_the_dashboard_library_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "grafana_foundation_sdk", None)
    monkeypatch.setitem(sys.modules, "grafana_foundation_sdk.builders", None)
    code = main(["deploy", "observability", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 11
    assert "pip install 'visionyard[observability]'" in err
