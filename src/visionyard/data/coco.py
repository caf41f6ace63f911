"""Read object-detection datasets described by a COCO annotation file.

pydantic checks the structure of the JSON; this module adds the checks COCO tools leave to the
user: every annotation refers to a known image and category, boxes ``[x, y, w, h]`` have a
finite values and a positive size and lie inside their image (within :data:`BOX_TOLERANCE`
pixels), ids are unique, file names are unique once normalised (``./a.png`` is ``a.png``), and
every image file exists. All problems are collected and reported in one
:class:`DatasetError`. Categories are ordered by id and numbered 0..n-1 (contiguous labels).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionyard.errors import DatasetError

#: How far (pixels) a box may stick out of its image before it is an error (rounding slack).
BOX_TOLERANCE = 0.5
#: Problems listed in one error message before "and N more".
MAX_SHOWN = 10

Box = tuple[float, float, float, float]


class _Raw(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _RawImage(_Raw):
    id: int
    file_name: str = Field(min_length=1)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class _RawCategory(_Raw):
    id: int
    name: str = Field(min_length=1)


class _RawAnnotation(_Raw):
    id: int
    image_id: int
    category_id: int
    bbox: Box
    area: float | None = None
    iscrowd: int = 0


class _RawCoco(_Raw):
    images: list[_RawImage]
    categories: list[_RawCategory]
    annotations: list[_RawAnnotation] = Field(default_factory=list)


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int
    path: Path


@dataclass(frozen=True)
class CocoCategory:
    id: int
    name: str
    label: int


@dataclass(frozen=True)
class CocoAnnotation:
    id: int
    image_id: int
    category_id: int
    label: int
    bbox: Box
    area: float
    iscrowd: int


@dataclass(frozen=True)
class CocoDataset:
    """A validated COCO dataset; ``labels`` are category names in id order."""

    annotation_file: Path
    images_dir: Path
    images: tuple[CocoImage, ...]
    categories: tuple[CocoCategory, ...]
    annotations: tuple[CocoAnnotation, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @cached_property
    def _by_image(self) -> dict[int, tuple[CocoAnnotation, ...]]:
        grouped: defaultdict[int, list[CocoAnnotation]] = defaultdict(list)
        for ann in self.annotations:
            grouped[ann.image_id].append(ann)
        return {key: tuple(value) for key, value in grouped.items()}

    def annotations_for(self, image_id: int) -> tuple[CocoAnnotation, ...]:
        return self._by_image.get(image_id, ())


def read_coco(annotation_json: Path | str, images_dir: Path | str | None = None) -> CocoDataset:
    """Read and validate a COCO file; ``images_dir`` defaults to the file's folder."""
    ann_path = _resolve(Path(annotation_json).expanduser())
    folder = Path(images_dir).expanduser().resolve() if images_dir else ann_path.parent
    raw = _parse(ann_path)
    if not folder.is_dir():
        raise DatasetError(f"images directory {folder} for {ann_path} does not exist")
    if not raw.images:
        raise DatasetError(f"COCO file {ann_path} lists no images")
    if not raw.categories:
        raise DatasetError(f"COCO file {ann_path} lists no categories")
    problems = _check(raw, folder)
    if problems:
        raise DatasetError(_problem_message(ann_path, problems))
    return _build(raw, ann_path, folder)


def _resolve(given: Path) -> Path:
    """The absolute annotation file; a symlink that leads nowhere is refused naming the link."""
    try:
        resolved = given.resolve()
    except RuntimeError as exc:  # Python 3.11's Path.resolve on a symlink loop
        raise DatasetError(f"COCO annotation file {given} is a symlink loop") from exc
    except OSError as exc:
        why = exc.strerror or exc
        raise DatasetError(f"cannot read COCO annotation file {given}: {why}") from exc
    if given.is_symlink() and not resolved.exists():
        raise DatasetError(f"COCO annotation file {given} is a dangling symlink")
    return resolved


def _parse(path: Path) -> _RawCoco:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DatasetError(f"COCO annotation file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read COCO annotation file {path}: {exc}") from exc
    data = _loads(text, path)
    if not isinstance(data, dict):
        raise DatasetError(
            f"malformed COCO JSON in {path}: the top level must be an object with "
            "images, categories and annotations"
        )
    try:
        return _RawCoco.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise DatasetError(
            f"malformed COCO JSON in {path}: {where}: {first['msg']} "
            f"({exc.error_count()} problem(s))"
        ) from exc


def _loads(text: str, path: Path) -> object:
    """``json.loads``; every way it can fail is one malformed-COCO error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        why = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        why = "arrays or objects nested too deeply"
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit limit
        why = str(exc).split(";")[0]
    raise DatasetError(f"malformed COCO JSON in {path}: {why}")


def _check(raw: _RawCoco, folder: Path) -> list[str]:
    return [
        *_duplicates("image id", (i.id for i in raw.images)),
        *_duplicate_files(raw.images),
        *_duplicates("category id", (c.id for c in raw.categories)),
        *_duplicates("category name", (c.name for c in raw.categories)),
        *_duplicates("annotation id", (a.id for a in raw.annotations)),
        *_check_annotations(raw),
        *_unsafe_names(raw.images),
        *_missing_files(raw.images, folder),
    ]


def _duplicates(what: str, values: Iterable[object]) -> list[str]:
    counts = Counter(values)
    return [f"duplicate {what} {value!r} ({n} times)" for value, n in counts.items() if n > 1]


def _duplicate_files(images: Sequence[_RawImage]) -> list[str]:
    """File names naming the same file (``a.png``, ``./a.png``), with every image that does."""
    places: defaultdict[str, list[_RawImage]] = defaultdict(list)
    for image in images:
        places[_normal(image.file_name)].append(image)
    return [
        f"duplicate image file_name {name!r} ("
        + ", ".join(f"image {i.id} {i.file_name!r}" for i in same)
        + ")"
        for name, same in places.items()
        if len(same) > 1
    ]


def _check_annotations(raw: _RawCoco) -> list[str]:
    images = {i.id: i for i in raw.images}
    categories = {c.id for c in raw.categories}
    problems: list[str] = []
    for ann in raw.annotations:
        image = images.get(ann.image_id)
        if image is None:
            problems.append(f"annotation {ann.id}: unknown image_id {ann.image_id}")
        if ann.category_id not in categories:
            problems.append(f"annotation {ann.id}: unknown category_id {ann.category_id}")
        problems.extend(f"annotation {ann.id}: {p}" for p in _box_problems(ann.bbox, image))
        if ann.area is not None and not math.isfinite(ann.area):
            problems.append(f"annotation {ann.id}: area {ann.area} is not a finite number")
    return problems


def _box_problems(bbox: Box, image: _RawImage | None) -> list[str]:
    x, y, w, h = bbox
    if not all(math.isfinite(v) for v in bbox):
        return [f"bbox {list(bbox)} has a non-finite value"]
    if w <= 0 or h <= 0:
        return [f"bbox {list(bbox)} has a negative or zero width/height"]
    if image is None:
        return []
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > image.width + tol or y + h > image.height + tol:
        return [
            f"bbox {list(bbox)} lies outside image {image.id} "
            f"({image.file_name}, {image.width}x{image.height})"
        ]
    return []


def _unsafe_names(images: Sequence[_RawImage]) -> list[str]:
    return [
        f"image {i.id}: file_name {i.file_name!r} must be a relative path inside the images dir"
        for i in images
        if _unsafe(i.file_name)
    ]


def _missing_files(images: Sequence[_RawImage], folder: Path) -> list[str]:
    return [
        f"image {i.id}: file {i.file_name} not found in {folder}"
        for i in images
        if not _unsafe(i.file_name) and not (folder / i.file_name).is_file()
    ]


def _unsafe(file_name: str) -> bool:
    pure = PurePosixPath(file_name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts


def _normal(file_name: str) -> str:
    """The file name as the file system sees it: ``./a.png`` and ``a.png`` are one file."""
    return PurePosixPath(file_name).as_posix()


def _problem_message(path: Path, problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:MAX_SHOWN])
    more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
    return f"invalid COCO dataset {path}: {len(problems)} problem(s): {shown}{more}"


def _build(raw: _RawCoco, ann_path: Path, folder: Path) -> CocoDataset:
    ordered = sorted(raw.categories, key=lambda c: c.id)
    categories = tuple(CocoCategory(c.id, c.name, i) for i, c in enumerate(ordered))
    label_of = {c.id: c.label for c in categories}
    images = tuple(
        CocoImage(i.id, i.file_name, i.width, i.height, folder / i.file_name)
        for i in sorted(raw.images, key=lambda i: i.id)
    )
    annotations = tuple(
        CocoAnnotation(
            a.id,
            a.image_id,
            a.category_id,
            label_of[a.category_id],
            a.bbox,
            a.area if a.area is not None else a.bbox[2] * a.bbox[3],
            a.iscrowd,
        )
        for a in sorted(raw.annotations, key=lambda a: a.id)
    )
    return CocoDataset(ann_path, folder, images, categories, annotations)
