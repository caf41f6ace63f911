"""Check the GPU gauges on a machine with an NVIDIA GPU (run it where one is lent).

    .venv/bin/pip install -c constraints.txt -e '.[gpu]'
    .venv/bin/python bench/gpu_check.py

Prints every ``visionyard_gpu_*`` sample of the server's metrics registry, as a scrape of
``/metrics`` would show them, and exits non-zero unless each of the five gauges exists for every
device NVML reports, with plausible values (memory used <= total, utilisation in 0-1,
temperature 0-130 C, power >= 0 W). It also allocates memory on the GPU when torch with CUDA is
importable and checks that ``memory_used_bytes`` grows, and that ``utilization_ratio`` rises
while matrix products run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from visionyard.monitor.gpu import METRIC_NAMES, load_nvml
from visionyard.serving.metrics import ServingMetrics


def samples(metrics: ServingMetrics) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.startswith("visionyard_gpu_"):
                found[(sample.name, sample.labels["device"])] = sample.value
    return found


def problems(found: dict[tuple[str, str], float], devices: list[str]) -> list[str]:
    wrong = [
        f'{name}{{device="{d}"}} missing'
        for name in METRIC_NAMES
        for d in devices
        if (name, d) not in found
    ]
    for d in devices:
        used = found.get(("visionyard_gpu_memory_used_bytes", d), 0.0)
        total = found.get(("visionyard_gpu_memory_total_bytes", d), 0.0)
        checks = {
            "memory used <= total, total > 0": 0 <= used <= total and total > 0,
            "utilisation in 0-1": 0 <= found.get(("visionyard_gpu_utilization_ratio", d), -1) <= 1,
            "temperature 0-130 C": 0
            < found.get(("visionyard_gpu_temperature_celsius", d), -1)
            < 130,
            "power >= 0 W": found.get(("visionyard_gpu_power_watts", d), -1) >= 0,
        }
        wrong += [f"device {d}: not {what}" for what, ok in checks.items() if not ok]
    return wrong


def memory_grows(metrics: ServingMetrics) -> str:
    try:
        import torch
    except ImportError:
        return "skipped (torch not installed)"
    if not torch.cuda.is_available():
        return "skipped (torch has no CUDA)"
    before = samples(metrics)[("visionyard_gpu_memory_used_bytes", "0")]
    block: Any = torch.empty(512 * 1024**2, dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    time.sleep(0.5)
    after = samples(metrics)[("visionyard_gpu_memory_used_bytes", "0")]
    del block
    grew = after - before
    if grew < 400 * 1024**2:
        raise SystemExit(f"FAIL: memory_used_bytes grew by {grew / 1024**2:.0f} MiB, not ~512")
    return f"ok (+{grew / 1024**2:.0f} MiB after allocating 512 MiB)"


def utilisation_follows_load(metrics: ServingMetrics) -> str:
    """Keep the GPU busy with matrix products for ~3 s and read the gauge while it runs."""
    try:
        import torch
    except ImportError:
        return "skipped (torch not installed)"
    if not torch.cuda.is_available():
        return "skipped (torch has no CUDA)"
    idle = samples(metrics)[("visionyard_gpu_utilization_ratio", "0")]
    a = torch.randn(8192, 8192, device="cuda:0", dtype=torch.bfloat16)
    busiest = 0.0
    deadline = time.perf_counter() + 3.0
    while time.perf_counter() < deadline:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
        busiest = max(busiest, samples(metrics)[("visionyard_gpu_utilization_ratio", "0")])
    if busiest < 0.5:
        peak = f"{busiest:.2f} under load (idle {idle:.2f})"
        raise SystemExit(f"FAIL: utilization_ratio peaked at {peak}")
    return f"ok (idle {idle:.2f}, under matrix products {busiest:.2f})"


def main() -> int:
    if load_nvml() is None:
        print("FAIL: nvidia-ml-py is not installed (pip install -e '.[gpu]')")
        return 1
    metrics = ServingMetrics()
    devices = metrics.gpu.devices
    if not devices:
        print("FAIL: NVML did not initialise or reports no device")
        return 1
    found = samples(metrics)
    for (name, device), value in sorted(found.items()):
        print(f'{name}{{device="{device}"}} {value:g}')
    wrong = problems(found, devices)
    for line in wrong:
        print(f"FAIL: {line}")
    print(f"memory gauge follows an allocation: {memory_grows(metrics)}")
    print(f"utilisation gauge follows load: {utilisation_follows_load(metrics)}")
    print(f"{len(devices)} device(s), {len(found)} samples: {'FAIL' if wrong else 'ok'}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
