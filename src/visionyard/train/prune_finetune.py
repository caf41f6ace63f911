"""Pruned models of a trained version: prune with torch-pruning, fine-tune briefly, export.

For each requested ratio, :func:`build_pruned`:

1. rebuilds the trained module from its run's checkpoint (:mod:`visionyard.train.prune_source`);
2. removes that share of its channels (:func:`visionyard.export.pruning.prune`);
3. fine-tunes the smaller module in a TRACKED run (tags ``visionyard.source = prune`` and
   ``visionyard.prune.source_run``) with the recorded training configuration, for a fraction
   of its epochs (``--finetune-epochs``) at its learning rate (:data:`LR_SCALE`), on the recorded
   training data (or ``--data`` when that folder is gone; the run's dataset digest says which),
   keeping the best epoch as training does;
4. exports it through the ordinary ONNX path and checks torch-vs-ONNX-Runtime parity.

The result, ONNX bytes plus a :class:`~visionyard.export.prune_spec.Pruning` lineage record, is
measured and judged by :func:`visionyard.export.variants.measure_variants` like any variant.
This module lives in ``train/`` (not ``export/``) because it runs the training loop, and
``export/`` may not import ``train/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.errors import ExportError
from visionyard.export.onnx import check_parity, export_torch
from visionyard.export.prune_spec import PrunedModel, Pruning, parse_pruned
from visionyard.export.pruning import (
    METHOD,
    PruneResult,
    prune,
    torch_pruning,
    torch_pruning_version,
)
from visionyard.settings import Settings
from visionyard.tracking import TrackedRun, start_run
from visionyard.train.config import TrainConfig
from visionyard.train.data import eval_tensor
from visionyard.train.loop import FitResult, Loop, LoopData
from visionyard.train.models import with_embedding
from visionyard.train.progress import TrainingProgress
from visionyard.train.prune_source import TrainedSource, trained_source
from visionyard.train.trainer import PreparedData, prepare_data, resolve_device, torch_runtime

#: Of the training's learning rate (cosine to 0 over the fine-tuning). A tenth left a ResNet-18
#: pruned by half 7-15 points under FP32 on the shapes set; its own rate recovered it (+2 points;
#: bench/bench_pruning.py, 2026-12-06): removing half the channels is a large change, not a nudge.
LR_SCALE = 1.0
EPOCH_SHARE = 0.3
Progress = Callable[[str], None]


@dataclass(frozen=True)
class FinetuneOptions:
    """``epochs``: fine-tuning epochs (default: 30 % of the recorded epochs, at least 1);
    ``data``: the dataset folder used when the recorded training folder no longer exists."""

    epochs: int | None = None
    lr_scale: float = LR_SCALE
    data: Path | None = None


def pruned_for_version(
    settings: Settings,
    name: str,
    version: str,
    variants: Sequence[str],
    options: FinetuneOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, PrunedModel]:
    """The pruned models that ``variants`` need, for registered version ``version`` of
    ``name`` (refused at once when the version already holds one of those variants)."""
    from visionyard.tracking.registry_client import RegistryClient

    info = RegistryClient.from_settings(settings).get_version(name, version)
    held = set(info.tags.get("vy.variants", "").split(","))
    existing = [v for v in variants if v in held and v != "fp32"]
    if existing:
        raise ExportError(
            f"version {version} of {name!r} already has variant(s) {', '.join(existing)}; a "
            "registered version's files never change: build these on a new version"
        )
    what = f"version {version} of {name!r}"
    return build_pruned(settings, info.run_id, what, variants, options, progress)


def build_pruned(
    settings: Settings,
    run_id: str | None,
    what: str,
    variants: Sequence[str],
    options: FinetuneOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, PrunedModel]:
    """``{"pruned50": PrunedModel, ...}`` for every ratio among ``variants`` (see module docs);
    ``{}`` when none is pruned."""
    percents = sorted({parse_pruned(v).percent for v in variants if v.startswith("pruned")})
    if not percents:
        return {}
    torch_pruning()  # the missing extra is named before any work is done
    say = progress or (lambda _message: None)
    opts = options or FinetuneOptions()
    say(f"reading the training run of {what}")
    source = trained_source(settings, run_id, what)
    config = _finetune_config(source.config, opts, settings)
    say(f"decoding the training images of {config.data}")
    data = prepare_data(config)
    if data.contract.labels != source.checkpoint.labels:
        raise ExportError(
            f"the fine-tuning data {config.data} has classes {list(data.contract.labels)}, the "
            f"model {list(source.checkpoint.labels)}; give --data the version's training set"
        )
    return {f"pruned{p}": _one(settings, source, config, data, p, say) for p in percents}


def _finetune_config(
    recorded: TrainConfig, opts: FinetuneOptions, settings: Settings
) -> TrainConfig:
    data = recorded.data
    if not Path(data).is_dir():
        if opts.data is None:
            raise ExportError(
                f"the version's training data {data} is gone; give --data DIR (its training set)"
            )
        data = opts.data
    epochs = opts.epochs or max(1, round(recorded.epochs * EPOCH_SHARE))
    update = {"data": data, "epochs": epochs, "lr": recorded.lr * opts.lr_scale}
    return recorded.model_copy(update=update).resolved(settings)


def _one(
    settings: Settings,
    source: TrainedSource,
    config: TrainConfig,
    data: PreparedData,
    percent: int,
    say: Progress,
) -> PrunedModel:
    size = data.contract.preprocessing.input_size
    example = torch.zeros(1, 3, size.height, size.width)
    say(f"pruning {percent}% of the channels")
    result = prune(source.checkpoint.build(), example, percent / 100.0)
    device = resolve_device(settings.train.device)
    tags = {
        "visionyard.task": "classification",
        "visionyard.arch": config.arch,
        "visionyard.source": "prune",
        "visionyard.prune.source_run": source.run_id,
        "visionyard.prune.ratio": percent / 100.0,
    }
    run_name = f"pruned{percent}-{source.run_id[:8]}"
    with (
        torch_runtime(config.seed or 0, device, config.num_threads or 0),
        start_run(config.experiment, settings=settings, run_name=run_name, tags=tags) as run,
    ):
        _log_inputs(run, config, data, result, source)
        say(f"fine-tuning pruned{percent} for {config.epochs} epoch(s) (run {run.run_id})")
        fit = _fit(run, result.module, config, data, device)
        say(f"exporting pruned{percent} to ONNX")
        model = _export(result.module, config, data)
        pruning = _lineage(result, source, config, data, fit, run.run_id)
        run.log_metrics(fit.best.epoch, {"best_val_accuracy": fit.best.val.accuracy})
        run.log_dict(pruning.model_dump(mode="json"), "pruning.json")
        return PrunedModel(model, pruning)


def _log_inputs(
    run: TrackedRun,
    config: TrainConfig,
    data: PreparedData,
    result: PruneResult,
    source: TrainedSource,
) -> None:
    run.log_params(
        {
            **config.params(),
            "prune_ratio": result.ratio,
            "prune_method": METHOD,
            "prune_source_run": source.run_id,
            "params_before": result.before.params,
            "params_after": result.after.params,
            "macs_before": result.before.macs,
            "macs_after": result.after.macs,
            "torch_pruning": torch_pruning_version(),
        }
    )
    run.log_dataset(data.manifest, name="train", context="fine-tuning")
    run.log_contract(data.contract)


def _fit(
    run: TrackedRun,
    module: torch.nn.Module,
    config: TrainConfig,
    data: PreparedData,
    device: torch.device,
) -> FitResult:
    val_x = eval_tensor(data.val.images, data.contract)
    loop_data = LoopData(data.train, val_x, data.val.labels, data.contract)
    with TrainingProgress(run, config.epochs, show=False) as hooks:
        fit = Loop(module, loop_data, config, device, hooks).fit()
        hooks.finish(fit.stopped_early, len(fit.history))
    module.load_state_dict(fit.best_state)
    module.cpu().eval()
    return fit


def _export(module: torch.nn.Module, config: TrainConfig, data: PreparedData) -> bytes:
    exported = with_embedding(module)
    model = export_torch(exported, data.contract, opset=config.opset)
    samples = data.split.val[: config.parity_images]
    check_parity(
        exported,
        model,
        data.contract,
        [s.path for s in samples],
        names=[s.relpath for s in samples],
        max_abs=config.parity_max_abs,
        min_agreement=config.parity_min_agreement,
        max_pixels=config.max_pixels or DEFAULT_MAX_PIXELS,
    )
    return model


def _lineage(
    result: PruneResult,
    source: TrainedSource,
    config: TrainConfig,
    data: PreparedData,
    fit: FitResult,
    run_id: str,
) -> Pruning:
    return Pruning(
        ratio=result.ratio,
        method=METHOD,
        ignored_layers=list(result.ignored),
        params_before=result.before.params,
        params_after=result.after.params,
        macs_before=result.before.macs,
        macs_after=result.after.macs,
        source_run_id=source.run_id,
        finetune_run_id=run_id,
        finetune_epochs=len(fit.history),
        finetune_lr=config.lr,
        finetune_val_accuracy=fit.best.val.accuracy,
        finetune_dataset_digest=data.manifest.digest,
        same_dataset_as_training=data.manifest.digest == source.dataset_digest,
        torch_pruning_version=torch_pruning_version(),
    )
