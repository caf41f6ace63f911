"""``visionyard train``: train an image classifier (ImageFolder) or a detector (``--task
detection``, COCO folder), export it and log the bundle to a run.

Flags mirror :class:`visionyard.train.config.TrainConfig`; a flag left out keeps the config's
default (shown in ``--help``) or the settings' value (seed, device, threads, pixel limit).
torch is imported inside the command only, so ``visionyard --help`` stays fast and a missing
torch is one clear line (exit code 11).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, err, out
from visionyard.errors import ConfigError

if TYPE_CHECKING:
    from visionyard.settings import Settings
    from visionyard.train.trainer import TrainResult

_ARCHS = "small_cnn, resnet18, mobilenet_v2"
#: Flags passed to TrainConfig under their own name when given.
_PLAIN_FLAGS = frozenset(
    {
        "data", "task", "arch", "width", "score_threshold", "epochs", "batch_size", "lr",
        "optimizer", "weight_decay",
        "resize", "monitor", "val_fraction", "seed", "device", "amp", "experiment", "run_name",
        "opset", "parity_max_abs",
    }
)  # fmt: skip


def train(
    ctx: typer.Context,
    data: Path = typer.Option(
        ..., "--data", help="ImageFolder root, or a COCO folder (annotations.json, images/)."
    ),
    task: str | None = typer.Option(
        None, "--task", help="classification (default) | detection (COCO data)"
    ),
    score_threshold: float | None = typer.Option(
        None, "--score-threshold", help="Detection: the served score threshold (default 0.2)."
    ),
    arch: str | None = typer.Option(None, "--arch", help=f"{_ARCHS} (default small_cnn)"),
    width: float | None = typer.Option(None, "--width", help="Width multiplier (default 1)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Most epochs (default 10)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="(default 32)"),
    lr: float | None = typer.Option(
        None, "--lr", help="Learning rate (default 0.003 with AdamW; 0.0005 for resnet18)."
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="adamw | sgd"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="(default 1e-4)"),
    input_size: str | None = typer.Option(None, "--input-size", help="SIDE or HxW (default 64)."),
    resize: str | None = typer.Option(None, "--resize", help="resize | center_crop | letterbox"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Augment training images."),
    hflip: bool = typer.Option(True, "--hflip/--no-hflip", help="Random horizontal flips."),
    vflip: bool = typer.Option(False, "--vflip/--no-vflip", help="Random vertical flips."),
    rotate: float | None = typer.Option(
        None, "--rotate", help="Max rotation, degrees (default 10)."
    ),
    translate: float | None = typer.Option(
        None, "--translate", help="Max shift fraction (default 0.1)."
    ),
    jitter: float | None = typer.Option(
        None, "--jitter", help="Colour jitter amount (default 0.2)."
    ),
    patience: int | None = typer.Option(
        None, "--patience", help="Early stopping patience, 0 = off (default 3; detection 8)."
    ),
    monitor: str | None = typer.Option(
        None, "--monitor", help="val_accuracy | val_loss; detection: val_map_50_95 | val_map_50"
    ),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Without a val split."),
    seed: int | None = typer.Option(None, "--seed", help="Default: settings train.seed."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
    amp: str | None = typer.Option(None, "--amp", help="none | bf16 | fp16 (CUDA only)."),
    experiment: str | None = typer.Option(None, "--experiment", help="MLflow experiment."),
    run_name: str | None = typer.Option(None, "--run-name", help="MLflow run name."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default 17)."),
    parity_max_abs: float | None = typer.Option(None, "--parity-max-abs", help="(default 1e-3)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    mirror: list[str] | None = typer.Option(
        None, "--mirror", help="Also send the run to: wandb (default: settings tracking.mirror)."
    ),
) -> None:
    """Train a classifier (ImageFolder) or a detector (--task detection, COCO); log metrics,
    reports, checkpoint and bundle."""
    flags = {k: v for k, v in locals().items() if k in _PLAIN_FLAGS}  # parameters only here
    values: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if input_size is not None:
        values["input_size"] = _size(input_size)
    if patience is not None:
        values["patience"] = patience or None
    values["augment"] = _augmentation(augment, hflip, vflip, rotate, translate, jitter)

    from visionyard.train import make_config
    from visionyard.train import train as run_training

    settings = _with_mirror(app_context(ctx).settings, mirror)
    _announce_new_store(settings)
    result = run_training(make_config(**values), settings, progress=progress, console=err())
    _print_summary(result)


def _with_mirror(settings: Settings, mirror: list[str] | None) -> Settings:
    """``--mirror`` replaces ``tracking.mirror`` (validated like the setting)."""
    if not mirror:
        return settings
    from pydantic import ValidationError

    from visionyard.settings import TrackingSettings

    try:
        tracking = TrackingSettings.model_validate({**dict(settings.tracking), "mirror": mirror})
    except ValidationError as exc:
        raise ConfigError(f"--mirror: {exc.errors()[0]['msg']}") from exc
    return settings.model_copy(update={"tracking": tracking})


def _announce_new_store(settings: Settings) -> None:
    """An explicit SQLite store that does not exist is created by the run: say so up front, a
    typo in the path would otherwise put the run where no later command looks."""
    from visionyard.tracking.store import TrackingConfig, missing_sqlite_store

    if settings.tracking.uri is None:
        return
    path = missing_sqlite_store(TrackingConfig.from_settings(settings).tracking_uri)
    if path is not None and path.resolve() != (settings.home / "mlflow.db").resolve():
        err().print(
            f"note: there is no tracking store at {escape(str(path))}: this run creates a NEW, "
            "empty one (check --tracking-uri if you meant an existing store)",
            highlight=False,
        )


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    raise ConfigError(f"--input-size must be SIDE or HEIGHTxWIDTH (e.g. 64 or 48x64), not {text!r}")


def _augmentation(
    enabled: bool,
    hflip: bool,
    vflip: bool,
    rotate: float | None,
    translate: float | None,
    jitter: float | None,
) -> dict[str, Any]:
    options: dict[str, Any] = {"enabled": enabled, "hflip": hflip, "vflip": vflip}
    if rotate is not None:
        options["rotate_degrees"] = rotate
    if translate is not None:
        options["translate"] = translate
    if jitter is not None:
        options.update(brightness=jitter, contrast=jitter, saturation=jitter)
    return options


def _print_summary(result: TrainResult) -> None:
    best = result.best_metrics
    table = Table(title="training run")
    table.add_column("")
    table.add_column("value")
    if "val_map_50" in best:
        quality = [("val mAP@[.5:.95]", f"{best['val_map_50_95']:.4f}"),
                   ("val mAP@.5", f"{best['val_map_50']:.4f}")]  # fmt: skip
    else:
        quality = [("val accuracy", f"{best['val_accuracy']:.4f}"),
                   ("val macro F1", f"{best['val_macro_f1']:.4f}"),
                   ("val loss", f"{best['val_loss']:.4f}")]  # fmt: skip
    rows = [
        ("run id", result.run_id),
        ("best epoch", f"{result.best_epoch} of {result.epochs_run}"),
        ("stopped early", "yes" if result.stopped_early else "no"),
        *quality,
        ("ONNX parity", _parity_text(result)),
        ("bundle", str(result.bundle_path)),
        ("checkpoint", str(result.checkpoint_path)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = out()
    console.print(table)
    console.print(f"run id: {result.run_id}", highlight=False)


def _parity_text(result: TrainResult) -> str:
    parity = result.parity
    if not hasattr(parity, "top1_agreement"):
        return parity.describe()
    return (
        f"max abs diff {parity.max_abs_diff:.2e}, top-1 agreement "
        f"{parity.top1_agreement:.4f} on {parity.n_images} images"
    )
