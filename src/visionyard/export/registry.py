"""Variants of a registered model version: built on its bundle, stored BESIDE it.

A registered version's files never change. ``visionyard export NAME VERSION`` downloads the
version and checks it against the digests the registry recorded
(:func:`visionyard.registry.trust.materialize`), builds and measures the variants
(:func:`~visionyard.export.variants.measure_variants`), and stores each kept variant as a pack
of its own under ``variants/<name>/<digest>/`` (:mod:`visionyard.bundle.packs`), then records
the pack's digest on the version (signed when ``registry.signing_key`` is set), and last the
lineage tags ``models show`` lists::

    vy.variant_digest.int8 = "<pack digest>"                        (what every load checks)
    vy.variants            = "fp32,int8"                            (what the version holds now)
    vy.variant.int8        = "passed accuracy -0.3pt 2.80x 11.2MB"
    vy.variant.fp16        = "rejected accuracy -2.1pt 0.40x 22.4MB" (measured, not stored)

The FP32 reference's measurements (what each variant was compared with) are a pack too
(``variants/fp32/``, no model). A variant the version already records is never replaced: build
it on a new version instead. A pack uploaded by an export killed before its digest was recorded
is not trusted by any load, and the next export of that variant replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from visionyard.bundle.packs import write_pack
from visionyard.errors import ExportError
from visionyard.export.evaluation import EvalSet
from visionyard.export.quantize import CalibrationSource
from visionyard.export.reports import VariantReport, tag_summary
from visionyard.export.variants import (
    Built,
    Progress,
    VariantOptions,
    measure_variants,
    parse_variants,
)
from visionyard.registry import tags as T
from visionyard.registry.trust import (
    materialize,
    pack_location,
    record_of,
    signature_tags,
    variant_piece,
)
from visionyard.runtime.variants import REFERENCE
from visionyard.settings import Settings
from visionyard.tracking.registry_client import VersionInfo

TAG_VARIANTS = T.VARIANTS
TAG_PREFIX = "vy.variant."


class VersionStore(Protocol):
    """What this module needs of :class:`visionyard.tracking.registry_client.RegistryClient`."""

    def get_version(self, name: str, version: str) -> VersionInfo: ...

    def download_version_artifacts(self, version: VersionInfo, path: str, dst: Path) -> Path: ...

    def upload_version_artifact(
        self, version: VersionInfo, local: Path, artifact_dir: str
    ) -> str: ...

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
    signing_key: str | None = None,
) -> list[VariantReport]:
    """Build variants of version ``version`` of ``name``; store the kept ones beside it."""
    info = store.get_version(name, str(version))
    say = progress or (lambda _message: None)
    say(f"downloading and verifying {name} version {version}")
    bundle = materialize(store, info, workdir / "version", signing_key)
    wanted = parse_variants(variants)
    try:
        _refuse_existing(info, wanted, bundle.variants)
    finally:  # a retry after a kill also completes the lineage the killed export left behind
        _sync_variants_tag(store, name, str(version), bundle.variants)
    built = measure_variants(
        bundle, variants=wanted, eval_set=eval_set, calibration_set=calibration_set,
        options=options, progress=progress,
    )  # fmt: skip
    say("storing the variants beside the version")
    recorded = record_of(info).variants
    for item in built:
        if item.report.stored and item.report.name not in recorded:
            _store_pack(store, info, item, workdir / "packs", signing_key)
    for key, value in version_tags([b.report for b in built], []).items():
        if key != TAG_VARIANTS:
            store.set_version_tag(name, str(version), key, value)
    _sync_variants_tag(store, name, str(version), bundle.variants)
    return [b.report for b in built]


def version_tags(reports: Sequence[VariantReport], held: Iterable[str]) -> dict[str, str]:
    """The lineage tags of a version (see the module docstring)."""
    tags = {TAG_VARIANTS: ",".join(sorted(set(held), key=_variant_order))}
    for report in reports:
        if report.name != REFERENCE:
            tags[TAG_PREFIX + report.name] = tag_summary(report)
    return tags


def export_registered(
    settings: Settings, name: str, version: str, workdir: Path, **kwargs: Any
) -> list[VariantReport]:
    """:func:`export_version` on the registry the settings point at; each report is also an
    MLflow run linked to the version (:mod:`visionyard.export.mlflow_record`)."""
    from visionyard.export.mlflow_record import record_export
    from visionyard.tracking.registry_client import RegistryClient

    reports = export_version(
        RegistryClient.from_settings(settings), name, version, workdir=workdir,
        signing_key=settings.registry.signing_key, **kwargs,
    )  # fmt: skip
    record_export(settings, name, version, reports)
    return reports


def _sync_variants_tag(store: VersionStore, name: str, version: str, own: Iterable[str]) -> None:
    """``vy.variants`` from what the registry records now (the bundle's own variants and every
    recorded pack), so racing or interrupted exports cannot leave it wrong."""
    recorded = record_of(store.get_version(name, version)).variants
    held = version_tags([], [*own, *recorded])[TAG_VARIANTS]
    store.set_version_tag(name, version, TAG_VARIANTS, held)


def _refuse_existing(info: VersionInfo, wanted: Sequence[str], held: Mapping[str, str]) -> None:
    existing = [n for n in wanted if n != REFERENCE and n in held]
    if existing:
        raise ExportError(
            f"version {info.version} of {info.name!r} already has variant(s) "
            f"{', '.join(existing)}; a registered version's files never change: export the "
            "other variants, or build these on a new version"
        )


def _store_pack(
    store: VersionStore, info: VersionInfo, item: Built, root: Path, key: str | None
) -> None:
    report = item.report
    base = record_of(info).bundle_digest
    body = (json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()
    pack = write_pack(
        root / report.name, name=report.name, base_digest=base, model=item.model,
        summary=report.summary(), report=body,
    )  # fmt: skip
    digest = pack.digest()
    piece = variant_piece(report.name)
    for path in sorted(pack.path.iterdir()):  # its own folder: racing exports never mix files
        store.upload_version_artifact(info, path, pack_location(report.name, digest))
    # the signature first: the digest tag is what makes the pack trusted, so it comes last
    tags = signature_tags(key, info.name, info.version, piece, digest)
    tags[T.VARIANT_DIGEST_PREFIX + report.name] = digest
    for tag, value in tags.items():
        store.set_version_tag(info.name, info.version, tag, value)


def _variant_order(name: str) -> tuple[int, str]:
    return (0 if name == REFERENCE else 1, name)
