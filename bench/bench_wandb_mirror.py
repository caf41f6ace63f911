"""Benchmark: what the W&B mirror (offline mode) costs a training epoch, side by side.

Trains the quickstart configuration on the synthetic shapes set (250 train and 50 val images per
class, 64x64) with ``tracking.mirror = []`` and with ``["wandb"]`` (W&B offline, writing to a
temporary folder), alternating off/on ``--repeats`` times in one process so that both see the
same machine. Prints, per setting, the mean of the epochs' own time (the ``epoch_seconds``
metric each epoch logs: the training loop, with W&B starting beside the first epoch and the
mirror's queue behind every one) and the median wall time of the whole ``train()`` call (which
also waits for W&B to finish at the end), and the ratios mirror/no-mirror. Target: epoch ratio
<= 1.05. Run it on a quiet machine: with epochs under a second (``--smoke``) or other load on
the cores, W&B's start-up alone swings the ratio far more than the mirror costs.

    .venv/bin/python bench/bench_wandb_mirror.py            # full: 6 epochs x 3 pairs (~2 min)
    .venv/bin/python bench/bench_wandb_mirror.py --smoke               # seconds: proves it runs
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from visionyard.data import make_classification_set
from visionyard.settings import Settings
from visionyard.tracking import metric_history
from visionyard.train import make_config, train

TARGET_RATIO = 1.05


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)  # fewer: W&B start-up weighs more
    parser.add_argument("--repeats", type=int, default=3, help="off/on pairs, alternated")
    parser.add_argument("--per-class", type=int, default=250, help="training images per class")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, 1 pair")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.repeats, args.per_class = 1, 1, 8
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vy-bench-wandb-") as tmp:
        root = Path(tmp)
        _offline_wandb(root / "wb")
        data = make_classification_set(
            root / "shapes", train_per_class=args.per_class, val_per_class=args.per_class // 5 or 2
        )
        epochs: dict[str, list[float]] = {"off": [], "wandb": []}
        walls: dict[str, list[float]] = {"off": [], "wandb": []}
        for i in range(args.repeats):
            for mode in ("off", "wandb"):
                epoch_s, wall_s = _train(root / f"{mode}-{i}", data, mode, args)
                epochs[mode] += epoch_s
                walls[mode].append(wall_s)
    _report(epochs, walls, args)


def _offline_wandb(folder: Path) -> None:
    (folder / "config").mkdir(parents=True)
    os.environ.update(
        WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_CODE="true",
        WANDB_DISABLE_GIT="true", WANDB_DIR=str(folder), WANDB_DATA_DIR=str(folder / "data"),
        WANDB_CACHE_DIR=str(folder / "cache"), WANDB_CONFIG_DIR=str(folder / "config"),
        WANDB_ARTIFACT_DIR=str(folder / "artifacts"),
    )  # fmt: skip


def _train(
    home: Path, data: Path, mode: str, args: argparse.Namespace
) -> tuple[list[float], float]:
    mirror = [] if mode == "off" else [mode]
    settings = Settings(
        home=home,
        train={"num_threads": args.threads, "seed": 0},
        tracking={"mirror": mirror, "mirror_timeout_s": 120},
    )
    config = make_config(data=data, epochs=args.epochs, patience=None)
    started = time.perf_counter()
    result = train(config, settings)
    wall = time.perf_counter() - started
    history = metric_history(result.run_id, "epoch_seconds", settings=settings)
    return [value for _, value in history], wall


def _report(
    epochs: dict[str, list[float]], walls: dict[str, list[float]], args: argparse.Namespace
) -> None:
    epoch = {mode: statistics.fmean(values) for mode, values in epochs.items()}
    wall = {mode: statistics.median(values) for mode, values in walls.items()}
    print(f"{args.epochs} epochs x {args.repeats} runs per setting, {args.per_class} img/class")
    print(f"{'setting':<12}{'epoch (mean)':>16}{'train() wall':>16}")
    for mode in ("off", "wandb"):
        print(f"{mode:<12}{epoch[mode]:>14.3f} s{wall[mode]:>14.2f} s")
    epoch_ratio, wall_ratio = epoch["wandb"] / epoch["off"], wall["wandb"] / wall["off"]
    print(f"ratio epoch  {epoch_ratio:.3f}x   target <= {TARGET_RATIO}")
    print(f"ratio wall   {wall_ratio:.3f}x   (includes W&B start and finish)")
    print("PASS" if epoch_ratio <= TARGET_RATIO else "MISS")


if __name__ == "__main__":
    main()
