"""Which files ``visionyard predict`` scores: files as given, folders searched recursively.

A file named on the command line is scored whatever its extension (if it is not an image its
row says so); inside folders only files with an image extension are taken, hidden files and
folders skipped, in sorted order so that two runs list the same files in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from visionyard.errors import NotFoundError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def discover(paths: Sequence[Path | str]) -> list[Path]:
    """Every file to score, in order, without duplicates; a missing path is an error."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise NotFoundError("file or folder", missing[0], "check the path")
    seen: dict[Path, None] = {}
    for path in map(Path, paths):
        for found in walk(path) if path.is_dir() else [path]:
            seen.setdefault(found, None)
    return list(seen)


def walk(folder: Path) -> Iterator[Path]:
    """Image files under ``folder`` (recursively, sorted, hidden entries skipped)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(root) / name for name in sorted(_images(files)))


def _images(names: Iterable[str]) -> Iterator[str]:
    for name in names:
        if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
            yield name
