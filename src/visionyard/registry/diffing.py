"""``models diff NAME V1 V2``: what changed between two versions.

Params and metrics (overall and per class, ``name/label``) come from the source runs; dataset
changes from the runs' dataset manifests (images added, removed, changed, relabelled, moved);
contract changes from the versions' bundles (breaking or not); environment changes from the
runs' ``environment.json``. A side that is missing (a run without manifests) is reported as
such rather than guessed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionyard.contract.diff import FieldChange, diff_contracts, flatten
from visionyard.contract.schema import load_contract
from visionyard.data.diff import diff_manifests
from visionyard.data.manifest import DatasetManifest
from visionyard.errors import VisionyardError
from visionyard.registry import tags as T
from visionyard.tracking.mlflow_model import scratch_dir
from visionyard.tracking.queries import RunInfo
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

_TAGS = (T.SEMVER, T.TASK, T.DATASET_DIGEST, T.CONTRACT_DIGEST, T.BUNDLE_DIGEST, T.GIT_COMMIT,
         T.VARIANTS, T.PARENT)  # fmt: skip


@dataclass(frozen=True)
class ValueChange:
    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class DatasetChange:
    name: str
    digest_a: str | None
    digest_b: str | None
    summary: dict[str, Any] | None
    examples: dict[str, list[str]] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class VersionDiff:
    name: str
    a: str
    b: str
    tags: list[ValueChange]
    params: list[ValueChange]
    metrics: list[ValueChange]
    class_metrics: list[ValueChange]
    datasets: list[DatasetChange]
    contract: list[FieldChange]
    environment: list[ValueChange]

    @property
    def contract_breaking(self) -> bool:
        return any(change.breaking for change in self.contract)


def diff_mappings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[ValueChange]:
    """Keys whose values differ (absent on one side = None), in sorted key order."""
    keys = sorted(set(a) | set(b))
    return [ValueChange(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def diff_versions(client: RegistryClient, name: str, v1: str, v2: str) -> VersionDiff:
    """Compare versions ``v1`` and ``v2`` of ``name``."""
    a, b = client.get_version(name, v1), client.get_version(name, v2)
    run_a, run_b = _run(client, a), _run(client, b)
    metrics = diff_mappings(run_a.metrics if run_a else {}, run_b.metrics if run_b else {})
    with scratch_dir() as tmp:
        return VersionDiff(
            name=name,
            a=a.version,
            b=b.version,
            tags=diff_mappings(_pick(a.tags), _pick(b.tags)),
            params=diff_mappings(run_a.params if run_a else {}, run_b.params if run_b else {}),
            metrics=[m for m in metrics if "/" not in m.key],
            class_metrics=[m for m in metrics if "/" in m.key],
            datasets=_datasets(client, run_a, run_b, tmp),
            contract=_contract(client, a, b, tmp),
            environment=diff_mappings(
                _env(client, run_a, tmp / "a"), _env(client, run_b, tmp / "b")
            ),
        )


def dataset_change(name: str, a: DatasetManifest, b: DatasetManifest) -> DatasetChange:
    """Summary and a few example paths of each kind of difference between two manifests."""
    diff = diff_manifests(a, b)
    examples = {
        "added": [e.path for e in diff.added[:5]],
        "removed": [e.path for e in diff.removed[:5]],
        "relabelled": [f"{r.path_b}: {r.labels_a} -> {r.labels_b}" for r in diff.relabelled[:5]],
        "changed": [c.path for c in diff.changed[:5]],
    }
    return DatasetChange(name, a.digest, b.digest, diff.summary(), examples)


def _datasets(
    client: RegistryClient, run_a: RunInfo | None, run_b: RunInfo | None, tmp: Path
) -> list[DatasetChange]:
    tags_a, tags_b = _dataset_tags(run_a), _dataset_tags(run_b)
    changes = []
    for name in sorted(set(tags_a) | set(tags_b)):
        da, db = tags_a.get(name), tags_b.get(name)
        if da == db:
            changes.append(DatasetChange(name, da, db, None, note="identical"))
            continue
        ma = _manifest(client, run_a, name, tmp / "ma") if da else None
        mb = _manifest(client, run_b, name, tmp / "mb") if db else None
        if ma is None or mb is None:
            note = "only in one version" if not (da and db) else "manifest not available"
            changes.append(DatasetChange(name, da, db, None, note=note))
        else:
            changes.append(dataset_change(name, ma, mb))
    return changes


def _dataset_tags(run: RunInfo | None) -> dict[str, str]:
    if run is None:
        return {}
    prefix = T.RUN_DATASET_PREFIX
    return {k.removeprefix(prefix): v for k, v in run.tags.items() if k.startswith(prefix)}


def _manifest(
    client: RegistryClient, run: RunInfo | None, name: str, dst: Path
) -> DatasetManifest | None:
    if run is None:
        return None
    try:
        path = client.download_run_artifacts(run.run_id, f"datasets/{name}/manifest.json", dst)
        return DatasetManifest.load(path)
    except VisionyardError:
        return None


def _contract(
    client: RegistryClient, a: VersionInfo, b: VersionInfo, tmp: Path
) -> list[FieldChange]:
    if a.tags.get(T.CONTRACT_DIGEST) and a.tags.get(T.CONTRACT_DIGEST) == b.tags.get(
        T.CONTRACT_DIGEST
    ):
        return []
    path = f"{T.BUNDLE_ARTIFACT}/contract.json"
    ca = load_contract(client.download_version_artifacts(a, path, tmp / "ca"))
    cb = load_contract(client.download_version_artifacts(b, path, tmp / "cb"))
    return list(diff_contracts(ca, cb).changes)


def _env(client: RegistryClient, run: RunInfo | None, dst: Path) -> dict[str, Any]:
    if run is None:
        return {}
    try:
        path = client.download_run_artifacts(run.run_id, "environment.json", dst)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (VisionyardError, OSError, ValueError):
        return {}
    return flatten(data) if isinstance(data, dict) else {}


def _run(client: RegistryClient, version: VersionInfo) -> RunInfo | None:
    if not version.run_id:
        return None
    try:
        return client.get_run(version.run_id)
    except VisionyardError:
        return None


def _pick(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k in _TAGS}
