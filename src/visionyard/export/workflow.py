"""From a bundle and a dataset folder to measured variants: what the CLI and the quickstart call.

A dataset folder gives both image sets: for an ImageFolder tree with splits, the evaluation
set is the ``val`` split (else ``test``) and the calibration set is the ``train`` split (else
the evaluation set); a COCO folder, having no splits, serves as both unless a separate
calibration folder is given.

Any folder of images (``--calibration DIR``, :mod:`visionyard.export.images`) can calibrate
instead; with no dataset folder at all (no labels), it is split into calibration images and
held-out images on which the variants are compared with FP32's answers (:func:`export_sets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visionyard.data.imagefolder import ImageFolderDataset
from visionyard.data.manifest import read_dataset
from visionyard.errors import ConfigError, DatasetError
from visionyard.export.evaluation import EvalSet
from visionyard.export.images import ImageSet, Unreadable, folder_images, split_folder
from visionyard.export.quantize import CalibrationSource
from visionyard.export.reports import VariantReport
from visionyard.export.variants import (
    CalibrationOptions,
    Progress,
    VariantOptions,
    build_variants,
)
from visionyard.settings import Settings

EVAL_SPLITS = ("val", "test")


def resolve_sets(
    data: Path | str,
    *,
    eval_split: str | None = None,
    calibration_split: str = "train",
    calibration_data: Path | str | None = None,
) -> tuple[EvalSet, CalibrationSource]:
    """The evaluation and calibration sets of a dataset folder (see the module docstring)."""
    dataset = read_dataset(data)
    evaluation = _eval_set(dataset, eval_split)
    source = dataset if calibration_data is None else read_dataset(calibration_data)
    fallback = evaluation if calibration_data is None else source
    return evaluation, _split(source, calibration_split) or fallback


@dataclass(frozen=True)
class ExportSets:
    """What an export measures on and calibrates with; ``unreadable``: images of the
    ``--calibration`` folder left out."""

    evaluation: EvalSet
    calibration: CalibrationSource | None
    unreadable: Unreadable = ()


@dataclass(frozen=True)
class SetOptions:
    """Where the images come from (the ``export`` flags)."""

    data: Path | None = None
    calibration: Path | None = None
    eval_split: str | None = None
    calibration_split: str = "train"
    calibration_data: Path | None = None
    count: int = 100
    seed: int = 0


def export_sets(options: SetOptions, *, quantize: bool = True) -> ExportSets:
    """The evaluation and calibration sets from the flags (see the module docstring);
    ``quantize``: an INT8 variant is wanted, so calibration images are needed."""
    if options.calibration is not None and options.calibration_data is not None:
        raise ConfigError(
            "give --calibration DIR (any images) or --calibration-data DATASET, not both"
        )
    if options.data is None:
        return _unlabelled_sets(options, quantize)
    if options.calibration is None:
        evaluation, calibration = resolve_sets(
            options.data,
            eval_split=options.eval_split,
            calibration_split=options.calibration_split,
            calibration_data=options.calibration_data,
        )
        return ExportSets(evaluation, calibration)
    evaluation = _eval_set(read_dataset(options.data), options.eval_split)
    images = folder_images(options.calibration, options.count, seed=options.seed)
    return ExportSets(evaluation, images, images.unreadable)


def _unlabelled_sets(options: SetOptions, quantize: bool) -> ExportSets:
    if options.calibration is None:
        raise ConfigError(
            "give --data DIR (a labelled dataset: accuracy is compared) or --calibration DIR "
            "(any folder of images: the variants' answers are compared with FP32's)"
        )
    if options.calibration_data is not None:
        raise ConfigError(
            "--calibration-data needs --data; for unlabelled images use --calibration"
        )
    count = options.count if quantize else 0
    calibration, held_out = split_folder(options.calibration, count, seed=options.seed)
    chosen: ImageSet | None = calibration if quantize else None
    return ExportSets(held_out, chosen, held_out.unreadable)


def _eval_set(dataset: EvalSet, split: str | None) -> EvalSet:
    if split is None:
        found = (_split(dataset, name) for name in EVAL_SPLITS)
        return next((chosen for chosen in found if chosen is not None), dataset)
    chosen = _split(dataset, split)
    if chosen is None:
        have = ", ".join(dataset.splits) if isinstance(dataset, ImageFolderDataset) else ""
        raise DatasetError(
            f"the dataset has no {split!r} split (splits: {have or 'none'}); "
            "choose another evaluation split"
        )
    return chosen


def _split(dataset: EvalSet, name: str) -> EvalSet | None:
    """The named split of an ImageFolder tree, or None when it has no such split."""
    if isinstance(dataset, ImageFolderDataset) and name in dataset.splits:
        return dataset.split(name)
    return None


def export_int8_for_quickstart(
    bundle: Path | str,
    data: Path | str,
    *,
    max_drop_points: float = 1.0,
    calibration_count: int = 100,
    progress: Progress | None = None,
) -> list[VariantReport]:
    """Add a measured INT8 variant to ``bundle`` from the dataset folder ``data``.

    Returns the FP32 and INT8 reports; print them with
    :func:`visionyard.cli.export.variants_table`. A rejected INT8 variant is reported
    (``status == "rejected"``) and not stored.
    """
    evaluation, calibration = resolve_sets(data)
    options = VariantOptions(
        max_drop_points=max_drop_points, calibration=CalibrationOptions(count=calibration_count)
    )
    return build_variants(
        bundle,
        variants=["int8"],
        eval_set=evaluation,
        calibration_set=calibration,
        options=options,
        progress=progress,
    )


def export_int8_for_version(
    settings: Settings,
    name: str,
    version: str,
    data: Path | str,
    *,
    max_drop_points: float = 1.0,
    calibration_count: int = 100,
    progress: Progress | None = None,
) -> list[VariantReport]:
    """:func:`export_int8_for_quickstart` on registered version ``version`` of ``name``: the
    kept variant and the reports become artifacts of the version, with ``vy.variant.*`` tags."""
    from visionyard.export.registry import export_registered  # imports mlflow
    from visionyard.tracking.mlflow_model import scratch_dir

    evaluation, calibration = resolve_sets(data)
    options = VariantOptions(
        max_drop_points=max_drop_points, calibration=CalibrationOptions(count=calibration_count)
    )
    with scratch_dir("vy-export-") as workdir:
        return export_registered(
            settings,
            name,
            version,
            Path(workdir),
            variants=["int8"],
            eval_set=evaluation,
            calibration_set=calibration,
            options=options,
            progress=progress,
        )
