"""The on-disk model bundle: ONNX variants + vision contract + a checksummed manifest.

Layout::

    BUNDLE/
      manifest.json        {"bundle_version": "1", "files": {relpath: {"sha256", "size"}},
                            "variants": {"fp32": "model.onnx", ...}, "metadata": {...}}
      contract.json        the vision contract
      model.onnx           the FP32 model (the default variant)
      variants/int8.onnx   optional further variants, each listed in the manifest
      ...                  any extra file (reports, label files), listed in the manifest

Loading verifies every listed file's size and sha256 and refuses a tampered, missing or extra
file. A manifest only proves that the files agree with each other: whoever can write the files
can also re-seal the manifest. So a registered bundle is also checked against the digest the
registry recorded when it was registered (``load_bundle(path, expected_digest=...)``). No pickle
anywhere: only JSON and ONNX protobufs. No library covers this small format, so it is written
here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionyard.contract.schema import VisionContract, canonical_sha256, parse_contract
from visionyard.errors import BundleError, BundleIntegrityError, ContractError

MANIFEST = "manifest.json"
CONTRACT = "contract.json"
MODEL = "model.onnx"
BUNDLE_VERSION = "1"
CHUNK_SIZE = 1 << 20
FileSource = Path | bytes


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    contract: VisionContract
    files: dict[str, dict[str, Any]]
    variants: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)

    def model_path(self, variant: str = "fp32") -> Path:
        """Path of a variant's ONNX file; ``fp32`` is ``model.onnx``."""
        if not self.variants:
            raise BundleError(
                self.path, "has no model of its own (a registered pipeline: serve or evaluate "
                "it, or run its stages; `visionyard pipeline show` names them)",
            )  # fmt: skip
        if variant not in self.variants:
            known = ", ".join(sorted(self.variants))
            raise BundleError(self.path, f"has no variant {variant!r} (it has: {known})")
        return self.path / self.variants[variant]

    def digest(self) -> str:
        """Content digest of the whole bundle: :func:`canonical_sha256` (the one digest formula
        of visionyard) over the manifest's file table and variants."""
        return canonical_sha256({"files": self.files, "variants": self.variants})

    def metadata_digest(self) -> str:
        """Digest of the manifest's ``metadata`` (run id, flags such as
        ``accepts_non_finite``): not part of :meth:`digest`, so the registry records it apart."""
        return canonical_sha256(self.metadata)


def metadata_digest(manifest: Path) -> str:
    """:meth:`Bundle.metadata_digest` of a bundle, from its ``manifest.json`` alone."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        metadata = dict(data.get("metadata") or {})
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise BundleIntegrityError(manifest.parent, f"{MANIFEST} is unreadable: {exc}") from exc
    return canonical_sha256(metadata)


def write_bundle(
    directory: Path,
    *,
    model: FileSource,
    contract: VisionContract,
    extra_files: Mapping[str, FileSource] | None = None,
    variants: Mapping[str, FileSource] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Bundle:
    """Write a new bundle atomically (staged beside ``directory``, then renamed)."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise BundleError(directory, "already exists and is not empty; choose a new directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=directory.parent))
    try:
        names = {"fp32": MODEL}
        _put(staging / MODEL, model)
        _put(staging / CONTRACT, contract.to_json().encode())
        for variant, source in (variants or {}).items():
            names[variant] = f"variants/{variant}.onnx"
            _put(staging / names[variant], source)
        for rel, source in (extra_files or {}).items():
            _put(staging / _safe_rel(staging, rel), source)
        table = {rel: file_entry(staging / rel) for rel in _listed_files(staging)}
        seal(staging, table, names, dict(metadata or {}))
        if directory.exists():
            directory.rmdir()
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(directory)


def add_files(
    bundle: Bundle, files: Mapping[str, FileSource], variants: Mapping[str, str]
) -> Bundle:
    """Add files (and register variants among them) to a bundle that :func:`load_bundle`
    verified, re-sealing it. Only the new files are hashed: the verified ``bundle`` vouches for
    the rest (a second pass over the same files proves nothing new)."""
    table = dict(bundle.files)
    for rel, source in files.items():
        safe = _safe_rel(bundle.path, rel)
        _put(bundle.path / safe, source)
        table[safe] = file_entry(bundle.path / safe)
    names = {**bundle.variants, **variants}
    seal(bundle.path, table, names, bundle.metadata)
    return Bundle(bundle.path, bundle.contract, table, names, dict(bundle.metadata))


def load_bundle(directory: Path | str, *, expected_digest: str | None = None) -> Bundle:
    """Load and verify a bundle; raises :class:`BundleIntegrityError` on any mismatch, and when
    ``expected_digest`` (the registry's record) is given and the bundle's digest differs."""
    root = Path(directory)
    manifest = _read_manifest(root)
    files: dict[str, dict[str, Any]] = manifest["files"]
    check_files(root, files)
    try:
        contract = parse_contract(json.loads((root / CONTRACT).read_text(encoding="utf-8")))
    except (ContractError, json.JSONDecodeError) as exc:
        raise BundleError(root, f"contract.json is invalid: {exc}") from exc
    # an explicit empty table: a bundle without a model of its own (a registered pipeline)
    variants = dict(manifest["variants"]) if "variants" in manifest else {"fp32": MODEL}
    for variant, rel in variants.items():
        if rel not in files:
            raise BundleIntegrityError(root, f"variant {variant!r} file {rel} is not listed")
    bundle = Bundle(root, contract, files, variants, dict(manifest.get("metadata") or {}))
    if expected_digest is not None:
        check_digest(bundle.digest(), expected_digest, root)
    return bundle


def check_digest(found: str, expected: str, where: Path | str) -> None:
    """:class:`BundleIntegrityError` unless ``found`` is the recorded ``expected`` digest."""
    if found != expected:
        raise BundleIntegrityError(
            where,
            f"digest {found[:12]} differs from {expected[:12]}, the digest recorded at "
            "registration: the files were edited and re-sealed, or replaced; refusing to load",
        )


def sha256_file(path: Path | str, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` chunks (bundles, manifests, calibration)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(target: Path, source: FileSource) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        target.write_bytes(source)
    else:
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            raise BundleError(target.parent, f"cannot copy {source}: {exc.strerror}") from exc


def _safe_rel(root: Path, rel: str) -> str:
    resolved = (root / rel).resolve()
    if root.resolve() not in resolved.parents or rel in {MANIFEST}:
        raise BundleError(root, f"file name {rel!r} is not allowed inside a bundle")
    return Path(rel).as_posix()


def file_entry(path: Path) -> dict[str, Any]:
    """A manifest entry: the file's sha256 and size."""
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def seal(
    root: Path,
    files: Mapping[str, Any],
    variants: Mapping[str, str],
    metadata: Mapping[str, Any],
) -> None:
    """Write ``manifest.json`` for the file table ``files`` (atomically)."""
    body = {
        "bundle_version": BUNDLE_VERSION,
        "files": dict(files),
        "variants": dict(variants),
        "metadata": dict(metadata),
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)


def _listed_files(root: Path, manifest: str = MANIFEST) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() != manifest
    )


def read_json(root: Path, name: str) -> Any:
    """A folder's JSON manifest; missing or unreadable is :class:`BundleIntegrityError`."""
    try:
        return json.loads((root / name).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleIntegrityError(root, f"{name} is missing") from exc
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(root, f"{name} is unreadable: {exc}") from exc


def check_files(root: Path, files: Mapping[str, Any], manifest: str = MANIFEST) -> None:
    """Every file listed in ``manifest`` is present with its size and sha256, and no other."""
    _check_file_set(root, files, manifest)
    for rel, expected in sorted(files.items()):
        _check_file(root, rel, expected)


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise BundleError(root, "is not a directory")
    manifest = read_json(root, MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleIntegrityError(root, f"{MANIFEST} has no file table")
    if manifest.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(root, f"unsupported bundle_version {manifest.get('bundle_version')!r}")
    modelless = manifest.get("variants") == {}  # a registered pipeline: no model.onnx
    for required in (CONTRACT,) if modelless else (MODEL, CONTRACT):
        if required not in manifest["files"]:
            raise BundleIntegrityError(root, f"{required} is not listed in {MANIFEST}")
    return manifest


def _check_file_set(root: Path, files: Mapping[str, Any], manifest: str) -> None:
    present = set(_listed_files(root, manifest))
    missing = sorted(set(files) - present)
    extra = sorted(present - set(files))
    if missing:
        raise BundleIntegrityError(root, f"missing file(s): {', '.join(missing)}")
    if extra:
        raise BundleIntegrityError(
            root, f"unexpected file(s) not in the manifest: {', '.join(extra)}"
        )


def _check_file(root: Path, rel: str, expected: Mapping[str, Any]) -> None:
    path = root / rel
    size = path.stat().st_size
    if size != expected.get("size"):
        raise BundleIntegrityError(
            root, f"{rel} has {size} bytes, the manifest says {expected.get('size')}: tampered"
        )
    if sha256_file(path) != expected.get("sha256"):
        raise BundleIntegrityError(root, f"{rel} does not match its sha256 checksum: tampered")
