"""Probe: a lone batch's ONNX Runtime run inside a bare ``Batcher`` vs the same session called
directly, side by side, with no server around (the lead left by bench_lone_request.py).

Served, a lone INT8 request's run took 1.16-1.26x the in-process one (2026-12-07), and the
server's own wide session was as fast as in-process when this process called it. This probe
keeps only the batcher: per round, ``--block`` lone requests go through a ``Batcher`` (narrow
and wide INT8 sessions of bench_serving.py's model, its ``inference_s`` read from each result),
then the same wide session runs the same images on the main thread, on one long-lived plain
thread (as a server's worker is), then on a new plain thread per image. Each image is decoded
right before its run, as on a worker. Printed: the medians over ``--rounds`` of each block's
mean, and which session the batcher used.

    .venv/bin/python bench/probe_batcher_run.py --rounds 8 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import queue
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


class Probe:
    """The same wide INT8 session run four ways; each ``*_ms`` decodes image ``i`` and returns
    the run's milliseconds."""

    def __init__(self, bundle: Path, images: list[bytes], workers: int) -> None:
        from visionyard.runtime.session import InferenceSession
        from visionyard.serving.batching import Batcher
        from visionyard.serving.work import BatchConfig

        self.images, self.used = images, Counter[str]()
        narrow = InferenceSession.open(bundle, intra_op_threads=1)
        self.wide = InferenceSession.open(bundle, intra_op_threads=2)
        self.batcher = Batcher(
            self._counted("narrow", narrow), BatchConfig(workers=workers), None, "vy-probe",
            self._counted("wide", self.wide),
        )  # fmt: skip
        self.asked: queue.Queue[int | None] = queue.Queue()
        self.answered: queue.Queue[float] = queue.Queue()
        threading.Thread(target=self._long_lived, daemon=True).start()

    def rows(self, i: int) -> np.ndarray:
        from visionyard.contract.preprocess import decode_for_contract, preprocess_image

        contract = self.wide.contract
        image = decode_for_contract(self.images[i % len(self.images)], contract)
        return preprocess_image(image, contract)[0][np.newaxis]

    def _counted(self, name: str, session: Any) -> Callable[[np.ndarray], Any]:
        def run(tensor: np.ndarray) -> Any:
            self.used[name] += 1
            return session.run(tensor)

        return run

    def main_thread_ms(self, i: int) -> float:
        tensor = self.rows(i)
        began = time.perf_counter()
        self.wide.run(tensor)
        return (time.perf_counter() - began) * 1e3

    def _long_lived(self) -> None:
        while (i := self.asked.get()) is not None:
            self.answered.put(self.main_thread_ms(i))

    def one_thread_ms(self, i: int) -> float:
        self.asked.put(i)
        return self.answered.get()

    def new_thread_ms(self, i: int) -> float:
        out: list[float] = []
        thread = threading.Thread(target=lambda: out.append(self.main_thread_ms(i)))
        thread.start()
        thread.join()
        return out[0]

    async def batcher_ms(self, i: int) -> float:
        from visionyard.serving.work import Work

        result = await self.batcher.submit(Work(1, lambda: (self.rows(i), None), lambda o, _: o))
        return result.inference_s * 1e3


async def measure(args: argparse.Namespace, bundle: Path, images: list[bytes]) -> None:
    probe = Probe(bundle, images, args.workers)
    probe.batcher.start()
    modes: dict[str, Callable[[int], Any]] = {
        "batcher": probe.batcher_ms,
        "main thread": probe.main_thread_ms,
        "one thread": probe.one_thread_ms,
        "new thread": probe.new_thread_ms,
    }
    found: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, measure_one in modes.items():
            times = []
            for i in range(args.block):
                value = measure_one(i)
                times.append(await value if asyncio.iscoroutine(value) else value)
                await asyncio.sleep(PAUSE_S)
            found[name].append(statistics.mean(times))
    await probe.batcher.close()
    probe.asked.put(None)
    floor = statistics.median(found["main thread"])
    used = dict(probe.used)
    print(f"INT8, lone batches, ORT run (ms), medians of {args.rounds} rounds ({used}):")
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
