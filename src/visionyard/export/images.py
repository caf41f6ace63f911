"""Unlabelled image folders: INT8 calibration and, without labels, comparison with FP32.

``visionyard export --calibration DIR`` takes any folder of images: found recursively by
extension (hidden files and folders skipped), no class folders, no labels. Images are taken in
a seeded random order and each is decoded once before it is used; an unreadable one is left out
and listed (:attr:`ImageSet.unreadable`), never fatal for the others.

Without labelled evaluation data (:func:`split_folder`) the folder is split: calibration takes
up to the calibration count but never more than half of the readable images, and the images
NOT used for calibration (up to :data:`MAX_HELD_OUT`) are where each variant's answers are
compared with FP32's (top-1 agreement, or box agreement for detectors, and the largest output
difference). Held out, because ranges calibrated on an image fit that image: agreement measured
on the calibration images themselves would flatter the variant.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from visionyard.contract.image import DEFAULT_MAX_PIXELS, verify_image
from visionyard.data.imagefolder import IMAGE_EXTENSIONS, is_image_file
from visionyard.errors import DatasetError, ImageError

#: At most this many held-out images are compared with FP32 (each variant runs over all of them).
MAX_HELD_OUT = 500
Unreadable = tuple[tuple[Path, str], ...]


@dataclass(frozen=True)
class ImageSet:
    """Images without labels, below ``root``; ``held_out``: none of them calibrated INT8."""

    root: Path
    paths: tuple[Path, ...]
    unreadable: Unreadable = ()
    held_out: bool = False

    def __len__(self) -> int:
        return len(self.paths)


def find_images(root: Path | str) -> list[Path]:
    """Every image file below ``root`` (any depth), sorted; hidden files and folders skipped."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base} is not a folder of images")
    found = (p for p in base.rglob("*") if p.is_file() and is_image_file(p))
    return sorted(p for p in found if not any(s.startswith(".") for s in p.relative_to(base).parts))


def folder_images(root: Path | str, count: int, *, seed: int = 0) -> ImageSet:
    """Up to ``count`` readable images of ``root`` for calibration (labels come from elsewhere)."""
    readable, unreadable = _readable(root, count, seed)
    if not readable:
        raise _no_images(root, unreadable)
    return ImageSet(Path(root), tuple(sorted(readable)), unreadable)


def split_folder(
    root: Path | str, count: int, *, seed: int = 0, max_held_out: int = MAX_HELD_OUT
) -> tuple[ImageSet, ImageSet]:
    """(calibration, held out) of ``root``, see the module docstring; ``count`` 0: no
    calibration, every readable image (up to ``max_held_out``) is compared."""
    readable, unreadable = _readable(root, count + max_held_out, seed)
    least = 2 if count else 1
    if len(readable) < least:
        if not readable:
            raise _no_images(root, unreadable)
        raise DatasetError(
            f"{root} holds 1 readable image: without --data at least 2 are needed, one to "
            "calibrate INT8 and one held out to compare its answers with FP32's"
        )
    calibrate = min(count, len(readable) // 2)
    folder = Path(root)
    calibration = ImageSet(folder, tuple(sorted(readable[:calibrate])), unreadable)
    held = tuple(sorted(readable[calibrate : calibrate + max_held_out]))
    return calibration, ImageSet(folder, held, unreadable, held_out=True)


def describe_unreadable(unreadable: Unreadable, root: Path | str, shown: int = 3) -> str:
    """One line: how many images were left out, and the first few with their reason."""
    items = [f"{_relative(p, root)} ({reason})" for p, reason in unreadable[:shown]]
    more = f", and {len(unreadable) - shown} more" if len(unreadable) > shown else ""
    return f"left out {len(unreadable)} unreadable image(s) of {root}: {'; '.join(items)}{more}"


def _readable(root: Path | str, want: int, seed: int) -> tuple[list[Path], Unreadable]:
    """Up to ``want`` readable images in a seeded order, and the unreadable ones met on the way."""
    order = find_images(root)
    random.Random(seed).shuffle(order)
    readable: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    for path in order:
        if len(readable) >= want:
            break
        try:
            verify_image(path, max_pixels=DEFAULT_MAX_PIXELS)
        except ImageError as exc:
            unreadable.append((path, exc.problem))
            continue
        readable.append(path)
    return readable, tuple(unreadable)


def _no_images(root: Path | str, unreadable: Sequence[tuple[Path, str]]) -> DatasetError:
    if unreadable:
        return DatasetError(
            f"no readable image below {root}: " + describe_unreadable(tuple(unreadable), root)
        )
    kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
    return DatasetError(f"no images below {root} (looked for {kinds}, in subfolders too)")


def _relative(path: Path, root: Path | str) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
