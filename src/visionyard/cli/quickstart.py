"""``visionyard quickstart``: the whole story on synthetic data, on the configured store.

Each step calls the same library functions as the individual commands and prints what a user
would want to see. Heavy imports (torch, mlflow, onnxruntime) happen inside the steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from visionyard.cli.console import app_context, out
from visionyard.errors import ConfigError, VisionyardError
from visionyard.settings import LoadedSettings, Settings

MODEL = "shapes"
#: The quickstart's architecture; bench/bench_int8.py measures INT8 on exactly this model.
QUICKSTART_MODEL: dict[str, Any] = {"arch": "small_cnn", "width": 1.25}


@dataclass
class Story:
    """State shared by the quickstart steps."""

    loaded: LoadedSettings
    workdir: Path
    console: Console
    epochs: int
    seed: int
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    def cli(self, *args: str, expect: int = 0) -> None:
        """Run a visionyard command exactly as a user would type it, on the same store."""
        from visionyard.cli.main import main

        self.console.print(f"[bold cyan]$ visionyard {' '.join(args)}[/]", highlight=False)
        flags = ["--home", str(self.settings.home), "--tracking-uri", self.settings.tracking_uri()]
        if self.loaded.config_file is not None:
            flags += ["--config", str(self.loaded.config_file)]
        code = main([*flags, *args])
        if code != expect:
            raise VisionyardError(
                f"quickstart step `visionyard {' '.join(args)}` exited {code}, expected {expect}"
            )

    def table(self, title: str, rows: dict[str, Any]) -> None:
        table = Table(title=title, show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        for key, value in rows.items():
            table.add_row(key, str(value))
        self.console.print(table)


Step = Callable[[Story], None]


def step_data(story: Story) -> None:
    """Synthesize v1 and a larger v2 (a superset: same seed), manifest both, diff them."""
    from visionyard.data import build_manifest, diff_manifests, make_classification_set

    per_class, val = (200, 260), 50
    data = story.workdir / "data"
    for name, count in zip(("v1", "v2"), per_class, strict=True):
        make_classification_set(
            data / name, seed=story.seed, train_per_class=count, val_per_class=val
        )
    v1 = build_manifest(data / "v1")
    v2 = build_manifest(data / "v2")
    diff = diff_manifests(v1, v2)
    story.facts.update(data_v1=data / "v1", data_v2=data / "v2", manifest_v1=v1)
    story.table(
        "datasets",
        {
            "v1": f"{len(v1.entries)} images, digest {v1.digest[:23]}",
            "v2": f"{len(v2.entries)} images, digest {v2.digest[:23]}",
            "v1 -> v2": f"{len(diff.added)} added, {len(diff.removed)} removed, "
            f"{len(diff.relabelled)} relabelled",
        },
    )


def _train(story: Story, data: Path, name: str) -> Any:
    from visionyard.train import make_config, train

    config = make_config(data=data, epochs=story.epochs, seed=story.seed, **QUICKSTART_MODEL)
    result = train(config, story.settings, progress=True, console=story.console)
    story.table(
        f"training run {name}",
        {
            "run id": result.run_id,
            "val accuracy": f"{result.best_metrics.get('val_accuracy', float('nan')):.3f}",
            "best epoch": result.best_epoch,
            "bundle": result.bundle_path,
            "onnx parity (max abs diff)": f"{result.parity.max_abs_diff:.2e}",
        },
    )
    return result


def step_train_v1(story: Story) -> None:
    """Train v1: a tracked MLflow run with params, metrics, dataset, environment, bundle."""
    story.facts["run_v1"] = _train(story, story.facts["data_v1"], "v1")


def step_release_v1(story: Story) -> None:
    """Register v1 and put it in production (the first holder: no baseline to gate against)."""
    story.cli("register", story.facts["run_v1"].run_id, "--name", MODEL)
    story.cli("promote", MODEL, "1", "--to", "production", "--reason", "first release")


def step_train_v2(story: Story) -> None:
    """Train v2 on more data, register it and diff it against v1."""
    story.facts["run_v2"] = _train(story, story.facts["data_v2"], "v2")
    story.cli("register", story.facts["run_v2"].run_id, "--name", MODEL, "--parent", "1")
    story.cli("models", "diff", MODEL, "1", "2")


def step_gate(story: Story) -> None:
    """Gated promotion of v2 on v1's pinned validation set, then a rollback and its history."""
    manifest = story.facts["manifest_v1"]
    gate = story.workdir / "gate.yaml"
    gate.write_text(
        f"dataset: {story.facts['data_v1']}\nsplit: val\n"
        f"dataset_digest: {manifest.digest}\n"
        "max_metric_drop: 0.02\nmax_class_drop: 0.05\nmin_samples: 20\n"
    )
    story.cli("promote", MODEL, "2", "--to", "production", "--gate", str(gate))
    story.cli("rollback", MODEL, "--reason", "quickstart: demonstrate rollback")
    story.cli("models", "history", MODEL)


def step_export(story: Story) -> None:
    """INT8 variant of the production candidate (v2), calibrated and measured against FP32."""
    story.cli(
        "export", MODEL, "2", "--variants", "fp32,int8", "--data", str(story.facts["data_v2"])
    )
    story.cli("models", "show", f"{MODEL}/2")


def step_serve(story: Story) -> None:
    """Serve shapes@production; requests over REST and gRPC; follow promotions and rollbacks."""
    from visionyard.cli.quickstart_serve import serve_story

    serve_story(story)


STEPS: list[tuple[str, Step]] = [
    ("Synthetic data, manifests and their diff", step_data),
    ("Train v1 (tracked run, ONNX bundle)", step_train_v1),
    ("Register v1 and release it to production", step_release_v1),
    ("Train v2 on more data, register, diff", step_train_v2),
    ("Gated promotion of v2, then rollback", step_gate),
    ("Export an INT8 variant of v2", step_export),
    ("Serve shapes@production: REST, gRPC, hot swap, drift, shadow rollout", step_serve),
]


def _steps(task: str) -> list[tuple[str, Step]]:
    if task == "classification":
        return STEPS
    if task == "detection":
        from visionyard.cli.quickstart_detection import STEPS as DETECTION_STEPS

        return DETECTION_STEPS
    raise ConfigError(f"--task must be classification or detection, not {task!r}")


def _finish(story: Story, started: float) -> None:
    from visionyard.tracking import TrackingConfig, ui_command

    config = TrackingConfig.from_settings(story.settings)
    runs = {k: story.facts[k].run_id for k in ("run_v1", "run_v2") if k in story.facts}
    rows = {
        **{f"run id ({k[4:]})": v for k, v in runs.items()},
        "tracking store": config.tracking_uri,
        "open the MLflow UI": " ".join(ui_command(config, "127.0.0.1", 5000)),
        "total time": f"{time.perf_counter() - started:.0f} s",
    }
    story.table("quickstart done", rows)


def quickstart(
    ctx: typer.Context,
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Where data is written (default: <home>/quickstart)."
    ),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Training epochs per model."),
    seed: int = typer.Option(0, "--seed", help="Seed for data and training."),
    task: str = typer.Option(
        "classification", "--task", help="classification | detection (a detector's story)."
    ),
) -> None:
    """Run the whole story on synthetic data: data -> train -> track -> register -> serve."""
    steps = _steps(task)
    loaded = app_context(ctx).loaded
    root = (workdir or loaded.settings.home / "quickstart").resolve()
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"quickstart directory {root} is not empty; remove it or pass --workdir")
    story = Story(loaded, root, out(), epochs, seed)
    started = time.perf_counter()
    for number, (title, step) in enumerate(steps, start=1):
        story.console.print(Rule(f"[bold]{number}. {title}"))
        step(story)
    _finish(story, started)
