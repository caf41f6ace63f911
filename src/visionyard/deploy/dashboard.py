"""The Grafana dashboard of a visionyard server, built with grafana-foundation-sdk.

Grafana's own typed builders (``pip install 'visionyard[observability]'``) produce the dashboard
JSON, so its structure follows Grafana's schema rather than a hand-written dict. Rows: traffic
(request and error rate per model, latency p50/p99 per model and served version, queue depth,
batch size), drift (the verdict, p-value and statistic per feature, class shares, confidence
quantiles, window size), capture (written and dropped images), GPU (utilisation, memory,
temperature, power). A ``datasource`` variable picks the Prometheus and a ``model`` variable
filters every query.
"""

from __future__ import annotations

import json
from typing import Any

from visionyard.deploy.observability import FAILED
from visionyard.errors import DependencyMissingError

UID = "visionyard-serving"
TITLE = "visionyard serving"
_RATE = "$__rate_interval"
_M = 'model=~"$model"'


def _sdk() -> Any:
    try:
        from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
        from grafana_foundation_sdk.models import dashboard as models
    except ImportError as exc:
        raise DependencyMissingError("grafana-foundation-sdk", "observability") from exc
    return dashboard, prometheus, stat, timeseries, models


def _query(expr: str, legend: str) -> Any:
    _, prometheus, _, _, _ = _sdk()
    return prometheus.Dataquery().expr(expr).legend_format(legend)


def _series(title: str, unit: str, queries: list[tuple[str, str]], description: str) -> Any:
    _, _, _, timeseries, models = _sdk()
    panel = timeseries.Panel().title(title).unit(unit).description(description).span(12)
    panel = panel.height(8).datasource(models.DataSourceRef("prometheus", "${datasource}"))
    for ref, (expr, legend) in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(_query(expr, legend).ref_id(ref))
    return panel


def _latency(q: str) -> str:
    """Per model and version (a canary, a swap): the histogram carries the version label."""
    return (
        f"histogram_quantile({q}, sum by (model, version, le) "
        f'(rate(visionyard_request_duration_seconds_bucket{{stage="total",{_M}}}[{_RATE}])))'
    )


def _traffic() -> list[Any]:
    failed = FAILED
    return [
        _series(
            "Requests per second",
            "reqps",
            [(f"sum by (model) (rate(visionyard_requests_total{{{_M}}}[{_RATE}]))", "{{model}}")],
            "Inference requests per model, every outcome.",
        ),
        _series(
            "Server-side error rate",
            "percentunit",
            [
                (
                    f"sum by (model) (rate(visionyard_requests_total{{{failed},{_M}}}[{_RATE}]))"
                    f" / sum by (model) (rate(visionyard_requests_total{{{_M}}}[{_RATE}]))",
                    "{{model}}",
                )
            ],
            "Share of requests that failed on the server side (client errors do not count).",
        ),
        _series(
            "Latency p50 / p99",
            "s",
            [
                (_latency("0.5"), "p50 {{model}} v{{version}}"),
                (_latency("0.99"), "p99 {{model}} v{{version}}"),
            ],
            "End-to-end request time per model and version (canaries and swaps apart).",
        ),
        _series(
            "Queue depth",
            "short",
            [(f"sum by (model) (visionyard_queue_depth{{{_M}}})", "{{model}}")],
            "Requests admitted and not finished; at serving.max_queue_size new ones are refused.",
        ),
        _series(
            "Batch size (mean)",
            "short",
            [
                (
                    f"sum by (model) (rate(visionyard_batch_size_sum{{{_M}}}[{_RATE}]))"
                    f" / sum by (model) (rate(visionyard_batch_size_count{{{_M}}}[{_RATE}]))",
                    "{{model}}",
                )
            ],
            "Images per executed batch.",
        ),
    ]


def _verdict() -> Any:
    _, _, stat, _, models = _sdk()
    mapping = models.ValueMap(
        {
            "0": models.ValueMappingResult(text="ok", color="green"),
            "1": models.ValueMappingResult(text="drift", color="red"),
        }
    )
    panel = stat.Panel().title("Drift verdict").span(12).height(8)
    panel = panel.datasource(models.DataSourceRef("prometheus", "${datasource}"))
    panel = panel.description("1 when any feature of the live window drifts from the reference.")
    panel = panel.mappings([mapping]).no_value("no window yet")
    return panel.with_target(
        _query(
            f"max by (model, version) (visionyard_drift_detected{{{_M}}})",
            "{{model}} v{{version}}",
        ).ref_id("A")
    )


def _drift() -> list[Any]:
    feature = "{{model}} v{{version}} {{feature}}"
    return [
        _verdict(),
        _series(
            "Drift p-value per feature",
            "short",
            [(f"visionyard_drift_p_value{{{_M}}}", feature)],
            "Corrected (Benjamini-Hochberg) p-value; below monitor.alpha is drift.",
        ),
        _series(
            "Drift statistic per feature",
            "short",
            [(f"visionyard_drift_statistic{{{_M}}}", feature)],
            "KS / chi-square / MMD statistic of the live window against the reference.",
        ),
        _series(
            "Class share",
            "percentunit",
            [(f"visionyard_class_share{{{_M}}}", "{{model}} v{{version}} {{label}}")],
            "Share of each predicted class in the live window.",
        ),
        _series(
            "Top-1 confidence quantiles",
            "percentunit",
            [(f"visionyard_confidence_quantile{{{_M}}}", "{{model}} v{{version}} q{{quantile}}")],
            "Quantiles of the top-1 confidence over the live window.",
        ),
        _series(
            "Live window size",
            "short",
            [(f"visionyard_monitor_window_size{{{_M}}}", "{{model}} v{{version}}")],
            "Images in the live window; too few means not enough data, never drift.",
        ),
    ]


def _capture() -> list[Any]:
    return [
        _series(
            "Captured images per second",
            "short",
            [(f"sum by (model) (rate(visionyard_captured_total{{{_M}}}[{_RATE}]))", "{{model}}")],
            "Hard images written by the capture writer.",
        ),
        _series(
            "Dropped captures per second",
            "short",
            [
                (
                    "sum by (model, reason) "
                    f"(rate(visionyard_capture_dropped_total{{{_M}}}[{_RATE}]))",
                    "{{model}} {{reason}}",
                )
            ],
            "Images the writer dropped: queue_full, rate_limit, quota, write_error.",
        ),
    ]


def _gpu() -> list[Any]:
    return [
        _series(
            "GPU utilisation",
            "percentunit",
            [("visionyard_gpu_utilization_ratio", "GPU {{device}}")],
            "Share of time a kernel ran (absent without an NVIDIA GPU).",
        ),
        _series(
            "GPU memory",
            "bytes",
            [
                ("visionyard_gpu_memory_used_bytes", "used {{device}}"),
                ("visionyard_gpu_memory_total_bytes", "total {{device}}"),
            ],
            "Memory used and installed per GPU.",
        ),
        _series(
            "GPU temperature",
            "celsius",
            [("visionyard_gpu_temperature_celsius", "GPU {{device}}")],
            "Core temperature per GPU.",
        ),
        _series(
            "GPU power",
            "watt",
            [("visionyard_gpu_power_watts", "GPU {{device}}")],
            "Power draw per GPU.",
        ),
    ]


def _variables(board: Any) -> Any:
    dashboard, _, _, _, models = _sdk()
    source = dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    model = (
        dashboard.QueryVariable("model")
        .label("Model")
        .datasource(models.DataSourceRef("prometheus", "${datasource}"))
        .query("label_values(visionyard_requests_total, model)")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    return board.with_variable(source).with_variable(model)


def build_dashboard() -> Any:
    """The dashboard model (grafana-foundation-sdk's ``Dashboard``)."""
    dashboard, _, _, _, _ = _sdk()
    board = dashboard.Dashboard(TITLE).uid(UID).tags(["visionyard"]).refresh("30s")
    board = _variables(board.time("now-1h", "now").timezone("browser"))
    ids = iter(range(1, 1000))
    for title, panels in (
        ("Traffic", _traffic()),
        ("Drift", _drift()),
        ("Capture", _capture()),
        ("GPU", _gpu()),
    ):
        board = board.with_row(dashboard.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))
    return board.build()


def dashboard_json() -> str:
    """The dashboard as Grafana imports it (Dashboards > New > Import, or provisioning)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return json.dumps(json.loads(JSONEncoder().encode(build_dashboard())), indent=2) + "\n"
