"""The server's allocator setting (:func:`return_large_buffers`): buffers of large bodies go back
to the system when freed, and the buffers of an ordinary image request do not.

Measured before the fix: with glibc's memory-map threshold pinned at 1 MiB (and its trim
threshold left at 128 KiB), each 640x480 JPEG decoded and preprocessed page-faulted ~300 times
(its working buffers mapped, touched and returned every time), and the in-process pipeline of
the 64x64 detector ran at 449 instead of 572 images/s. Each probe runs in a fresh interpreter:
the setting is process-wide.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import io, resource, sys
import numpy as np
from PIL import Image
from visionyard.contract.preprocess import decode_for_contract, preprocess_image
from visionyard.contract.schema import VisionContract
from visionyard.serving.rest.parse import return_large_buffers

if sys.argv[1] == "server":
    return_large_buffers()
rng = np.random.default_rng(0)
pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
data = buffer.getvalue()
contracts = [VisionContract.detection(["a", "b"], input_size=64),
             VisionContract.classification(["a", "b"], input_size=224)]
for contract in contracts:
    for _ in range(5):
        preprocess_image(decode_for_contract(data, contract), contract)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        preprocess_image(decode_for_contract(data, contract), contract)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

base = rss_mb()
for size in (24, 48, 64):
    big = bytearray(size * 1024 * 1024)
    big[:: 4096] = b"x" * len(big[:: 4096])
    del big
print(rss_mb() - base)
"""


def probe(mode: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return [float(line) for line in done.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_image_requests_do_not_page_fault_their_buffers_and_large_ones_go_back() -> None:
    *faults, grown_mb = probe("server")
    *default_faults, _ = probe("default")
    names = ("detection", "classification")
    for contract, got, baseline in zip(names, faults, default_faults, strict=True):
        assert got < baseline + 20, (
            f"{contract}: {got:.0f} page faults per image with the server's setting, "
            f"{baseline:.0f} with glibc's default"
        )
    assert grown_mb < 8, f"64 MiB of freed buffers kept: resident memory grew {grown_mb:.0f} MB"
