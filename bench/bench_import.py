"""Benchmark: ``visionyard import`` of a ~20 MB ONNX classifier to a registered version.

The classifier is ``visionyard.train.models.resnet18`` at width 0.65 with 1,000 classes
(~5.1 M parameters, ~20 MB of FP32 ONNX, 224x224 input), exported once here with random
weights (the content does not change the cost). Each measurement is a fresh child process,
timed from spawn to exit, its peak resident memory from ``os.wait4`` (``ru_maxrss``), all in one
run and side by side:

- ``ort load``: a child that imports onnxruntime and opens the file in an InferenceSession
  (the floor: what any consumer of the file pays);
- ``import onnx``: ``visionyard import --onnx FILE --preset imagenet --labels L -n NAME``
  (check, one run on ONNX Runtime, the "import" run with its bundle, registration: the model is
  stored twice, in the run's bundle and the registered MLflow model);
- ``import torch``: ``visionyard import --torch visionyard.train.models:resnet18
  --factory-arg num_classes=1000 --factory-arg width=0.65 --weights W.safetensors ...`` (torch
  build, export, parity on 8 generated images, then the same run and registration).

Every import goes into the same SQLite store (created by a warm-up import that is not
measured), under a new model name. Ratios are against ``ort load`` of the same run.

First figures (one run, repeats 1, on the 2-core development machine while other work ran;
rerun on a quiet machine for the README):

    step           wall s   vs ort load   peak RSS MiB   vs ort load
    ort load         0.33          1.0x            117          1.0x
    import onnx      7.11         21.4x            400          3.4x
    import torch    12.12         36.4x            705          6.0x

    .venv/bin/python bench/bench_import.py              # 3 repeats, the median is printed
    .venv/bin/python bench/bench_import.py --quick      # smoke: width 0.25, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "visionyard")
ORT_LOAD = (
    "import sys, onnxruntime as ort; "
    "ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
)


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_mb: float


def measure(argv: Sequence[str]) -> Sample:
    """Run ``argv`` in a child; wall seconds and its own peak RSS (MiB)."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}): {error[-2000:]}")
    return Sample(seconds, usage.ru_maxrss / 1024)


def build(root: Path, width: float) -> tuple[Path, Path, Path]:
    """The ONNX file, the same weights as safetensors, and a labels file."""
    import torch
    from safetensors.torch import save_file

    from visionyard.contract.schema import VisionContract
    from visionyard.export.onnx import export_torch
    from visionyard.train.models import resnet18

    torch.manual_seed(0)
    model = resnet18(1000, width).eval()
    labels = [f"class_{i:04d}" for i in range(1000)]
    onnx_path = root / "resnet18.onnx"
    onnx_path.write_bytes(export_torch(model, VisionContract.classification(labels)))
    weights = root / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    labels_path = root / "labels.txt"
    labels_path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return onnx_path, weights, labels_path


def _files(root: Path, width: float) -> tuple[Path, Path, Path]:
    """Build in a child process: a forked child's ``ru_maxrss`` starts at its parent's RSS, so
    the measuring process must stay small (no torch) for the figures to be the child's own."""
    subprocess.run([sys.executable, __file__, "--build", str(root), str(width)], check=True)
    return root / "resnet18.onnx", root / "resnet18.safetensors", root / "labels.txt"


def commands(root: Path, files: tuple[Path, Path, Path], width: float) -> dict[str, list[str]]:
    onnx_path, weights, labels = files
    store = ["--home", str(root / "home")]
    common = ["--preset", "imagenet", "--labels", str(labels)]
    return {
        "ort load": [sys.executable, "-c", ORT_LOAD, str(onnx_path)],
        "import onnx": [CLI, *store, "import", "--onnx", str(onnx_path), *common],
        "import torch": [
            CLI, *store, "import", "--torch", "visionyard.train.models:resnet18",
            "--factory-arg", "num_classes=1000", "--factory-arg", f"width={width}",
            "--weights", str(weights), *common,
        ],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 0.25, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build", nargs=2, metavar=("DIR", "WIDTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:  # in a child: torch never enters the measuring process (see _files)
        build(Path(args.build[0]), float(args.build[1]))
        return
    width, repeats = (0.25, 1) if args.quick else (0.65, args.repeats)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        root = Path(tmp)
        files = _files(root, width)
        size_mb = files[0].stat().st_size / 2**20
        cmds = commands(root, files, width)
        measure([*cmds["import onnx"], "-n", "warmup"])  # creates the store
        results: dict[str, list[Sample]] = {name: [] for name in cmds}
        for rep in range(repeats):
            for name, argv in cmds.items():
                extra = ["-n", f"{name.replace(' ', '-')}-{rep}"] if name != "ort load" else []
                results[name].append(measure([*argv, *extra]))
        _report(console, results, size_mb, width, repeats)


def _report(
    console: Console, results: dict[str, list[Sample]], size_mb: float, width: float, reps: int
) -> None:
    table = Table(title=f"import of a {size_mb:.1f} MiB ONNX classifier (resnet18 width {width}, "
                        f"1000 classes, median of {reps})")  # fmt: skip
    for column in ("step", "wall s", "vs ort load", "peak RSS MiB", "vs ort load"):
        table.add_column(column, justify="right" if column != "step" else "left")
    base = results["ort load"]
    base_s = statistics.median(s.seconds for s in base)
    base_m = statistics.median(s.max_rss_mb for s in base)
    for name, samples in results.items():
        sec = statistics.median(s.seconds for s in samples)
        mem = statistics.median(s.max_rss_mb for s in samples)
        table.add_row(
            name, f"{sec:.2f}", f"{sec / base_s:.1f}x", f"{mem:.0f}", f"{mem / base_m:.1f}x"
        )
    console.print(table)


if __name__ == "__main__":
    main()
