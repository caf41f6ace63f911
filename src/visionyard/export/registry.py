"""Variants of a registered model version: built on its bundle, stored back as its artifacts.

``visionyard export NAME VERSION`` downloads the version's ``bundle/`` artifact, runs
:func:`~visionyard.export.variants.build_variants` on it, then uploads what changed (the new
variant files, the reports, and last the re-sealed ``manifest.json``, so the stored bundle stays
verifiable) and tags the version so ``models show`` can list its variants as lineage::

    vy.variants        = "fp32,int8"                              (what the bundle holds now)
    vy.variant.int8    = "passed accuracy -0.3pt 2.80x 11.2MB"
    vy.variant.fp16    = "rejected accuracy -2.1pt 0.40x 22.4MB"   (measured, not stored)

``vy.bundle_digest`` keeps the digest of the bundle as registered (the registry matches it
against training runs to find duplicates); the FP32 model and contract are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from visionyard.bundle.store import MANIFEST, load_bundle
from visionyard.export.evaluation import EvalSet
from visionyard.export.quantize import CalibrationSource
from visionyard.export.reports import VariantReport, tag_summary
from visionyard.export.variants import Progress, VariantOptions, build_variants
from visionyard.registry import tags as T
from visionyard.runtime.variants import REFERENCE
from visionyard.settings import Settings

BUNDLE_DIR = T.BUNDLE_ARTIFACT
TAG_VARIANTS = T.VARIANTS
TAG_PREFIX = "vy.variant."


class VersionStore(Protocol):
    """What this module needs of :class:`visionyard.tracking.registry_client.RegistryClient`."""

    def get_version(self, name: str, version: str) -> Any: ...

    def download_version_artifacts(self, version: Any, path: str, dst: Path) -> Path: ...

    def upload_version_artifact(self, version: Any, local: Path, artifact_dir: str) -> str: ...

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...


def export_version(
    store: VersionStore,
    name: str,
    version: str,
    *,
    variants: str | Sequence[str],
    eval_set: EvalSet,
    calibration_set: CalibrationSource | None = None,
    options: VariantOptions | None = None,
    progress: Progress | None = None,
    workdir: Path,
) -> list[VariantReport]:
    """Build variants of version ``version`` of ``name``; store the kept ones on the version."""
    info = store.get_version(name, str(version))
    say = progress or (lambda _message: None)
    say(f"downloading the bundle of {name} version {version}")
    bundle_dir = store.download_version_artifacts(info, BUNDLE_DIR, workdir)
    before = dict(load_bundle(bundle_dir).files)
    reports = build_variants(
        bundle_dir,
        variants=variants,
        eval_set=eval_set,
        calibration_set=calibration_set,
        options=options,
        progress=progress,
    )
    after = load_bundle(bundle_dir)
    say("uploading the variants and reports")
    for rel in changed_files(before, after.files):
        store.upload_version_artifact(info, bundle_dir / rel, _artifact_dir(rel))
    for key, value in version_tags(reports, after.variants).items():
        store.set_version_tag(name, str(version), key, value)
    return reports


def changed_files(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Files that are new or different after the export, ``manifest.json`` last."""
    changed = sorted(rel for rel, info in after.items() if before.get(rel) != info)
    return [*changed, MANIFEST] if changed else []


def version_tags(reports: Sequence[VariantReport], stored: Mapping[str, str]) -> dict[str, str]:
    """The lineage tags of a version (see the module docstring)."""
    tags = {TAG_VARIANTS: ",".join(sorted(stored, key=_variant_order))}
    for report in reports:
        if report.name != REFERENCE:
            tags[TAG_PREFIX + report.name] = tag_summary(report)
    return tags


def export_registered(
    settings: Settings, name: str, version: str, workdir: Path, **kwargs: Any
) -> list[VariantReport]:
    """:func:`export_version` on the registry the settings point at."""
    from visionyard.tracking.registry_client import RegistryClient

    return export_version(
        RegistryClient.from_settings(settings), name, version, workdir=workdir, **kwargs
    )


def _artifact_dir(rel: str) -> str:
    parent = Path(rel).parent.as_posix()
    return BUNDLE_DIR if parent == "." else f"{BUNDLE_DIR}/{parent}"


def _variant_order(name: str) -> tuple[int, str]:
    return (0 if name == REFERENCE else 1, name)
