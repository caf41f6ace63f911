"""Benchmark: pruned variants (and with INT8) vs FP32, side by side, on two trained models.

1. The quickstart model (``QUICKSTART_MODEL``: small CNN, width 1.25, 64x64) trained on the
   default synthetic shapes set.
2. A ResNet-18-style network (``arch = resnet18``, ``--resnet-size`` input, default 112x112)
   trained on the same set resized (6 epochs, its default lr 5e-4: 0.98 top-1), so its accuracy
   deltas mean something. At 224x224 it reached only 0.40 in 6 epochs (4x the compute per
   epoch); at the old default lr 3e-3 it never left chance (0.30-0.36 after 4-12 epochs).

Each trained version gets ``int8, pruned25, pruned50, pruned25-int8, pruned50-int8`` exactly as
``visionyard export NAME VERSION --variants ...`` builds them: torch-pruning removes the channels,
a tracked run fine-tunes the pruned model (``--finetune-epochs``, default 6) with the recorded
training configuration, and ``build_variants`` quantizes, evaluates on the validation split and
stores them (``--force``: kept even past the bound, the bench reports the verdict). Latency at
batch 1 and throughput at batch 16 are then measured again with all six models' runs
interleaved, so load from other processes hits each alike; ratios are against FP32 in the same
run.
Target: pruned50-int8 >= 4x faster than FP32 at batch 1 with <= 1 point top-1 drop.

    .venv/bin/python bench/bench_pruning.py                # full run (quiet machine, ~8 min)
    .venv/bin/python bench/bench_pruning.py --smoke        # seconds: proves the script works
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from visionyard.cli.quickstart import QUICKSTART_MODEL
from visionyard.data import make_classification_set
from visionyard.export.reports import VariantReport
from visionyard.export.variants import (
    CalibrationOptions,
    TimingOptions,
    VariantOptions,
    build_variants,
)
from visionyard.export.workflow import resolve_sets
from visionyard.runtime import InferenceSession
from visionyard.runtime.session import session_options
from visionyard.settings import Settings
from visionyard.train import make_config, train
from visionyard.train.prune_finetune import LR_SCALE, FinetuneOptions, build_pruned

VARIANTS = ("fp32", "int8", "pruned25", "pruned50", "pruned25-int8", "pruned50-int8")
TARGET_VARIANT, TARGET_SPEEDUP, TARGET_DROP_POINTS = "pruned50-int8", 4.0, 1.0
console = Console(stderr=True)


@dataclass(frozen=True)
class Timed:
    b1_ms: float
    b16_images_per_s: float


@dataclass(frozen=True)
class Measured:
    model: str
    input: str
    reports: dict[str, VariantReport]
    timed: dict[str, Timed]
    floor_ms: float  # batch-1 p50 of a do-nothing graph as long as the target's (ORT's floor)
    floor_nodes: int  # nodes in the target variant's graph as ONNX Runtime optimised it


def main() -> None:
    args = _parse()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    torch.set_num_threads(max(args.threads, 1))
    with tempfile.TemporaryDirectory(prefix="vy-bench-pruning-") as tmp:
        work = Path(tmp)
        data = _shapes(work, args.smoke)
        settings = Settings(
            home=work / ".visionyard", train={"num_threads": args.train_threads, "seed": 0}
        )
        quick = {**QUICKSTART_MODEL, "epochs": args.epochs}
        size = (args.resnet_size, args.resnet_size)
        resnet = {"arch": "resnet18", "epochs": args.resnet_epochs, "input_size": size}
        resnet["width"] = args.resnet_width
        if args.smoke:
            quick.update(width=0.5, input_size=(32, 32))
        rows = [
            _measure("quickstart model", quick, data, settings, args),
            _measure("ResNet-18-style", resnet, data, settings, args),
        ]
    _print(rows)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (runtime)")
    parser.add_argument("--train-threads", type=int, default=2, help="torch threads (training)")
    parser.add_argument("--iterations", type=int, default=100, help="timed runs per model")
    parser.add_argument("--epochs", type=int, default=10, help="quickstart model epochs")
    parser.add_argument("--resnet-epochs", type=int, default=6)
    parser.add_argument("--resnet-size", type=int, default=112, help="ResNet input (square)")
    parser.add_argument("--resnet-width", type=float, default=1.0)
    parser.add_argument(
        "--finetune-epochs", type=int, default=6, help="0: the CLI's default, 30 %% of training"
    )
    parser.add_argument(
        "--finetune-lr-scale", type=float, default=LR_SCALE, help="of the training's lr"
    )
    parser.add_argument("--calibration", type=int, default=100, help="calibration images")
    parser.add_argument("--smoke", action="store_true", help="tiny data and models: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.iterations, args.epochs, args.resnet_epochs = 5, 1, 1
        args.resnet_size, args.resnet_width, args.calibration = 32, 0.25, 10
        args.finetune_epochs = 1
    return args


def _shapes(work: Path, smoke: bool) -> Path:
    console.print("making the synthetic shapes set")
    if smoke:
        return make_classification_set(
            work / "shapes", seed=0, train_per_class=12, val_per_class=4, size=32
        )
    return make_classification_set(work / "shapes", seed=0)


def _measure(
    name: str, model: dict[str, Any], data: Path, settings: Settings, args: argparse.Namespace
) -> Measured:
    say = _say(name)
    say(f"training ({model['arch']}, {model['epochs']} epochs)")
    result = train(make_config(data=data, **model), settings)
    started = time.perf_counter()
    finetune = FinetuneOptions(args.finetune_epochs or None, args.finetune_lr_scale)
    pruned = build_pruned(settings, result.run_id, name, VARIANTS, finetune, say)
    evaluation, calibration = resolve_sets(data)
    options = VariantOptions(
        max_drop_points=TARGET_DROP_POINTS,
        min_agreement=0.0,
        force=True,  # the bench reports the verdict; it keeps every variant
        calibration=CalibrationOptions(count=args.calibration),
        timing=TimingOptions(threads=args.threads, iterations=5, throughput_iterations=1),
        pruned=pruned,
    )
    reports = build_variants(
        result.bundle_path, variants=VARIANTS, eval_set=evaluation,
        calibration_set=calibration, options=options, progress=say,
    )  # fmt: skip
    say(f"variants built in {time.perf_counter() - started:.1f} s; timing them interleaved")
    timed, floor, nodes = _interleaved(result.bundle_path, args.threads, args.iterations)
    size = InferenceSession.open(result.bundle_path).contract.preprocessing.input_size
    measured = {r.name: r for r in reports}
    return Measured(name, f"{size.height}x{size.width}", measured, timed, floor, nodes)


def _say(name: str) -> Any:
    return lambda message: console.print(f"  {name}: {message}", highlight=False)


def _interleaved(
    bundle: Path, threads: int, iterations: int
) -> tuple[dict[str, Timed], float, int]:
    """Batch-1 p50 (ms) and batch-16 images/s of every variant, runs alternating; and in the
    same loop the batch-1 p50 (ms) of a do-nothing graph as long as the target variant's
    (:func:`_floor_session`), with that length."""
    sessions = {
        v: InferenceSession.open(bundle, variant=v, intra_op_threads=threads) for v in VARIANTS
    }
    one, sixteen = sessions["fp32"].dummy_input(1), sessions["fp32"].dummy_input(16)
    nodes = _optimised_nodes(InferenceSession.open(bundle).bundle.model_path(TARGET_VARIANT))
    floor, feed = _floor_session(sessions["fp32"].input_meta.name, nodes, threads), {}
    feed[floor.get_inputs()[0].name] = one
    floors: list[float] = []
    single: dict[str, list[float]] = {v: [] for v in VARIANTS}
    batch: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for step in range(iterations + 5):
        started = time.perf_counter()
        floor.run(None, feed)
        floors.append(time.perf_counter() - started)
        for name, session in sessions.items():
            single[name].append(_seconds(session, one))
            if step % 5 == 0:
                batch[name].append(_seconds(session, sixteen))
    timed = {
        v: Timed(
            float(np.percentile(single[v][5:], 50)) * 1000.0,
            16.0 / float(np.percentile(batch[v][1:] or batch[v], 50)),
        )
        for v in VARIANTS
    }
    return timed, float(np.percentile(floors[5:], 50)) * 1000.0, nodes


def _optimised_nodes(model: Path) -> int:
    """Nodes of ``model`` after ONNX Runtime's graph optimisation (what a call executes)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = session_options()
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        return len(onnx.load(options.optimized_model_filepath).graph.node)


def _floor_session(input_name: str, nodes: int, threads: int) -> Any:
    """A graph of ``nodes`` nodes that does nothing (the mean of its input, then ReLUs of one
    number per image) in ONNX Runtime with the same threads: the fixed cost of running that many
    nodes, which no graph of that length can go under however few its channels."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info(f"h{nodes - 1}", TensorProto.FLOAT, ["N"])
    chain = [helper.make_node("ReduceMean", [input_name], ["h0"], axes=[1, 2, 3], keepdims=0)]
    chain += [helper.make_node("Relu", [f"h{i - 1}"], [f"h{i}"]) for i in range(1, nodes)]
    graph = helper.make_graph(chain, "floor", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = session_options(max(threads, 1))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep them
    blob = onnx.shape_inference.infer_shapes(model).SerializeToString()
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def _seconds(session: InferenceSession, tensor: np.ndarray) -> float:
    start = time.perf_counter()
    session.run(tensor)
    return time.perf_counter() - start


def _print(rows: list[Measured]) -> None:
    title = "Pruned and INT8 variants vs FP32 (ONNX Runtime CPU, model time alone, one run)"
    table = Table(title=title)
    columns = ["model", "variant", "b=1 p50 ms", "b=1 speedup", "b=16 img/s", "b=16 ratio"]
    columns += ["top-1", "Δ points", "agreement", "params", "MACs", "size MB", "verdict"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "variant") else "right")
    for row in rows:
        for variant in VARIANTS:
            table.add_row(*_cells(row, variant))
        table.add_section()
    screen = Console(width=max(Console().width, 160))
    screen.print(table)
    for row in rows:
        fp32 = row.timed["fp32"].b1_ms
        screen.print(
            f"{row.model}: a do-nothing graph of {row.floor_nodes} nodes (as many as "
            f"{TARGET_VARIANT}'s, optimised) takes {row.floor_ms:.3f} ms at batch 1 here: "
            f"{TARGET_VARIANT} cannot beat fp32 by more than {fp32 / row.floor_ms:.1f}x"
        )
    screen.print(
        f"target: {TARGET_VARIANT} >= {TARGET_SPEEDUP:g}x faster than fp32 at batch 1 with a "
        f"top-1 drop <= {TARGET_DROP_POINTS:g} point on the synthetic validation set"
    )


def _cells(row: Measured, variant: str) -> list[str]:
    report, timed, base = row.reports[variant], row.timed[variant], row.timed["fp32"]
    quality, pruning = report.quality, report.pruning
    speedup = base.b1_ms / timed.b1_ms
    delta = quality.delta_points or 0.0
    verdict = ""
    if variant == TARGET_VARIANT:
        ok = speedup >= TARGET_SPEEDUP and -delta <= TARGET_DROP_POINTS
        verdict = "PASS" if ok else "MISS"
    params = f"{pruning.params_after / pruning.params_before:.2f}x" if pruning else "1.00x"
    macs = f"{pruning.macs_after / pruning.macs_before:.2f}x" if pruning else "1.00x"
    return [
        f"{row.model} {row.input}" if variant == "fp32" else "",
        variant,
        f"{timed.b1_ms:.2f}",
        f"{speedup:.2f}x",
        f"{timed.b16_images_per_s:.0f}",
        f"{timed.b16_images_per_s / base.b16_images_per_s:.2f}x",
        f"{quality.value:.4f}",
        f"{quality.delta_points:+.2f}" if quality.delta_points is not None else "-",
        f"{quality.agreement:.4f}",
        params,
        macs,
        f"{report.file_size_bytes / 1e6:.2f}",
        verdict,
    ]


if __name__ == "__main__":
    main()
