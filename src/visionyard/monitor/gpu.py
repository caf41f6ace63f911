"""GPU gauges from NVIDIA's management library (NVML, the ``nvidia-ml-py`` package).

:class:`GpuCollector` is a prometheus_client custom collector: each scrape reads every device
once and exports

- ``visionyard_gpu_utilization_ratio{device}``: share of the last sample period the GPU was busy
  (NVML's percent / 100, the Prometheus convention for ratios),
- ``visionyard_gpu_memory_used_bytes{device}``, ``visionyard_gpu_memory_total_bytes{device}``,
- ``visionyard_gpu_temperature_celsius{device}``,
- ``visionyard_gpu_power_watts{device}`` (NVML reports milliwatts).

Where the library is not installed, or does not initialise (no driver, no GPU), the collector
exports nothing and says so once at debug level; a reading that fails on one device (power is not
supported on every board, a device falls off the bus) leaves out that one sample. The NVML module
is a parameter so that tests pass a fake; :func:`load_nvml` imports the real one.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

_NVML_TEMPERATURE_GPU = 0  # pynvml.NVML_TEMPERATURE_GPU

#: (metric suffix, help text, reading from (nvml, handle))
_READINGS: tuple[tuple[str, str, Callable[[Any, Any], float]], ...] = (
    (
        "utilization_ratio",
        "Share of the last sample period in which a kernel ran on the GPU (0-1)",
        lambda nvml, h: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0,
    ),
    (
        "memory_used_bytes",
        "GPU memory in use, bytes",
        lambda nvml, h: float(nvml.nvmlDeviceGetMemoryInfo(h).used),
    ),
    (
        "memory_total_bytes",
        "GPU memory installed, bytes",
        lambda nvml, h: float(nvml.nvmlDeviceGetMemoryInfo(h).total),
    ),
    (
        "temperature_celsius",
        "GPU core temperature, degrees Celsius",
        lambda nvml, h: float(nvml.nvmlDeviceGetTemperature(h, _NVML_TEMPERATURE_GPU)),
    ),
    (
        "power_watts",
        "GPU power draw, watts",
        lambda nvml, h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
    ),
)
METRIC_NAMES = tuple(f"visionyard_gpu_{suffix}" for suffix, _, _ in _READINGS)
_said: set[str] = set()  # messages already logged by this process


def _once(message: str, *args: object) -> None:
    if message not in _said:
        _said.add(message)
        log.debug(message, *args)


def load_nvml() -> Any | None:
    """The ``pynvml`` module of nvidia-ml-py, or None when it is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class GpuCollector(Collector):
    """Per-device gauges read from NVML at scrape time; nothing when NVML is unavailable."""

    def __init__(self, nvml: Any | None) -> None:
        self._nvml: Any = nvml  # the pynvml module, a fake, or None when unavailable
        self._handles: list[tuple[str, Any]] = []
        self._quiet: set[tuple[str, str]] = set()  # (device, reading) already logged
        if nvml is None:
            _once("GPU gauges off: nvidia-ml-py (pynvml) is not installed")
            return
        try:
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            _once("GPU gauges off: NVML did not initialise (%s)", exc)
            self._nvml = None
            return
        self._handles = self._open(count)

    @property
    def devices(self) -> list[str]:
        """The devices whose gauges this collector exports."""
        return [device for device, _ in self._handles]

    def _open(self, count: int) -> list[tuple[str, Any]]:
        handles: list[tuple[str, Any]] = []
        for index in range(count):
            try:
                handles.append((str(index), self._nvml.nvmlDeviceGetHandleByIndex(index)))
            except self._nvml.NVMLError as exc:
                log.debug("GPU %d left out: NVML could not open it (%s)", index, exc)
        return handles

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._nvml is None or not self._handles:
            return
        for suffix, help_text, read in _READINGS:
            family = GaugeMetricFamily(f"visionyard_gpu_{suffix}", help_text, labels=["device"])
            for device, handle in self._handles:
                value = self._read(read, handle, device, suffix)
                if value is not None:
                    family.add_metric([device], value)
            yield family

    def _read(
        self, read: Callable[[Any, Any], float], handle: Any, device: str, suffix: str
    ) -> float | None:
        try:
            return read(self._nvml, handle)
        except self._nvml.NVMLError as exc:
            if (device, suffix) not in self._quiet:
                self._quiet.add((device, suffix))
                log.debug("GPU %s: %s left out, NVML failed (%s)", device, suffix, exc)
            return None


def register_gpu_collector(registry: CollectorRegistry, nvml: Any | None = None) -> GpuCollector:
    """Add GPU gauges to ``registry`` (real NVML unless ``nvml`` is given); never raises for a
    missing GPU or library."""
    collector = GpuCollector(nvml if nvml is not None else load_nvml())
    registry.register(collector)
    return collector
