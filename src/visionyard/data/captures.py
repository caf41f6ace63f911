"""Captured images: the folder the server's capture writer fills, listed and turned into a dataset.

The server (:mod:`visionyard.serving.capture`) keeps the images a model finds hard as::

    DIR/<model>/<version>/<yyyymmdd>/<stem>.<ext>     the request's original encoded bytes
    DIR/<model>/<version>/<yyyymmdd>/<stem>.json      its sidecar (written last: it marks a
                                                      complete capture)

A sidecar holds ``request_id``, ``model``, ``version``, ``index`` (the image's place in its
request), ``file``, ``bytes``, ``reasons`` (``low_confidence``, ``low_margin``, ``sampled``),
``time`` (UTC, ISO 8601), ``predicted`` (top-1 label, or None) and ``top_k`` (label, score).

:func:`export_captures` copies captures into an ImageFolder dataset (one folder per predicted
label, or one ``unlabelled/`` folder) with ``captures.jsonl`` (each image's sidecar and its
path in the dataset) and ``manifest.json`` (:mod:`visionyard.data.manifest`, with its digest).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from visionyard.contract.image import DEFAULT_MAX_PIXELS
from visionyard.data.manifest import DatasetManifest, build_manifest
from visionyard.errors import DatasetError

SIDECAR = ".json"
DAY_FORMAT = "%Y%m%d"
MANIFEST = "manifest.json"
INDEX = "captures.jsonl"
UNLABELLED = "unlabelled"
Layout = Literal["predicted", "unlabelled"]


@dataclass(frozen=True)
class Capture:
    """One captured image: its file, its sidecar's content and the day folder it is in."""

    image: Path
    meta: dict[str, Any]
    day: str

    @property
    def model(self) -> str:
        return str(self.meta.get("model", ""))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))


@dataclass
class DayRow:
    """Captures of one model version on one day: count, bytes, and how many per reason."""

    model: str
    version: str
    day: str
    count: int = 0
    bytes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def day_folder(when: datetime) -> str:
    return when.strftime(DAY_FORMAT)


def iter_captures(
    root: Path,
    *,
    model: str | None = None,
    version: str | None = None,
    since: date | None = None,
) -> Iterator[Capture]:
    """The complete captures under ``root`` (sidecar and image both present), sorted by path."""
    if not root.is_dir():
        raise DatasetError(f"capture folder {root} does not exist")
    first = since.strftime(DAY_FORMAT) if since else ""
    for sidecar in sorted(root.glob(f"*/*/*/*{SIDECAR}")):
        model_dir, version_dir, day = sidecar.parts[-4:-1]
        if (model and model_dir != model) or (version and version_dir != version) or day < first:
            continue
        capture = _read(sidecar, day)
        if capture is not None:
            yield capture


def summarize(captures: Iterable[Capture]) -> list[DayRow]:
    """One row per model, version and day."""
    rows: dict[tuple[str, str, str], DayRow] = {}
    for capture in captures:
        key = (capture.model, capture.version, capture.day)
        row = rows.setdefault(key, DayRow(*key))
        row.count += 1
        row.bytes += capture.image.stat().st_size
        row.reasons.update(capture.meta.get("reasons", []))
    return [rows[key] for key in sorted(rows)]


def export_captures(
    captures: Iterable[Capture],
    out: Path,
    *,
    layout: Layout = "predicted",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DatasetManifest:
    """Copy ``captures`` into a new ImageFolder dataset at ``out``; returns its manifest."""
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty; export into a new folder")
    lines = [_copy(capture, out, layout) for capture in captures]
    if not lines:
        raise DatasetError("no captures match; check DIR, --model, --version and --since")
    (out / INDEX).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    manifest = build_manifest(out, max_pixels=max_pixels)
    manifest.save(out / MANIFEST)
    return manifest


def _copy(capture: Capture, out: Path, layout: Layout) -> dict[str, Any]:
    label = capture.meta.get("predicted") if layout == "predicted" else None
    folder = out / safe_name(str(label) if label else UNLABELLED)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{safe_name(capture.model)}-v{safe_name(capture.version)}-{capture.image.name}"
    shutil.copyfile(capture.image, folder / name)
    return {**capture.meta, "path": (folder / name).relative_to(out).as_posix()}


def _read(sidecar: Path, day: str) -> Capture | None:
    found = read_sidecar(sidecar)
    return Capture(found[0], found[1], day) if found and found[0].is_file() else None


def read_sidecar(sidecar: Path) -> tuple[Path, dict[str, Any]] | None:
    """(the image beside it, the sidecar's fields); None for an unreadable or foreign file.
    The image is always in the sidecar's own folder, whatever the sidecar says."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("file"), str):
        return None
    return sidecar.with_name(Path(meta["file"]).name), meta


def safe_name(text: str) -> str:
    """A folder or file name: path separators and leading dots removed."""
    cleaned = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text).lstrip(".")
    return cleaned or "_"
