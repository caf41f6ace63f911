"""Dataset manifests: every image's content hash, size, dimensions and labels, plus one digest.

The digest is content-addressed: sha256 over the canonical JSON of the kind, the label list and
the entries sorted by path (relative path, sha256, size, dimensions, split, labels). The same
files with the same labels give the same digest wherever the dataset lives and whatever the
files' mtimes; the creation time and the source location are kept out of it.

Building a manifest reads every file once and fully decodes every image (as
:func:`~visionyard.contract.image.verify_image` does) and collects ALL unreadable images into one
:class:`CorruptImagesError`; nothing is skipped silently. A COCO image's width and height are
its DISPLAYED size, after its EXIF orientation (the pixels a detector trains on and serves, and
what EXIF-aware annotation tools annotate): the sizes the annotation file declares must match
it. :func:`build_manifest_and_decode` decodes with the caller's rules instead and hands the
decoded images back, so a training run decodes each image once, not once here and once again.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from visionyard.contract.image import DEFAULT_MAX_PIXELS, decode_rgb, open_image
from visionyard.contract.schema import canonical_sha256
from visionyard.data.coco import CocoDataset, CocoImage, read_coco
from visionyard.data.imagefolder import COCO_FILE, ImageFolderDataset, read_imagefolder
from visionyard.errors import CorruptImagesError, DatasetError, ImageError

ManifestKind = Literal["classification", "detection"]
Progress = Callable[[int, int], None]
#: Decodes one image's bytes (e.g. by a vision contract's rules); raises ImageError.
Decoder = Callable[[bytes], Image.Image]
Dataset = ImageFolderDataset | CocoDataset
_EXIF_ORIENTATION = 0x0112
COCO_ANNOTATIONS = COCO_FILE
COCO_IMAGES = "images"
NO_SPLIT = "all"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BoxAnnotation(_Frozen):
    """One object: its label name and its box ``[x, y, w, h]`` in pixels."""

    label: str
    bbox: tuple[float, float, float, float]


class ManifestEntry(_Frozen):
    """One image. Classification entries carry ``label``; detection entries ``annotations``
    (and the size after the EXIF turn; a classification entry's is the stored size)."""

    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    split: str | None = None
    label: str | None = None
    annotations: tuple[BoxAnnotation, ...] | None = None

    def describe_labels(self) -> str:
        """The labels as one short string (for diffs and tables)."""
        if self.annotations is None:
            return self.label or "-"
        names = Counter(a.label for a in self.annotations)
        return ", ".join(f"{n}x{name}" for name, n in sorted(names.items())) or "(no objects)"

    def label_key(self) -> tuple[Any, ...]:
        """What counts as this image's labelling when comparing manifests."""
        if self.annotations is None:
            return (self.label,)
        return tuple((a.label, a.bbox) for a in self.annotations)


class DatasetManifest(_Frozen):
    """A verified, content-addressed description of a dataset."""

    format_version: Literal[1] = 1
    kind: ManifestKind
    labels: tuple[str, ...]
    entries: tuple[ManifestEntry, ...]
    digest: str
    created: datetime
    source: str | None = None

    @classmethod
    def create(
        cls,
        kind: ManifestKind,
        labels: Sequence[str],
        entries: Iterable[ManifestEntry],
        *,
        source: str | None = None,
    ) -> DatasetManifest:
        """Sort the entries, compute the digest and stamp the creation time."""
        ordered = tuple(sorted(entries, key=lambda e: e.path))
        return cls(
            kind=kind,
            labels=tuple(labels),
            entries=ordered,
            digest=compute_digest(kind, labels, ordered),
            created=datetime.now(UTC),
            source=source,
        )

    @model_validator(mode="after")
    def _consistent(self) -> DatasetManifest:
        _check_entries(self)
        expected = compute_digest(self.kind, self.labels, self.entries)
        if self.digest != expected:
            raise ValueError(
                f"digest {self.digest} does not match the entries ({expected}); "
                "the manifest was edited or is corrupt, rebuild it"
            )
        return self

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({e.split for e in self.entries if e.split is not None}))

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Per label: images per split (``all`` without splits) or, for detection,
        ``images`` holding the label and ``boxes``."""
        counts: dict[str, Counter[str]] = {name: Counter() for name in self.labels}
        for entry in self.entries:
            if entry.annotations is None:
                counts[entry.label or ""][entry.split or NO_SPLIT] += 1
                continue
            for name in {a.label for a in entry.annotations}:
                counts[name]["images"] += 1
            for ann in entry.annotations:
                counts[ann.label]["boxes"] += 1
        return {name: dict(c) for name, c in counts.items()}

    def save(self, path: Path | str) -> Path:
        """Write the manifest as JSON; returns the path written."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: Path | str) -> DatasetManifest:
        """Read a manifest written by :meth:`save`; the digest is checked against the entries."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read manifest {source}: {exc}") from exc
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "manifest"
            raise DatasetError(f"invalid manifest {source}: {where}: {first['msg']}") from exc


def compute_digest(kind: str, labels: Sequence[str], entries: Iterable[ManifestEntry]) -> str:
    """sha256 over the canonical JSON of kind, labels and the entries sorted by path."""
    payload = {
        "format_version": 1,
        "kind": kind,
        "labels": list(labels),
        "entries": [e.model_dump(mode="json") for e in sorted(entries, key=lambda e: e.path)],
    }
    return canonical_sha256(payload)


def _check_entries(manifest: DatasetManifest) -> None:
    dupes = [p for p, n in Counter(e.path for e in manifest.entries).items() if n > 1]
    if dupes:
        raise ValueError(f"duplicate entry paths: {', '.join(sorted(dupes)[:5])}")
    known = set(manifest.labels)
    used = {e.label for e in manifest.entries if e.label is not None}
    used |= {a.label for e in manifest.entries for a in e.annotations or ()}
    if used - known:
        raise ValueError(f"entries use labels not in the label list: {sorted(used - known)}")


def read_dataset(
    root: Path | str, coco: Path | str | None = None
) -> ImageFolderDataset | CocoDataset:
    """Read ``root`` as COCO (``coco`` given, or anything named ``root/annotations.json``
    exists, even a broken symlink, which is then refused) or as an ImageFolder tree."""
    folder = Path(root)
    if coco is not None:
        return read_coco(coco, folder)
    if os.path.lexists(folder / COCO_ANNOTATIONS):
        images = folder / COCO_IMAGES
        return read_coco(folder / COCO_ANNOTATIONS, images if images.is_dir() else folder)
    return read_imagefolder(folder)


@dataclass(frozen=True)
class _Item:
    relpath: str
    path: Path
    split: str | None
    label: str | None
    annotations: tuple[BoxAnnotation, ...] | None
    declared: tuple[int, int] | None


def build_manifest(
    source: Path | str | Dataset,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    workers: int | None = None,
) -> DatasetManifest:
    """Hash and fully decode every image of a dataset (a folder or a read dataset).

    ``progress(done, total)`` is called after each image. Raises :class:`CorruptImagesError`
    listing every unreadable image, and :class:`DatasetError` when a COCO file declares sizes
    that differ from the images.
    """
    reader = _Reader(max_pixels, None, None)
    return _build(source, reader, progress, workers)[0]


def build_manifest_and_decode(
    source: Path | str | Dataset,
    decode: Decoder,
    *,
    keep: Collection[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    workers: int | None = None,
) -> tuple[DatasetManifest, dict[str, Image.Image]]:
    """:func:`build_manifest`, decoding each image ONCE with ``decode`` (its failures count as
    corrupt images); returns the manifest and the decoded images whose relative path is in
    ``keep`` (all when None), by relative path."""
    return _build(source, _Reader(max_pixels, decode, keep), progress, workers)


@dataclass(frozen=True)
class _Read:
    entry: ManifestEntry
    image: Image.Image | None
    stored: tuple[int, int]  # the size before any EXIF turn
    orientation: int | None  # the EXIF orientation, read only when it changed the size


@dataclass(frozen=True)
class _Reader:
    """How each image is read: its pixel limit, the decoder, which decoded images to keep."""

    max_pixels: int
    decode: Decoder | None
    keep: Collection[str] | None

    def read(self, item: _Item) -> _Read | tuple[str, str]:
        displayed = item.declared is not None  # COCO: boxes are in displayed pixels
        try:
            data = item.path.read_bytes()
            (width, height), stored, image = self._decode(data, displayed)
            turned = _orientation(data) if stored != (width, height) else None
        except ImageError as exc:
            return (item.relpath, exc.problem)
        except OSError as exc:
            return (item.relpath, f"cannot read file ({exc.strerror or exc})")
        entry = ManifestEntry(
            path=item.relpath, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            width=width, height=height, split=item.split, label=item.label,
            annotations=item.annotations,
        )  # fmt: skip
        kept = image is not None and (self.keep is None or item.relpath in self.keep)
        return _Read(entry, image if kept else None, stored, turned)

    def _decode(
        self, data: bytes, displayed: bool
    ) -> tuple[tuple[int, int], tuple[int, int], Image.Image | None]:
        """(the size recorded, the stored size, the decoded image to keep). The size recorded
        is the displayed one (after the EXIF turn, or the decoder's own EXIF rule) when
        ``displayed``, else the stored one."""
        stored = open_image(data, max_pixels=self.max_pixels).size
        if self.decode is None:  # decode fully once to prove the image readable
            decoded = decode_rgb(data, max_pixels=self.max_pixels, apply_exif=displayed)
            return (decoded.size if displayed else stored), stored, None
        image = self.decode(data)
        return (image.size if displayed else stored), stored, image


def _orientation(data: bytes) -> int | None:
    try:
        value = open_image(data).getexif().get(_EXIF_ORIENTATION)
    except Exception:  # the image decoded already; its EXIF only names the turn in a message
        return None
    return value if isinstance(value, int) else None


def _build(
    source: Path | str | Dataset, reader: _Reader, progress: Progress | None, workers: int | None
) -> tuple[DatasetManifest, dict[str, Image.Image]]:
    dataset = source if isinstance(source, Dataset) else read_dataset(source)
    items = _items(dataset)
    results = list(_run(items, reader, progress, workers))
    problems = [r for r in results if isinstance(r, tuple)]
    root = dataset.root if isinstance(dataset, ImageFolderDataset) else dataset.images_dir
    if problems:
        raise CorruptImagesError(root, problems)
    read = [r for r in results if isinstance(r, _Read)]
    entries = [r.entry for r in read]
    _check_declared_sizes(items, read, dataset)
    kind: ManifestKind = (
        "classification" if isinstance(dataset, ImageFolderDataset) else "detection"
    )
    labels = dataset.classes if isinstance(dataset, ImageFolderDataset) else dataset.labels
    manifest = DatasetManifest.create(kind, labels, entries, source=str(root))
    return manifest, {r.entry.path: r.image for r in read if r.image is not None}


def _items(dataset: Dataset) -> list[_Item]:
    if isinstance(dataset, ImageFolderDataset):
        return [_Item(s.relpath, s.path, s.split, s.class_name, None, None) for s in dataset]
    return [_coco_item(dataset, image) for image in dataset.images]


def _coco_item(dataset: CocoDataset, image: CocoImage) -> _Item:
    names = dataset.labels
    boxes = (
        BoxAnnotation(label=names[a.label], bbox=a.bbox) for a in dataset.annotations_for(image.id)
    )
    ordered = tuple(sorted(boxes, key=lambda b: (b.label, b.bbox)))
    return _Item(image.file_name, image.path, None, None, ordered, (image.width, image.height))


def _run(
    items: Sequence[_Item], reader: _Reader, progress: Progress | None, workers: int | None
) -> Iterator[_Read | tuple[str, str]]:
    count = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=count) as pool:
        for done, result in enumerate(pool.map(reader.read, items), start=1):
            if progress is not None:
                progress(done, len(items))
            yield result


def _check_declared_sizes(items: Sequence[_Item], read: Sequence[_Read], dataset: Dataset) -> None:
    mismatched = [
        (item.declared, r)
        for item, r in zip(items, read, strict=True)
        if item.declared is not None and item.declared != (r.entry.width, r.entry.height)
    ]
    if mismatched:
        wrong = [_size_problem(declared, r) for declared, r in mismatched]
        where = getattr(dataset, "annotation_file", "")
        more = f" (and {len(wrong) - 10} more)" if len(wrong) > 10 else ""
        turned = any(r.orientation is not None for _, r in mismatched)
        hint = "; annotations and width/height must be in displayed (EXIF-applied) pixels"
        raise DatasetError(
            f"{len(wrong)} image size(s) differ from {where}: {'; '.join(wrong[:10])}{more}"
            + (hint if turned else "")
        )


def _size_problem(declared: tuple[int, int], read: _Read) -> str:
    e = read.entry
    size, stated = f"{e.width}x{e.height}", f"{declared[0]}x{declared[1]}"
    if read.orientation is None:
        return f"{e.path} is {size}, declared {stated}"
    turn = f"after EXIF orientation {read.orientation}"
    if declared == read.stored:
        return f"{e.path} is declared {stated}, its stored size, but shows as {size} {turn}"
    return f"{e.path} is {size} {turn}, declared {stated}"
