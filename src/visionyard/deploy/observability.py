"""Prometheus alerting rules, their promtool unit test and a scrape config, from one source.

:func:`alert_rules` is the one source: each :class:`Alert` carries its PromQL, how long it must
hold, its labels and text, and the input series that make it fire (and stay quiet) in the
``promtool test rules`` file that :func:`rules_test` writes beside it. Thresholds come from
:class:`AlertThresholds` (defaults below) and the server's settings (``serving.max_queue_size``
is the per-model limit that queue saturation is measured against). :func:`write_observability`
writes ``prometheus/alerts.yml``, ``prometheus/alerts_test.yml``, ``prometheus/prometheus.yml``
and ``grafana/visionyard.json``.

Metric and label names are the server's (``serving/metrics.py``, ``monitor/gpu.py``); a test
checks that every metric the rules and the dashboard query is one the server exports. Written
by hand because no Python library generates Prometheus rule files: they are plain YAML, checked
with the ecosystem's own tool (``promtool check rules`` / ``test rules``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visionyard.settings import Settings

#: Request statuses that are the client's fault (the REST adapter answers them with 4xx); every
#: other status but "ok" counts as a server-side error.
CLIENT_STATUSES = (
    "inference.invalid_input",
    "image.invalid",
    "image.too_large",
    "not_found",
    "serving.unauthorized",
    "serving.forbidden",
    "serving.body_too_large",
)
_NOT_ERRORS = "|".join(re.escape(s).replace("\\", "\\\\") for s in ("ok", *CLIENT_STATUSES))
#: PromQL label matcher of the requests that failed on the server side.
FAILED = f'status!~"{_NOT_ERRORS}"'
GROUP = "visionyard"


@dataclass(frozen=True)
class AlertThresholds:
    """When each alert fires; durations are Prometheus durations (``5m``, ``1h``)."""

    error_ratio: float = 0.05  # share of requests failing on the server side
    p99_seconds: float = 1.0  # end-to-end (stage="total") 99th percentile
    queue_ratio: float = 0.8  # requests in flight / serving.max_queue_size
    gpu_memory_ratio: float = 0.9
    rate_window: str = "5m"
    error_for: str = "5m"
    latency_for: str = "10m"
    queue_for: str = "5m"
    drift_for: str = "15m"
    gpu_for: str = "10m"
    load_failure_window: str = "15m"


@dataclass(frozen=True)
class Check:
    """The alerts expected to fire at one evaluation time of the promtool test."""

    eval_time: str
    fires: list[dict[str, str]]  # each firing alert's labels (besides severity); [] = quiet


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    hold: str
    severity: str
    summary: str
    description: str
    series: dict[str, str] = field(default_factory=dict)  # promtool input: selector -> values
    checks: list[Check] = field(default_factory=list)

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.hold,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def alert_rules(settings: Settings, thresholds: AlertThresholds | None = None) -> list[Alert]:
    """The alerts, in the order they appear in ``alerts.yml``."""
    t = thresholds or AlertThresholds()
    return [
        _error_rate(t),
        _latency(t),
        _queue(t, settings.serving.max_queue_size),
        _load_failures(t),
        _drift(t),
        _gpu_memory(t),
    ]


def _error_rate(t: AlertThresholds) -> Alert:
    window = t.rate_window
    failed = f"visionyard_requests_total{{{FAILED}}}"
    expr = (
        f"sum by (model) (rate({failed}[{window}]))\n"
        f"  / sum by (model) (rate(visionyard_requests_total[{window}]))\n"
        f"  > {t.error_ratio:g}"
    )
    ok, bad = 100, math.ceil(100 * 2 * t.error_ratio / (1 - t.error_ratio))
    quiet = math.floor(100 * t.error_ratio / 2)
    series = {
        _requests("hot", "ok"): f"0+{ok}x40",
        _requests("hot", "inference.failed"): f"0+{bad}x40",
        _requests("calm", "ok"): f"0+{ok}x40",
        _requests("calm", "serving.unavailable"): f"0+{quiet}x40",
        _requests("calm", "image.invalid"): f"0+{10 * ok}x40",  # the client's fault
    }
    return Alert(
        "VisionyardHighErrorRate",
        expr,
        t.error_for,
        "critical",
        "{{ $labels.model }}: more than " + _percent(t.error_ratio) + " of requests fail",
        f"Over {window}, more than {_percent(t.error_ratio)} of the requests to model "
        "{{ $labels.model }} failed on the server side (client errors such as invalid images "
        "do not count). Check the server log and visionyard_model_load_failures_total.",
        series,
        [Check("2m", []), Check("20m", [{"model": "hot"}])],
    )


def _requests(model: str, status: str) -> str:
    return (
        f'visionyard_requests_total{{model="{model}",version="1",protocol="rest",'
        f'status="{status}"}}'
    )


def _latency(t: AlertThresholds) -> Alert:
    expr = (
        "histogram_quantile(0.99, sum by (model, le) "
        f'(rate(visionyard_request_duration_seconds_bucket{{stage="total"}}[{t.rate_window}])))\n'
        f"  > {t.p99_seconds:g}"
    )
    return Alert(
        "VisionyardHighLatencyP99",
        expr,
        t.latency_for,
        "warning",
        "{{ $labels.model }}: p99 latency above " + f"{t.p99_seconds:g} s",
        f"The 99th percentile of end-to-end request time of model {{{{ $labels.model }}}} has "
        f"been above {t.p99_seconds:g} s for {t.latency_for}. Compare the queue, preprocess "
        "and inference stages of visionyard_request_duration_seconds to see where the time goes.",
        _latency_series(t.p99_seconds),
        [Check("30m", [{"model": "slow"}])],
    )


def _latency_series(p99: float) -> dict[str, str]:
    """Model "slow" answers every request above the threshold, "fast" every one far below."""
    series: dict[str, str] = {}
    for model in ("slow", "fast"):
        base = (
            f'visionyard_request_duration_seconds_bucket{{model="{model}",version="1",'
            'protocol="rest",stage="total"'
        )
        series[f'{base},le="{p99 / 10:g}"}}'] = "0+0x40" if model == "slow" else "0+10x40"
        series[f'{base},le="{p99 * 10:g}"}}'] = "0+10x40"
        series[f'{base},le="+Inf"}}'] = "0+10x40"
    return series


def _queue(t: AlertThresholds, max_queue_size: int) -> Alert:
    limit = max(1, max_queue_size)
    full = min(limit, math.floor(t.queue_ratio * limit) + 1)
    return Alert(
        "VisionyardQueueSaturated",
        f"max by (model) (visionyard_queue_depth) / {limit} > {t.queue_ratio:g}",
        t.queue_for,
        "warning",
        "{{ $labels.model }}: queue above " + _percent(t.queue_ratio) + " of its limit",
        f"Model {{{{ $labels.model }}}} has held more than {_percent(t.queue_ratio)} of its "
        f"{limit} admitted requests (serving.max_queue_size) for {t.queue_for}; beyond the "
        "limit requests are refused (serving.busy). Add workers or replicas.",
        {
            'visionyard_queue_depth{model="busy"}': f"{full}x30",
            'visionyard_queue_depth{model="idle"}': "1x30",
        },
        [Check("2m", []), Check("20m", [{"model": "busy"}])],
    )


def _load_failures(t: AlertThresholds) -> Alert:
    window = t.load_failure_window
    return Alert(
        "VisionyardModelLoadFailures",
        f"increase(visionyard_model_load_failures_total[{window}]) > 0",
        "0m",
        "critical",
        "{{ $labels.model }}: a version failed to load",
        f"In the last {window} a version of model {{{{ $labels.model }}}} failed to resolve, "
        "load or pass its checksum check; the server keeps serving the version it had. See "
        "the server log for the reason.",
        {
            'visionyard_model_load_failures_total{model="broken"}': "0x5 1x30",
            'visionyard_model_load_failures_total{model="fine"}': "0x35",
        },
        [Check("3m", []), Check("10m", [{"model": "broken"}])],
    )


def _drift(t: AlertThresholds) -> Alert:
    hold = _minutes(t.drift_for)
    blip = max(1, hold // 2)
    return Alert(
        "VisionyardDrift",
        "visionyard_drift_detected == 1",
        t.drift_for,
        "warning",
        "{{ $labels.model }} version {{ $labels.version }}: live traffic drifts",
        "The live window of model {{ $labels.model }} version {{ $labels.version }} has "
        f"differed from the version's reference profile for {t.drift_for}. See "
        "visionyard_drift_p_value by feature, GET /v2/models/{{ $labels.model }}/monitor and "
        "visionyard monitor report.",
        # version 2 drifts from minute 5 on; version 1 flips on and off, never long enough
        {
            'visionyard_drift_detected{model="m",version="2"}': f"0x4 1x{hold * 3}",
            'visionyard_drift_detected{model="m",version="1"}': f"0x4 {'1 ' * blip}0x{hold * 3}",
        },
        [Check(f"{5 + blip}m", []), Check(f"{5 + hold + 2}m", [{"model": "m", "version": "2"}])],
    )


def _gpu_memory(t: AlertThresholds) -> Alert:
    full = math.ceil(t.gpu_memory_ratio * 100) + 1 if t.gpu_memory_ratio < 0.99 else 100
    return Alert(
        "VisionyardGpuMemoryHigh",
        "visionyard_gpu_memory_used_bytes / visionyard_gpu_memory_total_bytes"
        f" > {t.gpu_memory_ratio:g}",
        t.gpu_for,
        "warning",
        "GPU {{ $labels.device }}: memory above " + _percent(t.gpu_memory_ratio),
        f"GPU {{{{ $labels.device }}}} has used more than {_percent(t.gpu_memory_ratio)} of its "
        f"memory for {t.gpu_for}; larger batches or another model will fail to allocate.",
        {
            'visionyard_gpu_memory_used_bytes{device="0"}': f"{full}x30",
            'visionyard_gpu_memory_total_bytes{device="0"}': "100x30",
            'visionyard_gpu_memory_used_bytes{device="1"}': "10x30",
            'visionyard_gpu_memory_total_bytes{device="1"}': "100x30",
        },
        [Check("2m", []), Check("20m", [{"device": "0"}])],
    )


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _minutes(duration: str) -> int:
    """Whole minutes of a Prometheus duration (``15m``, ``1h``, ``90s``), at least one."""
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    total = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", duration))
    return max(1, math.ceil(total))


def rules_document(alerts: list[Alert]) -> dict[str, Any]:
    return {"groups": [{"name": GROUP, "rules": [a.rule() for a in alerts]}]}


def rules_test(alerts: list[Alert], rule_file: str = "alerts.yml") -> dict[str, Any]:
    """A ``promtool test rules`` file: one test per alert, series one minute apart."""
    tests = [
        {
            "name": alert.name,
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in alert.series.items()],
            "alert_rule_test": [
                {
                    "eval_time": check.eval_time,
                    "alertname": alert.name,
                    "exp_alerts": [_expected(alert, labels) for labels in check.fires],
                }
                for check in alert.checks
            ],
        }
        for alert in alerts
    ]
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def _expected(alert: Alert, labels: dict[str, str]) -> dict[str, Any]:
    rendered = {k: _render(v, labels) for k, v in alert.rule()["annotations"].items()}
    return {"exp_labels": {**labels, "severity": alert.severity}, "exp_annotations": rendered}


def _render(template: str, labels: dict[str, str]) -> str:
    """The annotation as Prometheus renders it: only ``{{ $labels.x }}`` is used."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def scrape_config(target: str, interval: str = "15s") -> dict[str, Any]:
    """``prometheus.yml`` scraping one ``visionyard serve`` at ``target`` (host:port)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "visionyard",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target]}],
            }
        ],
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, so the file reads like the query."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def write_observability(
    out: Path,
    settings: Settings,
    thresholds: AlertThresholds | None = None,
    target: str | None = None,
) -> list[Path]:
    """Write the Prometheus and Grafana files under ``out``; return their paths. Prometheus
    scrapes ``target`` (host:port), by default the server's ``serving.host:http_port``."""
    from visionyard.deploy.dashboard import dashboard_json

    alerts = alert_rules(settings, thresholds)
    target = target or f"{settings.serving.host}:{settings.serving.http_port}"
    files = {
        out / "prometheus" / "alerts.yml": dump_yaml(rules_document(alerts)),
        out / "prometheus" / "alerts_test.yml": dump_yaml(rules_test(alerts)),
        out / "prometheus" / "prometheus.yml": dump_yaml(scrape_config(target)),
        out / "grafana" / "visionyard.json": dashboard_json(),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
