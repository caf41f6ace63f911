"""Probe: served images/s under several server configurations, side by side in one run.

One server per configuration (``NAME:ENV=VALUE,...``; ``NAME:`` for the defaults;
``NAME@K:...`` for K server processes side by side, each given an equal share of the clients
at once, their rates summed: what serving from several processes would give), all serving
the same bundle; each round measures the in-process best (bench_serving_load.inprocess_best),
then each server in turn (the order flips every round) at 32 closed-loop clients over REST OIP
binary and over gRPC (h2load when installed, else the Python client), and at 8 REST clients.
Printed: each round's ratios to that round's in-process best, then per configuration and load
the median over rounds with every round's figure. ``--model detector64`` serves a briefly
trained 64x64 detector (bench_detection.py's architecture: serving speed does not depend on the
weights), ``resnet18`` the ResNet-18-style classifier of bench_serving.py (``--variant``).

    .venv/bin/python bench/probe_server_configs.py --model detector64 --monitor off --rounds 5 \
        "w2:" "w3:VISIONYARD_SERVING__INFERENCE_WORKERS=3" \
        "p2@2:VISIONYARD_SERVING__INFERENCE_WORKERS=1,VISIONYARD_SERVING__LONE_INTRA_OP_THREADS=1"
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_detection import OUT, scenes, train_detector  # noqa: E402
from bench_serving import TOP5, build_bundles, monitor_env, photos  # noqa: E402
from bench_serving_load import (  # noqa: E402
    Target,
    binary_target,
    grpc_load,
    grpc_requests,
    inprocess_best,
    saturate,
)

SECONDS = 5.0


def the_model(args: argparse.Namespace, root: Path) -> tuple[Path, list[bytes], tuple[str, ...]]:
    """The bundle, the request images and the outputs asked for."""
    if args.model == "detector64":
        trained = train_detector(root, 120, 1)
        return trained["bundle"], scenes(trained["data"]), OUT
    images = photos()
    return build_bundles(root, images)[args.variant], images, TOP5


def model_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    """``--model`` and ``--variant`` (what :func:`the_model` reads), ``--monitor`` and
    ``--rounds`` (default ``rounds``): the options these probes share."""
    parser.add_argument("--model", choices=("detector64", "resnet18"), default="detector64")
    parser.add_argument("--variant", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--monitor", choices=("on", "off"), default="on")
    parser.add_argument("--rounds", type=int, default=rounds)


def parse_configs(specs: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """NAME[@PROCESSES]:ENV=VALUE,... -> {NAME: (processes, env)}."""
    configs: dict[str, tuple[int, dict[str, str]]] = {}
    for spec in specs:
        name, _, assignments = spec.partition(":")
        name, _, processes = name.partition("@")
        env = dict(kv.split("=", 1) for kv in assignments.split(",") if kv)
        configs[name] = (int(processes or 1), env)
    return configs


def together(loads: list[Callable[[], float]]) -> float:
    """Run the loads at the same time; their rates summed."""
    rates = [0.0] * len(loads)

    def run(index: int) -> None:
        rates[index] = loads[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(loads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(rates)


def rates(group: list[tuple[Target, Target]]) -> dict[str, float]:
    """Images/s of one configuration's processes under each load, the clients split evenly."""
    share = len(group)

    def load(protocol: int, clients: int) -> float:
        return together([
            lambda t=pair[protocol]: float(saturate(t, clients // share, SECONDS)["rate"])
            for pair in group
        ])  # fmt: skip

    return {"binary32": load(0, 32), "grpc32": load(1, 32), "binary8": load(0, 8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    model_arguments(parser, rounds=5)
    parser.add_argument("configs", nargs="+", help="NAME:ENV=VALUE,... (NAME: = defaults)")
    args = parser.parse_args()
    from visionyard.serving.launch import serve_subprocess

    configs = parse_configs(args.configs)
    with tempfile.TemporaryDirectory(prefix="vy-probe-cfg-") as tmp, contextlib.ExitStack() as st:
        bundle, images, outputs = the_model(args, Path(tmp))
        messages = grpc_requests("m", images, outputs)
        servers: dict[str, list[tuple[Target, Target]]] = {}
        for name, (processes, env) in configs.items():
            env = {**monitor_env(args.monitor), **env}
            servers[name] = []
            for _ in range(processes):
                urls = st.enter_context(serve_subprocess({"m": str(bundle)}, env=env))
                grpc = grpc_load(st, urls.grpc_target, urls.http_url, "m", messages)
                servers[name].append((binary_target(urls.http_url, "m", images, outputs), grpc))
        label = args.model + ("" if args.model == "detector64" else f" {args.variant}")
        print(f"{label}, monitoring {args.monitor}, {SECONDS:g} s a load, configs: {configs}")
        found: dict[tuple[str, str], list[float]] = {}
        for index in range(args.rounds):
            floor = inprocess_best(bundle, images, 4.0)["rate"]
            order = list(servers) if index % 2 == 0 else list(servers)[::-1]
            parts = []
            for name in order:
                measured = rates(servers[name])
                for load, rate in measured.items():
                    found.setdefault((name, load), []).append(rate / floor)
                shown = " ".join(f"{k} {v / floor:.2f}" for k, v in measured.items())
                parts.append(f"{name}: {shown}")
            print(f"round {index + 1} in-process {floor:.1f}/s  " + "  ".join(parts), flush=True)
        print("served / in-process best, median over rounds (each round):")
        for (name, load), ratios in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            each = " ".join(f"{r:.2f}" for r in ratios)
            print(f"  {load:8s} {name:10s} {statistics.median(ratios):.3f}x  ({each})")


if __name__ == "__main__":
    main()
