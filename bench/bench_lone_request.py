"""Probe: a lone request's ONNX Runtime run, served vs in-process, side by side (issue 16's
one-client target).

The server answers a lone request on a "wide" session (one intra-op thread per core). This probe
starts one server per configuration (``NAME:ENV=VALUE,...``; ``NAME:`` for the defaults), each
serving the ResNet-18-style bundle of bench_serving.py in one precision, sends ``--block`` lone
requests at a time (50 ms apart) to each in turn, and reads the mean inference time of that block
from the server's own statistics (``/v2/models/M/stats``, ``compute_infer``: the ORT run only).
Between the servers' blocks the same bundle's wide session runs the same images in this process
(the mean of its ``run`` calls, also 50 ms apart, after decoding each image as the server does).
Printed: the medians over ``--rounds`` and each round's figure, and each server's client p50.

    .venv/bin/python bench/bench_lone_request.py --variant int8 --rounds 10 \
        "w2:" "w1:VISIONYARD_SERVING__INFERENCE_WORKERS=1"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving import build_bundles, monitor_env, photos, predict_target  # noqa: E402
from bench_serving_load import idle_latency  # noqa: E402


def mean_infer_ms(url: str, model: str) -> tuple[int, int]:
    """(count, ns) of ``compute_infer`` summed over the model's versions."""
    with urllib.request.urlopen(f"{url}/v2/models/{model}/stats", timeout=30) as answer:
        stats = json.load(answer)["model_stats"]
    infer = [entry["inference_stats"]["compute_infer"] for entry in stats]
    return sum(i["count"] for i in infer), sum(i["ns"] for i in infer)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("configs", nargs="+", help="NAME:ENV=VALUE,... (NAME: for defaults)")
    parser.add_argument("--variant", default="int8", choices=["fp32", "int8"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--monitor", default="on", choices=["on", "off"])
    args = parser.parse_args()

    from visionyard.contract.preprocess import decode_for_contract, preprocess_image
    from visionyard.runtime.session import InferenceSession
    from visionyard.serving.launch import serve_subprocess
    from visionyard.serving.threads import usable_cores

    configs: dict[str, dict[str, str]] = {}
    for spec in args.configs:
        name, _, pairs = spec.partition(":")
        configs[name] = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    images, model = photos(), args.variant
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bundle = build_bundles(Path(tmp), images)[model]
        session = InferenceSession.open(bundle, intra_op_threads=usable_cores())
        contract = session.contract
        servers = {
            name: stack.enter_context(
                serve_subprocess({model: str(bundle)}, env={**monitor_env(args.monitor), **env})
            )
            for name, env in configs.items()
        }
        targets = {name: predict_target(s.http_url, model, images) for name, s in servers.items()}
        for target in targets.values():
            idle_latency(target, 5)
        infer: dict[str, list[float]] = {name: [] for name in [*configs, "in-process"]}
        p50: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, server in servers.items():
                before = mean_infer_ms(server.http_url, model)
                p50[name].append(idle_latency(targets[name], args.block)["p50"])
                after = mean_infer_ms(server.http_url, model)
                infer[name].append((after[1] - before[1]) / (after[0] - before[0]) / 1e6)
            runs = []
            for i in range(args.block):
                tensor, _ = preprocess_image(decode_for_contract(images[i % 6], contract), contract)
                began = time.perf_counter()
                session.run(tensor[np.newaxis])
                runs.append((time.perf_counter() - began) * 1e3)
                time.sleep(0.05)
            infer["in-process"].append(statistics.mean(runs))
        floor = statistics.median(infer["in-process"])
        print(f"{model}, lone requests, ORT run (ms), medians of {args.rounds} rounds:")
        for name, values in infer.items():
            middle = statistics.median(values)
            client = f"  client p50 {statistics.median(p50[name]):.1f}" if name in p50 else ""
            rounds = " ".join(f"{v:.1f}" for v in values)
            ratio = f"{middle / floor:.2f}x in-process"
            print(f"  {name:12s} {middle:6.2f} = {ratio}{client}  [{rounds}]")


if __name__ == "__main__":
    main()
