"""Variant packs: a variant stored BESIDE a registered bundle, never inside it.

A registered version's bundle is sealed once, at registration, and its digest is recorded in
the registry. Variants exported later (INT8, FP16) must not change it, so each is a small pack
of its own in the version's artifacts::

    variants/int8/
      pack.json     {"pack_version": "1", "name": "int8", "base_digest": <bundle digest>,
                     "model": "model.onnx" | null, "summary": {...}, "files": {rel: {sha256, size}}}
      model.onnx    the variant (absent for the ``fp32`` pack, which holds only the reference
                    measurements the variants were compared with)
      report.json   the full variant report

A pack's digest is :func:`canonical_sha256` of its ``pack.json``; the registry records it like
the bundle's, and ``base_digest`` ties the pack to the one bundle it was measured on.
:func:`compose` lays a verified bundle and its verified packs out as one ordinary local bundle
(hard links where possible; the packs under ``packs/<name>/``), so the runtime and the server
load variants the one way they know.
No library covers this small format, so it is written here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionyard.bundle.store import (
    MANIFEST,
    Bundle,
    check_digest,
    check_files,
    read_json,
    seal,
    sha256_bytes,
)
from visionyard.contract.schema import canonical_sha256
from visionyard.errors import BundleError, BundleIntegrityError

PACK_MANIFEST = "pack.json"
PACK_VERSION = "1"
PACK_MODEL = "model.onnx"
PACK_REPORT = "report.json"
REPORTS_FILE = "reports/variants.json"
VARIANT_REPORTS = "variant_reports"
PACKS_DIR = "packs"
COMPOSED = "composed"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class VariantPack:
    """A verified variant pack on disk."""

    path: Path
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["name"])

    @property
    def base_digest(self) -> str:
        return str(self.body["base_digest"])

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.body.get("summary") or {})

    @property
    def model(self) -> Path | None:
        rel = self.body.get("model")
        return None if rel is None else self.path / str(rel)

    def digest(self) -> str:
        return canonical_sha256(self.body)


def write_pack(
    directory: Path,
    *,
    name: str,
    base_digest: str,
    model: bytes | None,
    summary: Mapping[str, Any],
    report: bytes,
) -> VariantPack:
    """Write a new pack into the empty (or absent) ``directory``."""
    if not _NAME.match(name):
        raise BundleError(directory, f"variant name {name!r} is not allowed")
    if directory.exists() and any(directory.iterdir()):
        raise BundleError(directory, "already exists and is not empty; choose a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    files = {PACK_REPORT: report} if model is None else {PACK_MODEL: model, PACK_REPORT: report}
    for rel, data in files.items():
        (directory / rel).write_bytes(data)
    body = {
        "pack_version": PACK_VERSION,
        "name": name,
        "base_digest": base_digest,
        "model": None if model is None else PACK_MODEL,
        "summary": dict(summary),
        "files": {rel: {"sha256": sha256_bytes(d), "size": len(d)} for rel, d in files.items()},
    }
    (directory / PACK_MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True))
    return VariantPack(directory, body)


def load_pack(
    directory: Path, *, expected_digest: str | None = None, base_digest: str | None = None
) -> VariantPack:
    """Load and verify a pack: its files, and (when given) the recorded digest and its base."""
    body = _read_body(directory)
    check_files(directory, body["files"], PACK_MANIFEST)
    pack = VariantPack(directory, body)
    if expected_digest is not None:
        check_digest(pack.digest(), expected_digest, directory)
    if base_digest is not None and pack.base_digest != base_digest:
        raise BundleIntegrityError(
            directory, f"variant {pack.name!r} was measured on another bundle; refusing it"
        )
    return pack


def compose(bundle: Bundle, packs: Sequence[VariantPack], target: Path) -> Bundle:
    """Lay ``bundle`` and its ``packs`` out as one sealed local bundle at ``target``.

    Both must be verified already (their files are linked, not hashed again); ``target`` is
    replaced atomically. The bundle's own files keep their names and bytes; each pack's files
    go under ``packs/<name>/``, its model becomes variant ``<name>``, and the reports the runtime
    reads are merged into the manifest's ``variant_reports``. The metadata also remembers what
    it was composed from (``composed``), so :func:`composed_digests` can tell later, from the
    manifest alone, which bundle and pack digests its file table stands for."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".compose-{os.getpid()}-", dir=target.parent))
    try:
        table = {rel: dict(entry) for rel, entry in bundle.files.items()}
        for rel in bundle.files:
            _link(bundle.path / rel, staging / rel)
        variants = dict(bundle.variants)
        summaries = _summaries(bundle)
        for pack in packs:
            for rel, entry in pack.body["files"].items():
                _link(pack.path / rel, staging / _packed(pack.name, rel))
                table[_packed(pack.name, rel)] = dict(entry)
            if pack.model is not None:
                variants[pack.name] = _packed(pack.name, PACK_MODEL)
            summaries[pack.name] = pack.summary
        metadata = _composed_metadata(bundle.metadata, _provenance(bundle, packs), summaries)
        seal(staging, table, variants, metadata)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(target, bundle.contract, table, variants, metadata)


def composed_digests(root: Path) -> tuple[str, dict[str, str]] | None:
    """(bundle digest, {variant: pack digest}) that the composed bundle at ``root`` stands for
    (:func:`composed_record` without the metadata digest)."""
    record = composed_record(root)
    return None if record is None else record[:2]


def composed_record(root: Path) -> tuple[str, dict[str, str], str] | None:
    """(bundle digest, {variant: pack digest}, the bundle's metadata digest) that the composed
    bundle at ``root`` stands for, recomputed from its manifest (None when it is not a
    composed bundle, or when its manifest says anything :func:`compose` would not have written
    from that provenance: a file, a variant, metadata or variant reports of its own). The files
    themselves are checked against the table when the bundle is loaded.

    The provenance is in the manifest too, so whoever can write the copy can edit it; what
    makes the answer trustworthy is the caller comparing the digests with the registry's
    record, and the manifest holding nothing beyond what those digests cover."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        files, variants, made = (
            manifest["files"],
            manifest["variants"],
            manifest["metadata"][COMPOSED],
        )
        packs_made: dict[str, Any] = made["packs"]
        base = {rel: files[rel] for rel in made["bundle_files"]}
        digest = canonical_sha256({"files": base, "variants": made["bundle_variants"]})
        packs = {name: _pack_digest(files, name, body) for name, body in packs_made.items()}
        expected = _expected_tables(made)
        summaries = _own_summaries(made["bundle_metadata"], root, made["bundle_files"])
        summaries.update({name: body.get("summary") or {} for name, body in packs_made.items()})
        metadata = _composed_metadata(made["bundle_metadata"], made, summaries)
        if (set(files), variants, manifest["metadata"]) != (*expected, metadata):
            return None
        return digest, packs, canonical_sha256(made["bundle_metadata"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _provenance(bundle: Bundle, packs: Sequence[VariantPack]) -> dict[str, Any]:
    return {
        "bundle_files": sorted(bundle.files),
        "bundle_variants": dict(bundle.variants),
        "bundle_metadata": dict(bundle.metadata),
        "packs": {pack.name: pack.body for pack in packs},
    }


def _composed_metadata(
    own: Mapping[str, Any], provenance: Mapping[str, Any], summaries: Mapping[str, Any]
) -> dict[str, Any]:
    """The composed manifest's metadata: the bundle's, its provenance, and (with packs) the
    merged variant reports the runtime reads."""
    metadata = {**own, COMPOSED: dict(provenance)}
    if provenance["packs"]:
        metadata[VARIANT_REPORTS] = dict(summaries)
    return metadata


def _expected_tables(made: Mapping[str, Any]) -> tuple[set[str], dict[str, str]]:
    """The file names and variants :func:`compose` writes for this provenance."""
    names, variants = set(made["bundle_files"]), dict(made["bundle_variants"])
    for name, body in made["packs"].items():
        names.update(_packed(name, rel) for rel in body["files"])
        if body.get("model") is not None:
            variants[name] = _packed(name, PACK_MODEL)
    return names, variants


def _pack_digest(files: dict[str, Any], name: str, body: dict[str, Any]) -> str:
    """The pack digest, or ``"mismatch"`` when the composed files differ from the pack's."""
    same = all(files.get(_packed(name, rel)) == entry for rel, entry in body["files"].items())
    return canonical_sha256(body) if same else "mismatch"


def _packed(name: str, rel: str) -> str:
    return f"{PACKS_DIR}/{name}/{rel}"


def _summaries(bundle: Bundle) -> dict[str, Any]:
    """The bundle's own variant reports, where the runtime reads them (metadata, then file)."""
    try:
        return _own_summaries(bundle.metadata, bundle.path, bundle.files)
    except (OSError, ValueError) as exc:
        raise BundleError(bundle.path, f"{REPORTS_FILE} is unreadable: {exc}") from exc


def _own_summaries(metadata: Mapping[str, Any], root: Path, files: Any) -> dict[str, Any]:
    own = metadata.get(VARIANT_REPORTS)
    if isinstance(own, dict):
        return dict(own)
    if REPORTS_FILE not in files:
        return {}
    loaded = json.loads((root / REPORTS_FILE).read_text(encoding="utf-8"))
    return dict(loaded) if isinstance(loaded, dict) else {}


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _read_body(directory: Path) -> dict[str, Any]:
    body = read_json(directory, PACK_MANIFEST)
    if not isinstance(body, dict) or body.get("pack_version") != PACK_VERSION:
        raise BundleError(directory, f"{PACK_MANIFEST} is not a variant pack this version reads")
    files = body.get("files")
    if not isinstance(files, dict) or not _NAME.match(str(body.get("name"))):
        raise BundleIntegrityError(directory, f"{PACK_MANIFEST} has no file table or name")
    if body.get("model") not in (None, PACK_MODEL) or PACK_REPORT not in files:
        raise BundleIntegrityError(directory, f"{PACK_MANIFEST} names files it must not")
    if any(Path(rel).is_absolute() or ".." in Path(rel).parts for rel in files) or (
        MANIFEST in files
    ):
        raise BundleIntegrityError(directory, f"{PACK_MANIFEST} lists a file outside the pack")
    return body
