"""Reference profiles stored on a registered version, beside its immutable files.

A registered version's files never change, so a profile is added beside them as variants are
(:mod:`visionyard.export.registry`): its two files are uploaded under
``monitor/profile/<first 16 hex digits of its digest>/``, then its digest is recorded as the
version tag ``vy.profile_digest`` (last: the tag is what makes the profile trusted) with a
one-line summary in ``vy.profile``. A later profile goes to a folder of its own and moving the
tag replaces the old one atomically. Every load downloads the folder the tag names and checks
it (:func:`~visionyard.monitor.profile.load_profile`): a tampered or truncated profile is
refused with :class:`~visionyard.errors.BundleIntegrityError` (exit 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from visionyard.errors import NotFoundError
from visionyard.monitor.compare import CompareOptions, Comparison, compare
from visionyard.monitor.profile import (
    Collected,
    Profile,
    ProfileOptions,
    Progress,
    build_profile,
    collect_sample,
    load_profile,
    save_profile,
)
from visionyard.registry import Registry, parse_reference
from visionyard.registry.views import resolve_version
from visionyard.settings import Settings
from visionyard.tracking.registry_client import VersionInfo

TAG_DIGEST = "vy.profile_digest"
TAG_SUMMARY = "vy.profile"
ARTIFACT = "monitor/profile"


class ProfileStore(Protocol):
    """What this module needs of :class:`~visionyard.tracking.registry_client.RegistryClient`."""

    def download_version_artifacts(self, version: VersionInfo, path: str, dst: Path) -> Path: ...

    def upload_version_artifact(
        self, version: VersionInfo, local: Path, artifact_dir: str
    ) -> str: ...

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class Images:
    """The images to profile or compare: files and the folder their names are relative to."""

    paths: Sequence[Path]
    root: Path


@dataclass(frozen=True)
class FolderComparison:
    """``monitor compare``'s answer: the version, its profile, the folder's sample and result."""

    version: VersionInfo
    profile: Profile
    collected: Collected
    comparison: Comparison


def profile_folder(digest: str) -> str:
    """The artifact folder of the profile with ``digest``."""
    return f"{ARTIFACT}/{digest.removeprefix('sha256:')[:16]}"


def store_profile(store: ProfileStore, info: VersionInfo, profile: Profile, workdir: Path) -> str:
    """Upload ``profile`` beside version ``info`` and record its digest; returns the digest."""
    digest = save_profile(profile, workdir / "profile")
    piece = profile_folder(digest)
    for path in sorted((workdir / "profile").iterdir()):
        store.upload_version_artifact(info, path, piece)
    store.set_version_tag(info.name, info.version, TAG_SUMMARY, summary_line(profile))
    store.set_version_tag(info.name, info.version, TAG_DIGEST, digest)  # last: makes it trusted
    return digest


def fetch_profile(store: ProfileStore, info: VersionInfo, workdir: Path) -> Profile:
    """The version's profile, checked against the digest the version records."""
    where = f"{info.name}/{info.version} profile"
    digest = info.tags.get(TAG_DIGEST)
    if not digest:
        raise NotFoundError(
            "reference profile of", f"{info.name}/{info.version}",
            f"build it with: visionyard monitor profile {info.name}/{info.version} --data DIR",
        )  # fmt: skip
    folder = store.download_version_artifacts(info, profile_folder(digest), workdir / "profile")
    return load_profile(folder, digest, what=where)


def summary_line(profile: Profile) -> str:
    """``1000 images, data sha256:0123456789ab, 2026-01-01T00:00:00+00:00``."""
    meta = profile.meta
    data = str(meta.get("data_digest", "-"))[:19]
    return f"{profile.images} images, data {data}, {meta.get('created', '-')}"


def profile_version(
    settings: Settings,
    reference: str,
    images: Images,
    workdir: Path,
    *,
    options: ProfileOptions | None = None,
    progress: Progress | None = None,
) -> tuple[VersionInfo, Profile, str]:
    """Build the profile of a registered version on ``images`` and store it beside it."""
    registry = Registry(settings)
    info = resolve_version(registry.client, parse_reference(reference))
    session = registry.open_session(f"{info.name}/{info.version}", workdir / "bundles")
    about = {"model": info.name, "version": info.version}
    profile = build_profile(
        session, images.paths, root=images.root, about=about, options=options, progress=progress
    )
    return info, profile, store_profile(registry.client, info, profile, workdir)


def load_version_profile(
    settings: Settings, reference: str, workdir: Path
) -> tuple[VersionInfo, Profile]:
    """The verified profile of the version ``reference`` points at."""
    registry = Registry(settings)
    info = resolve_version(registry.client, parse_reference(reference))
    return info, fetch_profile(registry.client, info, workdir)


def compare_version(
    settings: Settings,
    reference: str,
    images: Images,
    workdir: Path,
    *,
    options: CompareOptions | None = None,
    progress: Progress | None = None,
) -> FolderComparison:
    """Run ``images`` through the version and compare them with its stored profile."""
    registry = Registry(settings)
    info = resolve_version(registry.client, parse_reference(reference))
    profile = fetch_profile(registry.client, info, workdir)  # before any inference: fail fast
    session = registry.open_session(f"{info.name}/{info.version}", workdir / "bundles")
    collected = collect_sample(
        session, images.paths, root=images.root, options=ProfileOptions(), progress=progress
    )
    return FolderComparison(
        info, profile, collected, compare(profile.sample, collected.sample, options)
    )
