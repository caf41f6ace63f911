"""``visionyard predict`` throughput on a folder of real 640x480 JPEGs, side by side in one run.

Run (on a quiet machine; the smoke run takes ~1 min)::

    .venv/bin/python bench/bench_predict.py [--images 600] [--seconds 6] [--repeat 3] [--no-ray]
    .venv/bin/python bench/bench_predict.py --images 48 --seconds 1 --repeat 1   # smoke

Needs the ``bench`` extra (scikit-learn's sample photos), torch (a ResNet-18-style model exported
to FP32 and static INT8, as in ``bench_serving.py``) and, for ``--engine ray``, the ``ray`` extra.

Per variant (FP32, INT8), alternating in each repeat so that both see the same machine:

- ``inprocess``: the server's best in-process pipeline (``bench_serving_load.inprocess_best``:
  threads each decoding a batch from memory and running ORT with 1 intra-op thread; the best of
  its layouts);
- ``predict``: the local engine exactly as ``visionyard predict`` runs it (discovery of the
  folder, files read from disk, JSONL written to a file), in-process so that Python's start-up
  is not counted; the CLI's own wall time is printed once for reference;
- ``ray`` (FP32 only): ``--engine ray`` on a local Ray (one actor per core), the whole job
  (actor start-up included) against the local engine on the same folder.

Targets (issue 15): predict >= 0.9x inprocess, FP32 and INT8; ray >= 0.7x local.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving import build_bundles, photos  # noqa: E402
from bench_serving_load import inprocess_best  # noqa: E402

from visionyard.runtime.session import InferenceSession  # noqa: E402
from visionyard.scoring import Plan, discover, make_writer, ranked_columns, score_local  # noqa: E402


def write_folder(root: Path, images: list[bytes], count: int) -> Path:
    """``count`` JPEGs in nested folders (10 per folder), cycling over the photos."""
    folder = root / "photos"
    for i in range(count):
        target = folder / f"d{i // 10:04d}" / f"{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(images[i % len(images)])
    return folder


def predict_rate(bundle: Path, folder: Path, out: Path, seconds: float, batch: int) -> float:
    """images/s of the local engine over the folder, at least once and repeated until
    ``seconds`` have passed."""
    session = InferenceSession.open(bundle, intra_op_threads=1)
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < seconds:
        files = discover([folder])
        with out.open("w", encoding="utf-8") as stream:
            writer = make_writer(stream, "jsonl", session.contract.task,
                                 ranked_columns(session.contract, None))  # fmt: skip
            score_local(session, files, writer.write, Plan(batch_size=batch))
        done += len(files)
    return done / (time.perf_counter() - started)


def ray_rate(bundle: Path, folder: Path, root: Path, batch: int, run: int) -> float:
    """images/s of one whole ``--engine ray`` job (Ray already initialised)."""
    from visionyard.bundle.store import load_bundle
    from visionyard.scoring.ray_engine import RayJob, score_ray

    files = discover([folder])
    job = RayJob(None, root / f"ray-out-{run}", "jsonl", Plan(batch_size=batch))
    summary = score_ray(load_bundle(bundle), files, job)
    return summary.images / summary.seconds


def cli_seconds(bundle: Path, folder: Path, out: Path) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "visionyard.cli.main", "--home", str(out.parent / "home"),
         "predict", str(bundle), str(folder), "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="JPEGs in the folder")
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vy-bench-predict-") as tmp:
        root = Path(tmp)
        images = photos()
        bundles = build_bundles(root, images)
        folder = write_folder(root, images, args.images)
        print(f"{args.images} JPEGs 640x480 in {folder}; batch {args.batch_size}", flush=True)
        rates = measure(args, bundles, folder, root, images)
        if not args.no_ray:
            rates.update(measure_ray(args, bundles["fp32"], folder, root))
        report(rates)
        wall = cli_seconds(bundles["fp32"], folder, root / "cli.jsonl")
        print(f"\nCLI end to end (start-up included), FP32: {args.images / wall:.1f} images/s")


def measure(
    args: argparse.Namespace, bundles: dict[str, Path], folder: Path, root: Path, images: Any
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}
    for run in range(args.repeat):
        for variant in ("fp32", "int8"):
            best = inprocess_best(bundles[variant], images, args.seconds)
            rate = predict_rate(bundles[variant], folder, root / "out.jsonl", args.seconds,
                                args.batch_size)  # fmt: skip
            rates.setdefault(f"inprocess {variant}", []).append(best["rate"])
            rates.setdefault(f"predict {variant}", []).append(rate)
            print(f"run {run + 1} {variant}: inprocess {best['rate']:.1f} ({best['config']}), "
                  f"predict {rate:.1f} images/s", flush=True)  # fmt: skip
    return rates


def measure_ray(
    args: argparse.Namespace, bundle: Path, folder: Path, root: Path
) -> dict[str, list[float]]:
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    rates: dict[str, list[float]] = {}
    try:
        for run in range(args.repeat):
            local = predict_rate(bundle, folder, root / "out.jsonl", 0.0, args.batch_size)
            on_ray = ray_rate(bundle, folder, root, args.batch_size, run)
            rates.setdefault("local job fp32", []).append(local)
            rates.setdefault("ray job fp32", []).append(on_ray)
            print(f"run {run + 1}: local job {local:.1f}, ray job {on_ray:.1f} images/s",
                  flush=True)  # fmt: skip
    finally:
        ray.shutdown()
    return rates


def report(rates: dict[str, list[float]]) -> None:
    median = {name: statistics.median(values) for name, values in rates.items()}
    print("\nmedian images/s")
    for name, value in median.items():
        print(f"  {name:<18} {value:8.1f}")
    print("\nratios (target)")
    for variant in ("fp32", "int8"):
        ratio = median[f"predict {variant}"] / median[f"inprocess {variant}"]
        print(f"  predict/inprocess {variant}: {ratio:.3f}x (>= 0.9)")
    if "ray job fp32" in median:
        ratio = median["ray job fp32"] / median["local job fp32"]
        print(f"  ray/local fp32 (whole job): {ratio:.3f}x (>= 0.7)")


if __name__ == "__main__":
    main()
