"""Probe: what ONNX Runtime's ``session.force_spinning_stop`` costs a lone run, and what it saves.

The server's wide session (one intra-op thread per core, used for a lone request) is opened with
``force_spinning_stop`` (:func:`visionyard.runtime.session.session_options`): without it, the
pool's threads spin after every run. This probe measures both sides, in one process, with no
server:

- the run itself: the same model in sessions that differ only in that option (plus one with
  ONNX Runtime's default options, as the minimal FastAPI app of bench_serving.py opens it),
  each image decoded right before its run; ``--pause`` seconds between runs (0: back to back,
  as one closed-loop client sends them; 0.05: lone requests);
- after a run: the CPU the session's pool threads burn in the next 200 ms, from ``/proc``
  (Linux), which is what the option exists to stop.

Printed: medians over ``--rounds`` of each block's median run (ms), as ratios to the session
the server uses, then the pool threads' CPU after a run.

    .venv/bin/python bench/probe_spinning.py --variant fp32 --rounds 8 --pause 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving import build_bundles, photos  # noqa: E402


def open_session(model: Path, options: dict[str, str] | None) -> tuple[Any, set[str]]:
    """A session (``options``: the config entries on top of the server's own thread settings;
    None: ONNX Runtime's defaults) and the threads it started."""
    import onnxruntime as ort

    before = set(os.listdir("/proc/self/task"))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if options is not None:
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        for key, value in options.items():
            so.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return session, set(os.listdir("/proc/self/task")) - before


def cpu_ms(threads: set[str]) -> float:
    total = 0
    for tid in threads:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", default="fp32", choices=["fp32", "int8"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()

    from visionyard.runtime.session import InferenceSession

    images = photos()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundles(Path(tmp), images)[args.variant]
        contract = InferenceSession.open(bundle).contract
        model = bundle / "model.onnx"
        sessions = {
            "server's (stop)": open_session(model, {"session.force_spinning_stop": "1"}),
            "spinning": open_session(model, {}),
            "ORT defaults": open_session(model, None),
        }
        name = sessions["spinning"][0].get_inputs()[0].name

        def block(session: Any) -> float:
            runs = []
            for i in range(args.block):
                tensor = tensor_for(images[i % len(images)], contract)
                began = time.perf_counter()
                session.run(None, {name: tensor})
                runs.append((time.perf_counter() - began) * 1e3)
                time.sleep(args.pause)
            return statistics.median(runs)

        found: dict[str, list[float]] = {key: [] for key in sessions}
        for _ in range(args.rounds):
            for key, (session, _) in sessions.items():
                found[key].append(block(session))
        floor = statistics.median(found["server's (stop)"])
        print(f"{args.variant}, one image a run, {args.pause:g} s apart, ORT run (ms):")
        for key, values in found.items():
            middle = statistics.median(values)
            rounds = " ".join(f"{v:.1f}" for v in values)
            print(f"  {key:16s} {middle:6.2f} = {middle / floor:.3f}x the server's  [{rounds}]")
        print("CPU of the pool threads in the 200 ms after one run (ms; 3 tries):")
        for key, (session, threads) in sessions.items():
            burnt = []
            for _ in range(3):
                session.run(None, {name: tensor_for(images[0], contract)})
                before = cpu_ms(threads)
                time.sleep(0.2)
                burnt.append(cpu_ms(threads) - before)
            print(f"  {key:16s} {' '.join(f'{b:.0f}' for b in burnt)}")


def tensor_for(image: bytes, contract: Any) -> np.ndarray:
    from visionyard.contract.preprocess import decode_for_contract, preprocess_image

    return preprocess_image(decode_for_contract(image, contract), contract)[0][np.newaxis]


if __name__ == "__main__":
    main()
