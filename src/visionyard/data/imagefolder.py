"""Read classification datasets laid out as ImageFolder trees.

Two layouts are accepted::

    root/<class>/<image>                 (no splits)
    root/<split>/<class>/<image>         (split in train, val, test)

Classes are the sorted union of class-folder names; images are found by extension, below a
class folder at any depth. Hidden files and folders (leading ``.``) are ignored. Written by
hand because torchvision's ``ImageFolder`` needs torch and knows nothing of split folders.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from visionyard.errors import DatasetError

COCO_FILE = "annotations.json"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageSample:
    """One labelled image: ``relpath`` is relative to the dataset root, in posix form."""

    relpath: str
    path: Path
    label: int
    class_name: str
    split: str | None


@dataclass(frozen=True)
class ImageFolderDataset:
    """A classification dataset: sorted class names and samples sorted by relative path."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[ImageSample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[ImageSample]:
        return iter(self.samples)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.classes)}

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, in train/val/test order (empty when there are no split folders)."""
        present = {s.split for s in self.samples}
        return tuple(name for name in SPLITS if name in present)

    def split(self, name: str) -> ImageFolderDataset:
        """The samples of one split; the class list stays the same (labels keep their index)."""
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DatasetError(f"dataset {self.root} has no {name!r} split (splits: {have})")
        chosen = tuple(s for s in self.samples if s.split == name)
        return ImageFolderDataset(self.root, self.classes, chosen)

    def counts(self) -> dict[tuple[str | None, str], int]:
        """Number of images per (split, class name)."""
        return dict(Counter((s.split, s.class_name) for s in self.samples))


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_imagefolder(root: Path | str) -> ImageFolderDataset:
    """Read an ImageFolder tree; raises :class:`DatasetError` for a missing or empty dataset."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist or is not a directory")
    if (root / COCO_FILE).is_file() or (root / COCO_FILE).is_symlink():
        raise DatasetError(
            f"{root} is a COCO detection dataset ({COCO_FILE}), not a folder of classes; "
            "train a detector on it with --task detection"
        )
    top = _visible_dirs(root)
    _reject_loose_images(root)
    groups: list[tuple[str | None, Path]]
    if top and all(d.name in SPLITS for d in top):
        for split_dir in top:
            _reject_loose_images(split_dir)
        groups = [(d.name, c) for d in top for c in _visible_dirs(d)]
    else:
        _reject_mixed_layout(root, top)
        _reject_nested_datasets(root, top)
        groups = [(None, c) for c in top]
    classes = tuple(sorted({class_dir.name for _, class_dir in groups}))
    index = {name: i for i, name in enumerate(classes)}
    samples = [
        ImageSample(_rel(root, p), p, index[c.name], c.name, split)
        for split, c in groups
        for p in _images_below(c)
    ]
    if not samples:
        raise DatasetError(
            f"no images found in {root}; expected root/<class>/<image> or "
            f"root/<split>/<class>/<image> with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    return ImageFolderDataset(root, classes, tuple(sorted(samples, key=lambda s: s.relpath)))


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_below(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and is_image_file(p) and not _hidden(p.relative_to(folder))
    ]


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _reject_loose_images(folder: Path) -> None:
    loose = sorted(p.name for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if loose:
        shown = ", ".join(loose[:5]) + (" ..." if len(loose) > 5 else "")
        raise DatasetError(
            f"{len(loose)} image(s) directly in {folder} have no class folder ({shown}); "
            "move them into a <class>/ folder (for COCO data pass the annotation file)"
        )


def _reject_mixed_layout(root: Path, top: list[Path]) -> None:
    splits = [d.name for d in top if d.name in SPLITS]
    if splits:
        others = [d.name for d in top if d.name not in SPLITS]
        raise DatasetError(
            f"dataset {root} mixes split folders ({', '.join(splits)}) with class folders "
            f"({', '.join(others[:5])}); use either root/<class>/ or root/<split>/<class>/"
        )


def _reject_nested_datasets(root: Path, top: list[Path]) -> None:
    """A root whose "class" folders are datasets themselves (``data synth`` writes
    ``classification/`` and ``detection/`` side by side) would train on the wrong labels."""
    for folder in top:
        splits = [d.name for d in _visible_dirs(folder) if d.name in SPLITS]
        why = f"split folders ({', '.join(splits)})" if splits else ""
        if not why and (folder / COCO_FILE).is_file():
            why = f"a COCO {COCO_FILE}"
        if why:
            raise DatasetError(
                f"{root} is a folder of datasets, not of classes: {folder.name}/ holds {why}; "
                f"pass {folder} as the dataset"
            )
