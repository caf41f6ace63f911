"""Benchmark: cold start of the CLI, each command in a fresh process, beside the floor.

``visionyard --help`` must answer in under 0.3 s cold and ``visionyard models show`` in under
1.5 s cold. Each command runs ``--runs`` times as a new process (interpreter start-up, imports,
work, exit: what a person waits for); the median is printed beside ``python -c pass`` (the
interpreter alone, the floor no command can beat) and ``python -c "import typer, rich"`` (what
a typer CLI costs before any of its own code) and MLflow's import with its SQL stores (what
every command reading the store through MLflow pays before visionyard's own code; ``models
show``, ``list`` and ``history`` read a SQLite store without MLflow: ``tracking.sqlite_read``).
The store is a SQLite one made in a temporary folder with one registered version (a tiny colour
classifier, no training).

    .venv/bin/python bench/bench_cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.registry_support import log_colour_run  # noqa: E402

from visionyard.registry import Registry  # noqa: E402
from visionyard.settings import Settings  # noqa: E402

NAME = "bench-cli"
EXE = str(Path(sys.executable).parent / "visionyard")
#: What any command reading a SQLite store pays before visionyard's own code: MLflow's import
#: and its SQLAlchemy tracking and registry stores.
MLFLOW_FLOOR = (
    "import mlflow, mlflow.store.tracking.sqlalchemy_store, "
    "mlflow.store.model_registry.sqlalchemy_store"
)
TARGETS = {"visionyard --help": 0.3, "visionyard models show": 1.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per command")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vy-bench-cli-") as tmp:
        settings = Settings(home=Path(tmp) / ".visionyard", tracking={"experiment": "bench"})
        Registry(settings).register(log_colour_run(settings, Path(tmp)), NAME)
        env = {**os.environ, "VISIONYARD_HOME": str(settings.home),
               "VISIONYARD_TRACKING__URI": settings.tracking_uri()}  # fmt: skip
        report(commands(), env, args.runs, cwd=Path(tmp))


def commands() -> dict[str, list[str]]:
    py = sys.executable
    return {
        "python -c pass (floor)": [py, "-c", "pass"],
        "python -c 'import typer, rich'": [py, "-c", "import typer, rich.console"],
        "python -c 'import mlflow + SQL stores'": [py, "-c", MLFLOW_FLOOR],
        "visionyard --help": [EXE, "--help"],
        "visionyard --version": [EXE, "--version"],
        "visionyard config show": [EXE, "config", "show"],
        "visionyard models list": [EXE, "models", "list"],
        "visionyard models show": [EXE, "models", "show", f"{NAME}/1"],
        "visionyard runs list": [EXE, "runs", "list"],
    }


def report(cmds: dict[str, list[str]], env: dict[str, str], runs: int, cwd: Path) -> None:
    floor = None
    print(f"{'command':40} {'median s':>9} {'min s':>7} {'x floor':>8}  target")
    for label, argv in cmds.items():
        times = [_once(argv, env, cwd) for _ in range(runs)]
        median = statistics.median(times)
        floor = floor or median
        target = TARGETS.get(label)
        verdict = "" if target is None else f"< {target} s: {'ok' if median < target else 'MISSED'}"
        print(f"{label:40} {median:9.3f} {min(times):7.3f} {median / floor:8.1f}  {verdict}")


def _once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
