"""Benchmark: ``models show``, ``models history`` and ``models list`` on a registered model with
2,000 versions and 5,000 alias-history events, on a local SQLite store (target: < 1 s each).

The store is built through the public API first (real runs, two registered versions, real
promotions and rollbacks through the alias protocol), then scaled up by copying those rows in
MLflow's own SQLite tables: a registry write costs ~0.5 s at this size (MLflow loads the model's
versions on every write), so 7,000 writes through the API would take about an hour. Reads, the
thing measured, go through visionyard's CLI in-process (``main([...])``), output discarded. The
cold-process time (interpreter + imports) is reported apart.

    .venv/bin/python bench/bench_registry.py [--versions 2000] [--events 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.registry_support import log_colour_run  # noqa: E402

from visionyard.cli.main import main as cli  # noqa: E402
from visionyard.registry import Registry  # noqa: E402
from visionyard.registry.history import new_event  # noqa: E402
from visionyard.settings import Settings  # noqa: E402

TARGET_S = 1.0
NAME = "bench-shapes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="vy-bench-registry-") as tmp:
        settings = Settings(home=Path(tmp) / ".visionyard", tracking={"experiment": "bench"})
        started = time.perf_counter()
        seed_registry(settings, Path(tmp))
        scale_up(settings, args.versions, args.events)
        print(f"store built in {time.perf_counter() - started:.1f} s "
              f"({args.versions} versions, {args.events} events)")  # fmt: skip
        report(settings, args.repeat, args.versions)


def seed_registry(settings: Settings, tmp: Path) -> None:
    """Two real versions, real promotions and a rollback, and three small models for the list."""
    registry = Registry(settings)
    for sharpness in (10.0, 20.0):
        registry.register(log_colour_run(settings, tmp, sharpness=sharpness), NAME)
    registry.promote(NAME, "1", "production")
    registry.promote(NAME, "2", "production")
    registry.rollback(NAME, "production")
    for index in range(3):
        registry.register(log_colour_run(settings, tmp, sharpness=40.0 + index), f"small-{index}")


def scale_up(settings: Settings, versions: int, events: int) -> None:
    """Copy version 2 (row and tags) up to ``versions``; add history events up to ``events``."""
    db = sqlite3.connect(settings.home / "mlflow.db")
    with db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(model_versions)")]
        row = dict(zip(columns, db.execute(
            "SELECT * FROM model_versions WHERE name = ? AND version = 2", (NAME,)).fetchone(),
            strict=True))  # fmt: skip
        tags = db.execute(
            "SELECT key, value FROM model_version_tags WHERE name = ? AND version = 2", (NAME,)
        ).fetchall()
        rows = [tuple({**row, "version": v}.values()) for v in range(3, versions + 1)]
        marks = ", ".join("?" for _ in columns)
        db.executemany(f"INSERT INTO model_versions VALUES ({marks})", rows)
        db.executemany(
            "INSERT INTO model_version_tags (key, value, name, version) VALUES (?, ?, ?, ?)",
            [(k, f"1.{v}.0" if k == "vy.semver" else val, NAME, v)
             for v in range(3, versions + 1) for k, val in tags],
        )  # fmt: skip
        existing = db.execute(
            "SELECT COUNT(*) FROM registered_model_tags WHERE name = ? AND key LIKE 'vy.event.%'",
            (NAME,),
        ).fetchone()[0]
        holder = _add_events(db, events - existing, versions)
        db.execute(
            "UPDATE registered_model_aliases SET version = ? WHERE name = ? AND alias = ?",
            (int(holder), NAME, "production"),
        )


def _add_events(db: sqlite3.Connection, count: int, versions: int) -> str:
    holder = "1"
    for index in range(count):
        alias = ("candidate", "staging", "production")[index % 3]
        to = str(3 + index % (versions - 2))
        event = new_event(alias, holder if alias == "production" else None, to, actor="bench",
                          kind="promote", reason=f"bench {index}")  # fmt: skip
        db.execute(
            "INSERT INTO registered_model_tags (key, value, name) VALUES (?, ?, ?)",
            (*event.to_tag(), NAME),
        )
        if alias == "production":
            holder = to
    for alias in ("candidate", "staging"):
        last = db.execute(
            "SELECT value FROM registered_model_tags WHERE name = ? AND value LIKE ? "
            "ORDER BY key DESC LIMIT 1", (NAME, f'%"alias":"{alias}"%'),
        ).fetchone()  # fmt: skip
        if last:
            to = last[0].split('"to":"')[1].split('"')[0]
            db.execute(
                "INSERT OR REPLACE INTO registered_model_aliases (alias, version, name) "
                "VALUES (?, ?, ?)", (alias, int(to), NAME),
            )  # fmt: skip
    return holder


def report(settings: Settings, repeat: int, versions: int) -> None:
    flags = ["--home", str(settings.home), "--tracking-uri", settings.tracking_uri()]
    commands = {
        "models show NAME@production": ["models", "show", f"{NAME}@production"],
        "models show NAME/VERSION": ["models", "show", f"{NAME}/{versions // 2}"],
        "models history NAME (last 50)": ["models", "history", NAME],
        "models history NAME --limit 0 --json (all)": [
            "models",
            "history",
            NAME,
            "-n",
            "0",
            "--json",
        ],  # fmt: skip
        "models list": ["models", "list"],
    }
    extra = {"models history NAME --limit 0 (table of all)": ["models", "history", NAME, "-n", "0"]}
    worst = 0.0
    print(f"{'command':45} {'median':>9} {'max':>9}   (in-process, {repeat} runs after 1 warm-up)")
    for label, args in commands.items():
        times = [_timed([*flags, *args]) for _ in range(repeat + 1)][1:]
        worst = max(worst, statistics.median(times))
        print(f"{label:45} {statistics.median(times):8.3f}s {max(times):8.3f}s")
    for label, args in extra.items():
        times = [_timed([*flags, *args]) for _ in range(2)]
        print(f"{label:45} {statistics.median(times):8.3f}s {max(times):8.3f}s   (informational)")
    cold = _cold([*flags, "models", "show", f"{NAME}@production"])
    print(f"cold process `visionyard models show` (interpreter + imports + command): {cold:.2f} s")
    verdict = "PASS" if worst < TARGET_S else "FAIL"
    print(f"{verdict}: slowest median {worst:.3f} s (target < {TARGET_S:.1f} s)")
    if worst >= TARGET_S:
        sys.exit(1)


def _timed(argv: list[str]) -> float:
    sink = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        rc = cli(argv)
    elapsed = time.perf_counter() - started
    if rc != 0:
        raise SystemExit(f"visionyard {' '.join(argv)} failed ({rc}):\n{sink.getvalue()}")
    return elapsed


def _cold(argv: list[str]) -> float:
    started = time.perf_counter()
    code = "import sys; from visionyard.cli.main import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
