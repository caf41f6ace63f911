"""Evaluating a session on any labelled folder: an ImageFolder tree or a COCO folder.

::

    found = read_eval_set(Path("data/shapes"), split=None)   # val/ or test/ when split folders
    check_fit(found, session.contract)                       # task and labels, before any work
    digest = found.digest(progress)                          # hashes + decodes every image
    report = evaluate_set(session, found, digest=digest)

The digest is the manifest digest (:func:`visionyard.data.build_manifest`) of exactly the images
evaluated (one split, when split folders exist). Building it decodes every image, so corrupt
images are listed (:class:`~visionyard.errors.CorruptImagesError`) before any inference runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionyard.contract.schema import VisionContract
from visionyard.data.coco import CocoDataset
from visionyard.data.imagefolder import ImageFolderDataset
from visionyard.data.manifest import build_manifest, read_dataset
from visionyard.errors import DatasetError
from visionyard.evaluate.classification import (
    ClassificationReport,
    check_labels,
    evaluate_classification,
)
from visionyard.evaluate.detection import DetectionReport, Detector, evaluate_detection
from visionyard.runtime.session import InferenceSession

Progress = Callable[[int, int], None]
#: Split folders evaluated when none is named, in order of preference.
DEFAULT_SPLITS = ("val", "test")


@dataclass(frozen=True)
class EvalSet:
    """The labelled images to evaluate on (one split of an ImageFolder, or a COCO set)."""

    root: Path
    split: str | None
    data: ImageFolderDataset | CocoDataset

    @property
    def task(self) -> str:
        return "detection" if isinstance(self.data, CocoDataset) else "classification"

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels present: class names with images, or COCO category names."""
        if isinstance(self.data, CocoDataset):
            return tuple(self.data.labels)
        return tuple(sorted({s.class_name for s in self.data.samples}))

    @property
    def size(self) -> int:
        return len(self.data)

    def digest(self, progress: Progress | None = None) -> str:
        """The manifest digest of the images evaluated; lists every unreadable image."""
        return build_manifest(self.data, progress=progress).digest


def read_eval_set(root: Path, split: str | None = None) -> EvalSet:
    """Read ``root`` (COCO when it holds ``annotations.json``, else ImageFolder) and pick the
    split: ``split`` when named, else ``val`` or ``test`` when split folders exist, else all."""
    if not root.exists():
        raise DatasetError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"data {root} is not a folder; pass a labelled image folder")
    data = read_dataset(root)
    if isinstance(data, CocoDataset):
        if split is not None:
            raise DatasetError(f"--split applies to ImageFolder data; {root} is a COCO folder")
        if not len(data):
            raise DatasetError(f"COCO folder {root} lists no images")
        return EvalSet(root, None, data)
    if split is None:
        split = next((s for s in DEFAULT_SPLITS if s in data.splits), None)
    return EvalSet(root, split, data.split(split) if split is not None else data)


def check_fit(found: EvalSet, contract: VisionContract, who: str = "the model") -> None:
    """:class:`DatasetError` when the data's kind or labels do not fit the model's contract."""
    if found.task != contract.task:
        layout = {
            "classification": "an ImageFolder (class folders)",
            "detection": "a COCO folder (annotations.json)",
        }
        raise DatasetError(
            f"{who} is a {contract.task} model but {found.root} is {layout[found.task]}; "
            f"evaluate a {contract.task} model on {layout[contract.task]}"
        )
    try:
        check_labels(found.labels, contract.labels, allow_subset=True)
    except DatasetError as exc:
        raise DatasetError(f"data {found.root} does not fit {who}: {exc}") from exc


def evaluate_set(
    session: InferenceSession | Detector,
    found: EvalSet,
    *,
    digest: str | None = None,
    progress: Progress | None = None,
) -> ClassificationReport | DetectionReport:
    """Classification or COCO detection metrics of ``session`` on ``found``."""
    if isinstance(found.data, CocoDataset):
        return evaluate_detection(session, found.data, dataset_digest=digest, progress=progress)
    if not isinstance(session, InferenceSession):  # check_fit refused it (a pipeline detects)
        raise DatasetError(f"{found.root} is an ImageFolder; this model is scored on COCO data")
    return evaluate_classification(
        session, found.data.samples, dataset_digest=digest, progress=progress,
        dataset_labels=found.labels,
    )  # fmt: skip
