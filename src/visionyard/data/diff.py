"""Compare two dataset manifests: what was added, removed, changed, moved or relabelled.

Entries are matched by path first: same path with other content is *changed*; same path and
content with other labels is *relabelled*. The remaining entries are then matched by content
hash, because in an ImageFolder tree a relabel moves the file into another class folder: same
content under a new path with other labels is *relabelled*, with the same labels it is *moved*
(e.g. from ``train/`` to ``val/``). What is left is *added* or *removed*.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from visionyard.data.manifest import DatasetManifest, ManifestEntry
from visionyard.errors import DatasetError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Change(_Frozen):
    """Same path, different content."""

    path: str
    sha256_a: str
    sha256_b: str
    labels_a: str
    labels_b: str


class Relabel(_Frozen):
    """Same content, different labels (``path_a == path_b`` when the file did not move)."""

    path_a: str
    path_b: str
    sha256: str
    labels_a: str
    labels_b: str


class Move(_Frozen):
    """Same content and labels under another path (e.g. moved to another split)."""

    path_a: str
    path_b: str
    sha256: str
    labels: str


class ManifestDiff(_Frozen):
    """The differences from manifest ``a`` to manifest ``b``."""

    kind: str
    digest_a: str
    digest_b: str
    images_a: int
    images_b: int
    added: tuple[ManifestEntry, ...]
    removed: tuple[ManifestEntry, ...]
    changed: tuple[Change, ...]
    relabelled: tuple[Relabel, ...]
    moved: tuple[Move, ...]
    labels_a: tuple[str, ...]
    labels_b: tuple[str, ...]
    counts_a: dict[str, int]
    counts_b: dict[str, int]

    @property
    def labels_added(self) -> tuple[str, ...]:
        return tuple(name for name in self.labels_b if name not in self.labels_a)

    @property
    def labels_removed(self) -> tuple[str, ...]:
        return tuple(name for name in self.labels_a if name not in self.labels_b)

    @property
    def identical(self) -> bool:
        return self.digest_a == self.digest_b

    def summary(self) -> dict[str, Any]:
        """Counts of each kind of difference, the label-set changes and both digests."""
        return {
            "kind": self.kind,
            "identical": self.identical,
            "digest_a": self.digest_a,
            "digest_b": self.digest_b,
            "images_a": self.images_a,
            "images_b": self.images_b,
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "relabelled": len(self.relabelled),
            "moved": len(self.moved),
            "labels_added": list(self.labels_added),
            "labels_removed": list(self.labels_removed),
            "label_order_changed": self.labels_a != self.labels_b
            and set(self.labels_a) == set(self.labels_b),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: the summary plus every difference."""
        return {"summary": self.summary(), **self.model_dump(mode="json")}


def diff_manifests(a: DatasetManifest, b: DatasetManifest) -> ManifestDiff:
    """Compare manifest ``a`` (before) with manifest ``b`` (after)."""
    if a.kind != b.kind:
        raise DatasetError(f"cannot compare a {a.kind} manifest with a {b.kind} manifest")
    by_a = {e.path: e for e in a.entries}
    by_b = {e.path: e for e in b.entries}
    changed, relabelled = _same_path(by_a, by_b)
    only_a = [by_a[p] for p in sorted(by_a.keys() - by_b.keys())]
    only_b = [by_b[p] for p in sorted(by_b.keys() - by_a.keys())]
    moved, relabelled_moved, removed, added = _match_content(only_a, only_b)
    return ManifestDiff(
        kind=a.kind,
        digest_a=a.digest,
        digest_b=b.digest,
        images_a=len(a.entries),
        images_b=len(b.entries),
        added=tuple(added),
        removed=tuple(removed),
        changed=tuple(changed),
        relabelled=tuple(sorted([*relabelled, *relabelled_moved], key=lambda r: r.path_a)),
        moved=tuple(moved),
        labels_a=a.labels,
        labels_b=b.labels,
        counts_a=label_totals(a),
        counts_b=label_totals(b),
    )


def label_totals(manifest: DatasetManifest) -> dict[str, int]:
    """Images per label (classification) or boxes per label (detection)."""
    counts: Counter[str] = Counter(dict.fromkeys(manifest.labels, 0))
    for entry in manifest.entries:
        if entry.annotations is None:
            counts[entry.label or ""] += 1
        else:
            counts.update(a.label for a in entry.annotations)
    return dict(counts)


def _same_path(
    by_a: dict[str, ManifestEntry], by_b: dict[str, ManifestEntry]
) -> tuple[list[Change], list[Relabel]]:
    changed: list[Change] = []
    relabelled: list[Relabel] = []
    for path in sorted(by_a.keys() & by_b.keys()):
        ea, eb = by_a[path], by_b[path]
        if ea.sha256 != eb.sha256:
            changed.append(
                Change(
                    path=path,
                    sha256_a=ea.sha256,
                    sha256_b=eb.sha256,
                    labels_a=ea.describe_labels(),
                    labels_b=eb.describe_labels(),
                )
            )
        elif ea.label_key() != eb.label_key():
            relabelled.append(_relabel(ea, eb))
    return changed, relabelled


def _match_content(
    only_a: Sequence[ManifestEntry], only_b: Iterable[ManifestEntry]
) -> tuple[list[Move], list[Relabel], list[ManifestEntry], list[ManifestEntry]]:
    pool: defaultdict[str, list[ManifestEntry]] = defaultdict(list)
    for entry in only_b:
        pool[entry.sha256].append(entry)
    moved: list[Move] = []
    relabelled: list[Relabel] = []
    removed: list[ManifestEntry] = []
    for ea in only_a:
        eb = _take(pool[ea.sha256], ea)
        if eb is None:
            removed.append(ea)
        elif eb.label_key() == ea.label_key():
            moved.append(
                Move(path_a=ea.path, path_b=eb.path, sha256=ea.sha256, labels=ea.describe_labels())
            )
        else:
            relabelled.append(_relabel(ea, eb))
    added = sorted((e for left in pool.values() for e in left), key=lambda e: e.path)
    return moved, relabelled, removed, added


def _take(candidates: list[ManifestEntry], like: ManifestEntry) -> ManifestEntry | None:
    """Pop the best match for ``like``: same labels first, else the first by path."""
    if not candidates:
        return None
    same = [i for i, c in enumerate(candidates) if c.label_key() == like.label_key()]
    return candidates.pop(same[0] if same else 0)


def _relabel(ea: ManifestEntry, eb: ManifestEntry) -> Relabel:
    return Relabel(
        path_a=ea.path,
        path_b=eb.path,
        sha256=ea.sha256,
        labels_a=ea.describe_labels(),
        labels_b=eb.describe_labels(),
    )
