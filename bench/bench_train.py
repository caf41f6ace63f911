"""Benchmark: the quickstart training configuration on the synthetic shapes set.

Makes the default synthetic classification set (``visionyard data synth --kind classification``:
250 train and 50 val images per class, 64x64, seed 0), then runs ``visionyard.train.train``
with the default :class:`~visionyard.train.config.TrainConfig` on a fresh local store, and
prints the validation accuracy of the best epoch and the wall time of the whole ``train()``
call (manifest, decoding, training, checkpoint, ONNX export, parity, bundle, logging).
Target: >= 95% validation accuracy in under 2 minutes on 2 CPU cores.

    .venv/bin/python bench/bench_train.py [--threads 2] [--arch small_cnn] [--epochs N]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from visionyard.data import make_classification_set
from visionyard.settings import Settings
from visionyard.train import make_config, train

TARGET_ACCURACY = 0.95
TARGET_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--arch", default=None, help="architecture (default: the config's)")
    parser.add_argument("--epochs", type=int, default=None, help="(default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    overrides: dict[str, Any] = {
        k: v for k, v in {"arch": args.arch, "epochs": args.epochs}.items() if v is not None
    }
    with tempfile.TemporaryDirectory(prefix="vy-bench-train-") as tmp:
        data = make_classification_set(Path(tmp) / "shapes", seed=args.seed)
        settings = Settings(
            home=Path(tmp) / ".visionyard", train={"num_threads": args.threads, "seed": args.seed}
        )
        config = make_config(data=data, **overrides)
        started = time.perf_counter()
        result = train(config, settings, progress=True)
        seconds = time.perf_counter() - started
    accuracy = result.best_metrics["val_accuracy"]
    print(f"arch            {config.arch} (width {config.width}, input {config.input_size})")
    print(f"epochs run      {result.epochs_run} (best {result.best_epoch})")
    print(f"val accuracy    {accuracy:.4f}   target >= {TARGET_ACCURACY}")
    print(f"wall time       {seconds:.1f} s   target < {TARGET_SECONDS:.0f} s")
    print(f"ONNX parity     max abs diff {result.parity.max_abs_diff:.2e}")
    ok = accuracy >= TARGET_ACCURACY and seconds < TARGET_SECONDS
    print("PASS" if ok else "MISS")


if __name__ == "__main__":
    main()
