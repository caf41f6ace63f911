"""The documented metrics (README table == :mod:`visionyard.serving.metric_names`) are exactly
what a live server's ``/metrics`` carries: names, types and labels; Prometheus' conventions
(``promtool check metrics``); no ``_created`` series; latency by version."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.nvml import FakeNvml
from tests.fixtures.runtime import COLOURS, write_colour_bundle
from tests.fixtures.serving import encoded, server
from visionyard.monitor.gpu import register_gpu_collector
from visionyard.serving.metric_names import (
    GPU,
    METRICS,
    markdown_table,
    parse_markdown_table,
)
from visionyard.serving.sources import LocalBundleSource

README = Path(__file__).resolve().parents[2] / "README.md"
#: The README heading the metrics table sits under (the first table after it).
HEADING = "#### Metrics reference"
Documented = dict[str, tuple[str, tuple[str, ...]]]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a live server after one good and one refused request."""
    bundle = write_colour_bundle(tmp_path_factory.mktemp("metrics") / "colour")
    with server({"colour": LocalBundleSource(bundle.path, "3")}) as running:
        red = encoded(COLOURS["red"])
        assert httpx.post(f"{running.http_url}/v1/models/colour:predict", content=red)
        httpx.post(f"{running.http_url}/v2/models/colour/infer", content=b"{bad")
        yield httpx.get(f"{running.http_url}/metrics").text


def _exposed(text: str) -> Documented:
    """{exposed name: (type, labels)} of an exposition (a counter's name with ``_total``)."""
    found: Documented = {}
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        found[name] = (family.type, tuple(sorted(labels)))
    return found


def _documented(docs: object = METRICS) -> Documented:
    return {d.name: (d.kind, tuple(sorted(d.labels))) for d in docs}  # type: ignore[attr-defined]


def test_live_metrics_are_exactly_the_documented_ones(scraped: str) -> None:
    live = _exposed(scraped)
    documented = _documented()
    gpu = {d.name for d in GPU}
    assert sorted(set(live) - set(documented)) == []  # every series is documented
    assert sorted(set(documented) - set(live) - gpu) == []  # every documented family is there
    for name, (kind, labels) in live.items():
        doc_kind, doc_labels = documented[name]
        assert kind == doc_kind, name
        assert not labels or labels == doc_labels, name  # families without series: no labels
    assert "_created" not in scraped
    wanted = re.compile(
        r'^visionyard_request_duration_seconds_count\{model="colour",protocol="rest",'
        r'stage="total",version="3"\} 1\.0$',
        re.MULTILINE,
    )
    assert wanted.search(scraped)
    assert re.search(r"^process_resident_memory_bytes \d", scraped, re.MULTILINE)
    assert re.search(r'^python_gc_collections_total\{generation="0"\}', scraped, re.MULTILINE)


def test_gpu_series_are_the_documented_ones() -> None:
    registry = CollectorRegistry()
    register_gpu_collector(registry, FakeNvml(devices=1))
    live = _exposed(generate_latest(registry).decode())
    assert live == _documented(GPU)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH")
def test_promtool_finds_no_naming_problems(scraped: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scraped, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_readme_metrics_table_is_the_documented_list() -> None:
    text = README.read_text("utf-8")
    assert HEADING in text, (
        f"README.md has no {HEADING!r} section: paste the table of "
        "visionyard.serving.metric_names.markdown_table() under it"
    )
    section = re.split(r"^#", text.split(HEADING, 1)[1], maxsplit=1, flags=re.MULTILINE)[0]
    assert parse_markdown_table(section) == parse_markdown_table(markdown_table())
