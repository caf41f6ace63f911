"""What the registry recorded about a version's files, and every load checked against it.

A bundle's manifest only proves that its files agree with each other: whoever can write the
artifact store can edit ``model.onnx`` and re-seal ``manifest.json``. The registry therefore
records, when a version is registered, the bundle's digest (``vy.bundle_digest``), and when a
variant is exported, the digest of its pack (``vy.variant_digest.<name>``; see
:mod:`visionyard.bundle.packs`). Every load of a registered version -- server, runtime, export,
gate, ``bundle verify`` -- goes through :func:`materialize` or :func:`verify_version`, which
refuse with :class:`~visionyard.errors.BundleIntegrityError` (exit 6) when the files are not
the ones recorded. With ``registry.signing_key`` set, the recorded digests must also carry a
valid signature (:mod:`visionyard.bundle.signing`).

A pack is stored at a content-addressed place, ``variants/<name>/<first 16 hex of its
digest>/``, so two exports of one version racing each write their own complete pack and the
recorded digest always names one of them. Packs in the artifact store that the registry does not
record (an export killed before its tag was written) are ignored, never loaded. Errors name the
version and the piece (``shapes/3 variants/int8``), never a scratch folder; a recorded piece
missing from the store is a tampering error (exit 6), not a registry conflict.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from visionyard.bundle.packs import (
    VariantPack,
    compose,
    composed_record,
    load_pack,
)
from visionyard.bundle.signing import check_signature, sign, subject
from visionyard.bundle.store import MANIFEST, Bundle, check_digest, load_bundle, metadata_digest
from visionyard.errors import (
    BundleError,
    BundleIntegrityError,
    NotFoundError,
    RegistryError,
    TrackingError,
    TrackingUnavailableError,
    VisionyardError,
)
from visionyard.registry import tags as T
from visionyard.tracking.mlflow_model import sweep_scratch
from visionyard.tracking.registry_client import VersionInfo


class ArtifactReader(Protocol):
    """What loading needs of :class:`~visionyard.tracking.registry_client.RegistryClient`."""

    def download_version_artifacts(self, version: VersionInfo, path: str, dst: Path) -> Path: ...


@dataclass(frozen=True)
class Record:
    """What the registry recorded for one version: digests and (optional) signatures."""

    name: str
    version: str
    bundle_digest: str
    bundle_signature: str | None = None
    variants: dict[str, str] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)
    #: the bundle manifest's metadata digest (None: registered before it was recorded)
    metadata_digest: str | None = None
    metadata_signature: str | None = None

    def check_metadata(self, bundle: Bundle) -> None:
        """The bundle's metadata is the one registered (when that was recorded)."""
        if self.metadata_digest and bundle.metadata_digest() != self.metadata_digest:
            raise BundleIntegrityError(
                bundle.path,
                f"its manifest's metadata (digest {bundle.metadata_digest()[:12]}) differs "
                f"from what was registered ({self.metadata_digest[:12]}): edited in the store",
            )

    def pieces(self) -> list[tuple[str, str, str | None]]:
        """(piece, digest, signature) for the bundle and every recorded variant."""
        rows = [(T.BUNDLE_ARTIFACT, self.bundle_digest, self.bundle_signature)]
        if self.metadata_digest:
            rows.append((METADATA_PIECE, self.metadata_digest, self.metadata_signature))
        for name, digest in sorted(self.variants.items()):
            rows.append((variant_piece(name), digest, self.signatures.get(name)))
        return rows

    def check_signatures(self, key: str | None) -> None:
        """With a key: every recorded digest must carry the key's signature (no download)."""
        if key:
            for piece, digest, signature in self.pieces():
                text = subject(self.name, self.version, piece, digest)
                with _named(self, piece):
                    check_signature(key, text, signature)


@dataclass(frozen=True)
class PieceCheck:
    """One row of ``bundle verify NAME/VERSION``: a piece, its recorded and found digests."""

    piece: str
    recorded: str
    found: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def record_of(version: VersionInfo) -> Record:
    """The version's record; a version without a recorded bundle digest cannot be trusted."""
    tags = version.tags
    digest = tags.get(T.BUNDLE_DIGEST)
    if not digest:
        raise BundleIntegrityError(
            f"{version.name}/{version.version}",
            "has no recorded bundle digest (vy.bundle_digest); it was not registered by "
            "visionyard and cannot be verified",
        )
    variants = _suffixed(tags, T.VARIANT_DIGEST_PREFIX)
    return Record(
        version.name, version.version, digest, tags.get(T.BUNDLE_SIGNATURE), variants,
        _suffixed(tags, T.VARIANT_SIGNATURE_PREFIX), tags.get(T.METADATA_DIGEST) or None,
        tags.get(T.METADATA_SIGNATURE),
    )  # fmt: skip


#: the logical piece the metadata digest's signature names
METADATA_PIECE = f"{T.BUNDLE_ARTIFACT}/metadata"


def variant_piece(name: str) -> str:
    """The logical piece a variant's signature names: ``variants/<name>``."""
    return f"{T.VARIANTS_ARTIFACT}/{name}"


def pack_location(name: str, digest: str) -> str:
    """Where a pack with ``digest`` is stored among the version's artifacts."""
    return f"{T.VARIANTS_ARTIFACT}/{name}/{digest[:16]}"


def signature_tags(
    key: str | None, name: str, version: str, piece: str, digest: str
) -> dict[str, str]:
    """The signature tag for a digest about to be recorded (none without a key)."""
    if not key:
        return {}
    tags = {T.BUNDLE_ARTIFACT: T.BUNDLE_SIGNATURE, METADATA_PIECE: T.METADATA_SIGNATURE}
    tag = tags.get(piece) or _variant_tag(piece)
    return {tag: sign(key, subject(name, version, piece, digest))}


def fetch_pieces(
    client: ArtifactReader, version: VersionInfo, dst: Path, key: str | None
) -> tuple[Bundle, list[VariantPack]]:
    """Download the version's bundle and recorded variant packs; verify each against the
    registry (and its signature when ``key`` is set)."""
    record = record_of(version)
    record.check_signatures(key)
    with _named(record, T.BUNDLE_ARTIFACT):
        path = _download(client, version, T.BUNDLE_ARTIFACT, dst / "bundle")
        bundle = load_bundle(path, expected_digest=record.bundle_digest)
        record.check_metadata(bundle)
    packs = []
    for name, digest in sorted(record.variants.items()):
        with _named(record, variant_piece(name)):
            pack_dir = _download(client, version, pack_location(name, digest), dst / name)
            pack = load_pack(pack_dir, expected_digest=digest, base_digest=record.bundle_digest)
        packs.append(pack)
    return bundle, packs


def materialize(
    client: ArtifactReader, version: VersionInfo, target: Path, key: str | None
) -> Bundle:
    """The verified version (bundle + recorded variants) as one local bundle at ``target``."""
    with _writable(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_scratch(target.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".download-{os.getpid()}-", dir=target.parent))
    try:
        with _writable(target):
            bundle, packs = fetch_pieces(client, version, staging, key)
            return compose(bundle, packs, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def target_lock(target: Path) -> Iterator[None]:
    """One writer at a time for a cached version, across threads and processes."""
    with _writable(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target.parent / f".{target.name}.lock", "a+b")  # noqa: SIM115
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _writable(target: Path) -> Iterator[None]:
    """An OS error writing the cache ``.../NAME/VERSION`` (a read-only or full disk, a file
    where a folder must be) as the one-line :class:`TrackingError` (exit 7)."""
    try:
        yield
    except OSError as exc:
        raise TrackingError(
            f"cannot cache {target.parent.name}/{target.name} under {target.parent}: "
            f"{exc.strerror or exc}; free space or fix permissions, then retry"
        ) from exc


def cached(target: Path, version: VersionInfo, key: str | None = None) -> bool:
    """True when ``target`` holds a bundle composed from exactly the digests ``version``
    records, recomputed from its manifest (cheap: no file is read but the manifest; the files
    are checked against the manifest when the bundle is opened), and, with a key, when the
    record's signatures hold. A local copy edited and re-sealed, or a version that gained a
    variant since, is materialized again."""
    record = record_of(version)
    record.check_signatures(key)
    found = composed_record(target)
    if found is None or found[:2] != (record.bundle_digest, record.variants):
        return False
    return record.metadata_digest in (None, found[2])


def verify_version(
    client: ArtifactReader, version: VersionInfo, dst: Path, key: str | None
) -> list[PieceCheck]:
    """Check every recorded piece of the version; one row each, failures included."""
    record = record_of(version)
    return [_check_piece(client, version, record, dst, key, *piece) for piece in record.pieces()]


def _check_piece(
    client: ArtifactReader, version: VersionInfo, record: Record, dst: Path, key: str | None,
    piece: str, digest: str, signature: str | None,
) -> PieceCheck:  # fmt: skip
    found: str | None = None
    try:
        with _named(record, piece):
            _check_signed(record, key, piece, digest, signature)
            if piece == T.BUNDLE_ARTIFACT:
                path = _download(client, version, piece, dst / "bundle")
                found = load_bundle(path).digest()
            elif piece == METADATA_PIECE:
                found = stored_metadata_digest(client, version, dst / "meta")
            else:
                name = piece.rsplit("/", 1)[-1]
                path = _download(client, version, pack_location(name, digest), dst / name)
                found = load_pack(path, base_digest=record.bundle_digest).digest()
            check_digest(found, digest, piece)
    except BundleError as exc:
        return PieceCheck(piece, digest, found, exc.problem)
    except VisionyardError as exc:
        return PieceCheck(piece, digest, found, str(exc))
    return PieceCheck(piece, digest, found, None)


def stored_metadata_digest(client: ArtifactReader, version: VersionInfo, dst: Path) -> str:
    """The metadata digest of the version's bundle as the artifact store holds it now (its
    ``manifest.json`` alone is downloaded, under ``dst``)."""
    return metadata_digest(_download(client, version, f"{T.BUNDLE_ARTIFACT}/{MANIFEST}", dst))


def _download(client: ArtifactReader, version: VersionInfo, path: str, dst: Path) -> Path:
    """Download a recorded piece; one that is not there, or cannot be read back whole (a file
    removed, a link planted that resolves outside the store), was tampered with."""
    try:
        return client.download_version_artifacts(version, path, dst)
    except TrackingUnavailableError:
        raise
    except (NotFoundError, RegistryError, TrackingError) as exc:
        if any("outside the artifact" in str(e) for e in _chain(exc)):  # MLflow's refusal
            raise BundleIntegrityError(
                path, "holds a file that resolves outside the artifact store (a planted link)"
            ) from exc
        raise BundleIntegrityError(path, "is recorded but missing from the artifact store") from exc


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (its first line is all a message keeps)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


@contextmanager
def _named(record: Record, piece: str) -> Iterator[None]:
    """Bundle errors name the version and the piece, not a (deleted) scratch folder."""
    try:
        yield
    except BundleError as exc:
        raise type(exc)(f"{record.name}/{record.version} {piece}", exc.problem) from exc


def _check_signed(
    record: Record, key: str | None, piece: str, digest: str, signature: str | None
) -> None:
    if key:
        check_signature(key, subject(record.name, record.version, piece, digest), signature)


def _variant_tag(piece: str) -> str:
    return T.VARIANT_SIGNATURE_PREFIX + piece.rsplit("/", 1)[-1]


def _suffixed(tags: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix) and v}
