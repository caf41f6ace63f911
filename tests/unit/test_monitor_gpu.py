"""GPU gauges through a fake NVML: values, a device failing mid-read, no library, no driver."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.fixtures.nvml import GIB, FakeNvml, FakeNvmlError
from visionyard.monitor import gpu
from visionyard.serving.metrics import ServingMetrics


def scrape(nvml: Any) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    gpu.register_gpu_collector(registry, nvml)
    values: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            values[(sample.name, sample.labels["device"])] = sample.value
    return values


def test_every_device_exports_its_five_gauges() -> None:
    values = scrape(FakeNvml(devices=2))
    assert values == {
        ("visionyard_gpu_utilization_ratio", "0"): 0.40,
        ("visionyard_gpu_utilization_ratio", "1"): 0.41,
        ("visionyard_gpu_memory_used_bytes", "0"): 1 * GIB,
        ("visionyard_gpu_memory_used_bytes", "1"): 2 * GIB,
        ("visionyard_gpu_memory_total_bytes", "0"): 16 * GIB,
        ("visionyard_gpu_memory_total_bytes", "1"): 16 * GIB,
        ("visionyard_gpu_temperature_celsius", "0"): 60,
        ("visionyard_gpu_temperature_celsius", "1"): 61,
        ("visionyard_gpu_power_watts", "0"): 150.5,
        ("visionyard_gpu_power_watts", "1"): 151.5,
    }


def test_exposition_text_names_the_gauges_with_help_and_type() -> None:
    registry = CollectorRegistry()
    gpu.register_gpu_collector(registry, FakeNvml(devices=1))
    text = generate_latest(registry).decode()
    for name in gpu.METRIC_NAMES:
        assert f"# TYPE {name} gauge" in text
        assert f'{name}{{device="0"}}' in text


def test_a_device_failing_mid_read_loses_only_that_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = FakeNvml(devices=2)
    registry = CollectorRegistry()
    gpu.register_gpu_collector(registry, nvml)
    nvml.broken = {(1, "power"), (1, "memory")}
    caplog.set_level(logging.DEBUG, logger=gpu.__name__)
    for _ in range(3):  # three scrapes: the failure is logged once, not per scrape
        text = generate_latest(registry).decode()
    assert 'visionyard_gpu_power_watts{device="0"} 150.5' in text
    assert 'visionyard_gpu_power_watts{device="1"}' not in text
    assert 'visionyard_gpu_memory_used_bytes{device="1"}' not in text
    assert 'visionyard_gpu_temperature_celsius{device="1"} 61.0' in text
    assert sum("power_watts left out" in r.getMessage() for r in caplog.records) == 1
    nvml.broken = set()  # the device recovers: its readings come back
    assert 'visionyard_gpu_power_watts{device="1"} 151.5' in generate_latest(registry).decode()


def test_a_device_that_cannot_be_opened_is_left_out() -> None:
    nvml = FakeNvml(devices=2)
    opened = nvml.nvmlDeviceGetHandleByIndex

    def open_device(index: int) -> int:
        if index == 0:
            raise FakeNvmlError("GPU is lost")
        return opened(index)

    nvml.nvmlDeviceGetHandleByIndex = open_device  # type: ignore[method-assign]
    collector = gpu.GpuCollector(nvml)
    assert collector.devices == ["1"]


def test_nvml_error_on_init_means_no_gauges_and_no_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gpu._said.clear()
    caplog.set_level(logging.DEBUG, logger=gpu.__name__)
    assert scrape(FakeNvml(init_fails=True)) == {}
    assert scrape(FakeNvml(init_fails=True)) == {}
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GPU gauges off: NVML did not initialise (Driver Not Loaded)"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_no_library_means_no_gauges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "load_nvml", lambda: None)
    metrics = ServingMetrics()
    assert b"visionyard_gpu_" not in metrics.render()
    assert b"visionyard_queue_depth" in metrics.render()


def test_the_server_metrics_carry_the_gpu_gauges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "load_nvml", lambda: FakeNvml(devices=1))
    text = ServingMetrics().render().decode()
    assert 'visionyard_gpu_memory_total_bytes{device="0"} 1.7179869184e+10' in text


def test_the_real_library_on_this_machine_never_fails_a_scrape() -> None:
    registry = CollectorRegistry()
    collector = gpu.register_gpu_collector(registry)
    text = generate_latest(registry).decode()
    if collector.devices:  # a GPU machine: every device shows its memory
        for device in collector.devices:
            assert f'visionyard_gpu_memory_total_bytes{{device="{device}"}}' in text
    else:
        assert "visionyard_gpu_" not in text
