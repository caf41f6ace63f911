"""Datasets: ImageFolder and COCO readers, content-addressed manifests, diffs, synthetic data."""

from visionyard.bundle.store import sha256_file
from visionyard.data.coco import (
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
    read_coco,
)
from visionyard.data.diff import Change, ManifestDiff, Move, Relabel, diff_manifests
from visionyard.data.imagefolder import (
    IMAGE_EXTENSIONS,
    SPLITS,
    ImageFolderDataset,
    ImageSample,
    read_imagefolder,
)
from visionyard.data.manifest import (
    BoxAnnotation,
    DatasetManifest,
    ManifestEntry,
    build_manifest,
    compute_digest,
    read_dataset,
)
from visionyard.data.synth import SHAPES, make_classification_set, make_detection_set

__all__ = [
    "IMAGE_EXTENSIONS",
    "SHAPES",
    "SPLITS",
    "BoxAnnotation",
    "Change",
    "CocoAnnotation",
    "CocoCategory",
    "CocoDataset",
    "CocoImage",
    "DatasetManifest",
    "ImageFolderDataset",
    "ImageSample",
    "ManifestDiff",
    "ManifestEntry",
    "Move",
    "Relabel",
    "build_manifest",
    "compute_digest",
    "diff_manifests",
    "make_classification_set",
    "make_detection_set",
    "read_coco",
    "read_dataset",
    "read_imagefolder",
    "sha256_file",
]
