"""Benchmark: INT8 vs FP32 at batch 1 (model time alone) and top-1, two models side by side.

1. The quickstart model: the default training configuration (``visionyard.train`` defaults,
   small CNN, 64x64) trained on the default synthetic shapes set -- or an existing bundle with
   ``--bundle DIR --data ROOT`` (copied first; the original is not modified).
2. A ResNet-18-style network (``visionyard.train.models.resnet18``, random init, 224x224):
   its accuracy means nothing, its speed is the reference point for a real backbone.

Each bundle gets an INT8 variant through ``build_variants`` (static QDQ, QUInt8 activations,
QInt8 per-channel weights, MinMax calibration on training images), which also evaluates both
models on the validation split. Batch-1 latency is then measured again with FP32 and INT8
runs interleaved, so load from other processes on a shared machine hits both alike.
Targets: INT8 >= 2.5x faster than FP32 at batch 1; top-1 drop <= 1.0 point (trained model).

    .venv/bin/python bench/bench_int8.py [--threads 1] [--iterations 100] [--quick]
    .venv/bin/python bench/bench_int8.py --bundle .visionyard/runs/<id>/bundle --data shapes/
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from visionyard.bundle import write_bundle
from visionyard.cli.quickstart import QUICKSTART_MODEL
from visionyard.contract import VisionContract
from visionyard.data import make_classification_set
from visionyard.export.onnx import export_torch
from visionyard.export.reports import VariantReport
from visionyard.export.variants import (
    CalibrationOptions,
    TimingOptions,
    VariantOptions,
    build_variants,
)
from visionyard.export.workflow import resolve_sets
from visionyard.runtime import InferenceSession
from visionyard.settings import Settings
from visionyard.train import make_config, train
from visionyard.train.models import resnet18

TARGET_SPEEDUP = 2.5
TARGET_DROP_POINTS = 1.0
console = Console(stderr=True)


@dataclass(frozen=True)
class Row:
    model: str
    input: str
    fp32_ms: float
    int8_ms: float
    int8: VariantReport
    fp32: VariantReport
    trained: bool


def main() -> None:
    args = _parse()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    torch.set_num_threads(max(args.threads, 1))
    with tempfile.TemporaryDirectory(prefix="vy-bench-int8-") as tmp:
        work = Path(tmp)
        data = args.data or _shapes(work, args.quick)
        quick = _quickstart_bundle(work, args) if args.bundle is None else _copy(args.bundle, work)
        rows = [
            _measure("quickstart model", quick, data, args, trained=True),
            _measure("ResNet-18-style", _resnet_bundle(work, data), data, args, trained=False),
        ]
    _print(rows)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (runtime)")
    parser.add_argument("--iterations", type=int, default=100, help="batch-1 runs per model")
    parser.add_argument("--calibration", type=int, default=100, help="calibration images")
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer epochs")
    parser.add_argument("--bundle", type=Path, help="an existing trained bundle (quickstart)")
    parser.add_argument("--data", type=Path, help="its ImageFolder dataset (train/val)")
    args = parser.parse_args()
    if (args.bundle is None) != (args.data is None):
        parser.error("--bundle and --data go together")
    return args


def _shapes(work: Path, quick: bool) -> Path:
    console.print("making the synthetic shapes set")
    if quick:
        return make_classification_set(
            work / "shapes", seed=0, train_per_class=60, val_per_class=25
        )
    return make_classification_set(work / "shapes", seed=0)


def _quickstart_bundle(work: Path, args: argparse.Namespace) -> Path:
    console.print("training the quickstart model (default configuration)")
    settings = Settings(home=work / ".visionyard", train={"num_threads": 2, "seed": 0})
    quick = {"epochs": 4} if args.quick else {}
    config = make_config(data=work / "shapes", **QUICKSTART_MODEL, **quick)
    result = train(config, settings, progress=True, console=console)
    return _copy(result.bundle_path, work)


def _copy(bundle: Path, work: Path) -> Path:
    return Path(shutil.copytree(bundle, work / "quickstart-bundle"))


def _resnet_bundle(work: Path, data: Path) -> Path:
    console.print("exporting a random-init ResNet-18-style network (224x224)")
    labels = sorted(p.name for p in (data / "train").iterdir() if p.is_dir())
    contract = VisionContract.classification(labels, input_size=224)
    torch.manual_seed(0)
    model = export_torch(resnet18(len(labels)), contract)
    return write_bundle(work / "resnet18-bundle", model=model, contract=contract).path


def _measure(
    name: str, bundle: Path, data: Path, args: argparse.Namespace, *, trained: bool
) -> Row:
    evaluation, calibration = resolve_sets(data)
    options = VariantOptions(
        max_drop_points=TARGET_DROP_POINTS if trained else 100.0,
        force=True,  # keep the variant even when it misses the bound: the bench reports it
        calibration=CalibrationOptions(count=args.calibration),
        timing=TimingOptions(threads=args.threads, iterations=20, throughput_iterations=3),
    )
    started = time.perf_counter()
    fp32, int8 = build_variants(
        bundle,
        variants="int8",
        eval_set=evaluation,
        calibration_set=calibration,
        options=options,
        progress=lambda message: console.print(f"  {name}: {message}"),
    )
    console.print(f"  {name}: variants built in {time.perf_counter() - started:.1f} s")
    fp32_ms, int8_ms = _interleaved(bundle, args.threads, args.iterations)
    size = InferenceSession.open(bundle).contract.preprocessing.input_size
    return Row(name, f"{size.height}x{size.width}", fp32_ms, int8_ms, int8, fp32, trained)


def _interleaved(bundle: Path, threads: int, iterations: int) -> tuple[float, float]:
    """Batch-1 p50 (ms) of FP32 and INT8, runs alternating so both see the same load."""
    sessions = [
        InferenceSession.open(bundle, variant=v, intra_op_threads=threads) for v in ("fp32", "int8")
    ]
    tensor = sessions[0].dummy_input(1)
    times: list[list[float]] = [[], []]
    for step in range(iterations + 10):
        for index, session in enumerate(sessions):
            start = time.perf_counter()
            session.run(tensor)
            if step >= 10:
                times[index].append(time.perf_counter() - start)
    fp32, int8 = (float(np.percentile(t, 50)) * 1000.0 for t in times)
    return fp32, int8


def _print(rows: list[Row]) -> None:
    table = Table(title="INT8 vs FP32 (batch 1, ONNX Runtime CPU, model time alone)")
    columns = ["model", "input", "FP32 p50 ms", "INT8 p50 ms", "speedup", "FP32 top-1"]
    columns += ["INT8 top-1", "Δ points", "agreement", "verdict"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "verdict") else "right")
    for row in rows:
        table.add_row(*_cells(row))
    screen = Console(width=max(Console().width, 140))
    screen.print(table)
    screen.print(
        f"targets: speedup >= {TARGET_SPEEDUP}x at batch 1; top-1 drop <= "
        f"{TARGET_DROP_POINTS} point on the trained model (random-init accuracy not meaningful)"
    )


def _cells(row: Row) -> list[str]:
    speedup = row.fp32_ms / row.int8_ms
    quality = row.int8.quality
    fast = speedup >= TARGET_SPEEDUP
    accurate = not row.trained or -quality.delta_points <= TARGET_DROP_POINTS
    verdict = "PASS" if fast and accurate else "MISS"
    misses = [] if fast else ["speed"]
    misses += [] if accurate else ["accuracy"]
    return [
        row.model,
        row.input,
        f"{row.fp32_ms:.2f}",
        f"{row.int8_ms:.2f}",
        f"{speedup:.2f}x",
        f"{quality.reference:.4f}" + ("" if row.trained else " (random)"),
        f"{quality.value:.4f}",
        f"{quality.delta_points:+.2f}",
        f"{quality.agreement:.4f}",
        verdict + (f" ({', '.join(misses)})" if misses else ""),
    ]


if __name__ == "__main__":
    main()
