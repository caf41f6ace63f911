"""Benchmark: the serving cost of monitoring and capture, side by side in one run.

Two ``visionyard serve`` processes serve the same FP32 and INT8 ResNet-18-style bundles (the
ones ``bench_serving.py`` builds, real JPEG photos at 640x480): one with live monitoring
windows and capture of hard images on (the defaults a user gets, plus ``monitor.capture.dir``;
random weights make every image "hard", so the capture writer works at its rate limit the
whole time), one with monitoring off. Each round saturates both with the same clients, REST
OIP binary (JPEG as BYTES) and gRPC (h2load when installed), in alternating order (on first in
odd rounds, off first in even ones), so the two see the same machine. Prints, per protocol
and variant, the median over rounds of (images/s on) / (images/s off): target >= 0.97x.
Only one server is loaded at a time; an idle one costs nothing.

    .venv/bin/python bench/bench_monitor_cost.py [--seconds 6] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving import TOP5, build_bundles, photos  # noqa: E402
from bench_serving_load import (  # noqa: E402
    Target,
    binary_target,
    grpc_load,
    grpc_requests,
    saturate,
)
from bench_serving_report import CONCURRENCY, VARIANTS  # noqa: E402

TARGET = 0.97
PROTOCOLS = ("binary", "grpc")


def server_env(monitoring: bool, captures: Path) -> dict[str, str]:
    if not monitoring:
        return {"VISIONYARD_MONITOR__ENABLED": "false"}
    return {
        "VISIONYARD_MONITOR__ENABLED": "true",
        "VISIONYARD_MONITOR__CAPTURE__DIR": str(captures),
    }


def targets_for(stack: contextlib.ExitStack, urls: Any, images: list[bytes]) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for variant in VARIANTS:
        out[f"binary-{variant}"] = binary_target(urls.http_url, variant, images, TOP5)
        messages = grpc_requests(variant, images, TOP5)
        out[f"grpc-{variant}"] = grpc_load(
            stack, urls.grpc_target, urls.http_url, variant, messages
        )
    return out


def one_round(
    servers: dict[str, dict[str, Target]], index: int, seconds: float
) -> dict[str, dict[str, float]]:
    order = ("on", "off") if index % 2 == 0 else ("off", "on")
    out: dict[str, dict[str, float]] = {"on": {}, "off": {}}
    for protocol in PROTOCOLS:
        for variant in VARIANTS:
            key = f"{protocol}-{variant}"
            for side in order:
                measured = saturate(servers[side][key], CONCURRENCY, seconds)
                out[side][key] = float(measured["rate"])
    return out


def captured(root: Path) -> int:
    return sum(1 for path in root.rglob("*") if path.suffix in {".jpg", ".jpeg", ".png"})


def main() -> None:
    from visionyard.serving.launch import serve_subprocess

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--repeat", type=int, default=5, help="side-by-side rounds (median)")
    args = parser.parse_args()
    images = photos()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vy-bench-monitor-") as tmp:
        root = Path(tmp)
        bundles = build_bundles(root, images)
        models = {v: str(bundles[v]) for v in VARIANTS}
        rounds = []
        with contextlib.ExitStack() as stack:
            servers: dict[str, dict[str, Target]] = {}
            for side, monitoring in (("on", True), ("off", False)):
                env = server_env(monitoring, root / "captures")
                urls = stack.enter_context(serve_subprocess(models, env=env))
                servers[side] = targets_for(stack, urls, images)
            for index in range(args.repeat):
                rounds.append(one_round(servers, index, args.seconds))
                brief = "  ".join(
                    f"{k} {rounds[-1]['on'][k]:.1f}/{rounds[-1]['off'][k]:.1f}"
                    for k in rounds[-1]["on"]
                )
                print(f"round {index + 1}/{args.repeat} (on/off images/s): {brief}", flush=True)
        report(rounds, captured(root / "captures"))
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s")
    print(f"command: .venv/bin/python bench/bench_monitor_cost.py --seconds {args.seconds:g} "
          f"--repeat {args.repeat}")  # fmt: skip


def report(rounds: list[dict[str, dict[str, float]]], images_captured: int) -> None:
    print(f"\n== monitoring + capture ON vs OFF: medians of {len(rounds)} side-by-side rounds ==")
    worst = float("inf")
    for key in rounds[0]["on"]:
        on = statistics.median(r["on"][key] for r in rounds)
        off = statistics.median(r["off"][key] for r in rounds)
        ratio = statistics.median(
            r["on"][key] / r["off"][key] if r["off"][key] else float("nan") for r in rounds
        )  # a zero: the measurement was shorter than h2load's lead-in (use --seconds >= 3)
        worst = min(worst, ratio) if ratio == ratio else float("nan")
        print(f"{key:14s} on {on:7.1f} img/s  off {off:7.1f} img/s  ratio {ratio:.3f}x")
    verdict = "met" if worst >= TARGET else "NOT met"
    print(f"worst ratio {worst:.3f}x (target >= {TARGET}x): {verdict}")
    print(f"hard images the ON server captured during the run: {images_captured}")


if __name__ == "__main__":
    main()
