"""Probe: a lone batch's ONNX Runtime run inside a bare ``Batcher`` vs the same session called
directly, side by side, with no server around (the lead left by bench_lone_request.py).

Served, a lone INT8 request's run took 1.16-1.26x the in-process one (2026-12-07), and the
server's own wide session was as fast as in-process when this process called it. This probe
keeps only the batcher: per round, ``--block`` lone requests go through a ``Batcher`` (narrow
and wide INT8 sessions of bench_serving.py's model, its ``inference_s`` read from each result),
then the same wide session runs the same images on the main thread, then on a new plain thread
per image. Each image is decoded right before its run, as on a worker. Printed: the medians
over ``--rounds`` of each block's mean, and which session the batcher used.

    .venv/bin/python bench/probe_batcher_run.py --rounds 8 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving import build_bundles, photos  # noqa: E402

PAUSE_S = 0.05


async def measure(args: argparse.Namespace, bundle: Path, images: list[bytes]) -> None:
    from visionyard.contract.preprocess import decode_for_contract, preprocess_image
    from visionyard.runtime.session import InferenceSession
    from visionyard.serving.batching import Batcher
    from visionyard.serving.work import BatchConfig, Work

    narrow = InferenceSession.open(bundle, intra_op_threads=1)
    wide = InferenceSession.open(bundle, intra_op_threads=2)
    contract, used = wide.contract, Counter[str]()

    def rows(i: int) -> np.ndarray:
        tensor, _ = preprocess_image(
            decode_for_contract(images[i % len(images)], contract), contract
        )
        return tensor[np.newaxis]

    def counted(name: str, session: Any) -> Callable[[np.ndarray], Any]:
        def run(tensor: np.ndarray) -> Any:
            used[name] += 1
            return session.run(tensor)

        return run

    def timed(i: int) -> float:
        tensor = rows(i)
        began = time.perf_counter()
        wide.run(tensor)
        return (time.perf_counter() - began) * 1e3

    config = BatchConfig(workers=args.workers)
    batcher = Batcher(counted("narrow", narrow), config, None, "vy-probe", counted("wide", wide))
    batcher.start()
    found: dict[str, list[float]] = {"batcher": [], "main thread": [], "new thread": []}
    for _ in range(args.rounds):
        times = []
        for i in range(args.block):
            result = await batcher.submit(Work(1, lambda i=i: (rows(i), None), lambda out, _: out))
            times.append(result.inference_s * 1e3)
            await asyncio.sleep(PAUSE_S)
        found["batcher"].append(statistics.mean(times))
        times = []
        for i in range(args.block):
            times.append(timed(i))
            await asyncio.sleep(PAUSE_S)
        found["main thread"].append(statistics.mean(times))
        times = []
        for i in range(args.block):
            thread = threading.Thread(target=lambda i=i, out=times: out.append(timed(i)))
            thread.start()
            thread.join()
            await asyncio.sleep(PAUSE_S)
        found["new thread"].append(statistics.mean(times))
    await batcher.close()
    floor = statistics.median(found["main thread"])
    print(f"INT8, lone batches, ORT run (ms), medians of {args.rounds} rounds ({dict(used)}):")
    for name, values in found.items():
        middle = statistics.median(values)
        rounds = " ".join(f"{v:.1f}" for v in values)
        print(f"  {name:12s} {middle:6.2f} = {middle / floor:.2f}x the main thread  [{rounds}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    images = photos()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundles(Path(tmp), images)["int8"]
        asyncio.run(measure(args, bundle, images))


if __name__ == "__main__":
    main()
