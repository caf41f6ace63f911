"""Register: a run's bundle becomes a version of a registered model.

The bundle logged under the run's ``bundle/`` artifact is downloaded and verified (against the
digest the run recorded when it logged the bundle, when it did), refused when the same bundle
(same digest) is already a version of the model (unless forced), given a semantic version
(:mod:`visionyard.registry.semver`) and logged as a stock MLflow ONNX model whose ONNX file is
the bundle's own (stored once). The bundle's digest is recorded on the version
(``vy.bundle_digest``, signed when ``registry.signing_key`` is set): from then on the version's
files never change, and every load is checked against it (:mod:`visionyard.registry.trust`).
Two registrations of the same bundle racing can both pass the duplicate check; the later one is
still a valid version, and ``gc`` can remove it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from visionyard.bundle.store import Bundle, load_bundle
from visionyard.errors import BundleError, ConfigError, NotFoundError, RegistryError
from visionyard.registry import tags as T
from visionyard.registry.semver import Fingerprint, fingerprint, next_semver, parse_semver
from visionyard.registry.trust import METADATA_PIECE, signature_tags
from visionyard.tracking.mlflow_model import build_model_dir, scratch_dir
from visionyard.tracking.queries import RunInfo
from visionyard.tracking.registry_client import RegistryClient, VersionInfo


@dataclass(frozen=True)
class RegisterRequest:
    run_id: str
    name: str
    actor: str
    semver: str | None = None
    force: bool = False
    parent: str | None = None
    description: str = ""
    signing_key: str | None = None


@dataclass(frozen=True)
class Registration:
    version: VersionInfo
    semver: str
    semver_reason: str
    bundle_digest: str
    duplicates: tuple[str, ...]


def register_run(client: RegistryClient, request: RegisterRequest) -> Registration:
    """Register the bundle of ``request.run_id`` as a new version of ``request.name``."""
    run = client.get_run(request.run_id)
    with scratch_dir() as tmp:
        bundle = _download_bundle(client, run, tmp / "download")
        digest = bundle.digest()
        _check_kind(client, request.name, bundle)
        existing = _existing_versions(client, request.name)
        duplicates = tuple(v.version for v in existing if v.tags.get(T.BUNDLE_DIGEST) == digest)
        if duplicates and not request.force:
            raise RegistryError(
                f"this bundle (digest {digest[:12]}) is already version "
                f"{', '.join(duplicates)} of {request.name!r}; pass --force to register it again"
            )
        semver, why = _semver(existing, fingerprint(bundle.contract), request.semver)
        tags = version_tags(run, bundle, request, semver, why)
        model_dir = _model_dir(bundle, tmp / "model", {"model": request.name, "run_id": run.run_id})
        version = client.create_version(request.name, run, model_dir, tags)
    signed = signature_tags(request.signing_key, request.name, version.version, "bundle", digest)
    signed |= signature_tags(
        request.signing_key, request.name, version.version, METADATA_PIECE,
        bundle.metadata_digest(),
    )  # fmt: skip
    for key, value in signed.items():
        client.set_version_tag(request.name, version.version, key, value)
    client.set_model_tag(request.name, T.TASK, bundle.contract.task)
    return Registration(version, semver, why, digest, duplicates)


def _check_kind(client: RegistryClient, name: str, bundle: Bundle) -> None:
    """A model's version is not registered under a name that holds pipelines (``pipeline
    register`` refuses the other way round)."""
    try:
        kind = client.get_model(name).tags.get(T.KIND)
    except NotFoundError:
        return
    if kind == T.PIPELINE_KIND and bundle.variants:  # a pipeline's own bundle has no model
        raise ConfigError(f"--name {name}: {name} holds pipelines, not models; choose another name")


def version_tags(
    run: RunInfo, bundle: Bundle, request: RegisterRequest, semver: str, why: str
) -> dict[str, str]:
    """The tags every version carries (see :mod:`visionyard.registry.tags`)."""
    fp = fingerprint(bundle.contract)
    tags = {
        T.SEMVER: semver,
        T.SEMVER_REASON: why,
        T.TASK: bundle.contract.task,
        T.BUNDLE_DIGEST: bundle.digest(),
        T.METADATA_DIGEST: bundle.metadata_digest(),
        T.CONTRACT_DIGEST: bundle.contract.digest(),
        T.LABELS_DIGEST: fp.labels_digest,
        T.INPUT_DIGEST: fp.input_digest,
        T.DATASET_DIGEST: dataset_digest(run.tags, bundle.metadata) or "unknown",
        T.GIT_COMMIT: run.tags.get("mlflow.source.git.commit") or "unknown",
        T.VARIANTS: ",".join(sorted(bundle.variants)),
        T.REGISTERED_BY: request.actor,
    }
    parent = request.parent or run.tags.get(T.RUN_PARENT)
    if parent:
        tags[T.PARENT] = parent
    return tags


def dataset_digest(run_tags: Mapping[str, str], metadata: Mapping[str, object]) -> str | None:
    """The training dataset's manifest digest: the run's ``visionyard.dataset.train`` tag, else
    its only dataset tag, else the bundle metadata's ``dataset_digest``."""
    datasets = {k: v for k, v in run_tags.items() if k.startswith(T.RUN_DATASET_PREFIX)}
    train = datasets.get(T.RUN_DATASET_PREFIX + "train")
    if train:
        return train
    if len(datasets) == 1:
        return next(iter(datasets.values()))
    value = metadata.get("dataset_digest")
    return str(value) if value else None


def fingerprint_of(version: VersionInfo) -> Fingerprint | None:
    """The semver fingerprint stored on a version (None for versions made by other tools)."""
    tags = version.tags
    if not all(tags.get(k) for k in (T.TASK, T.LABELS_DIGEST, T.INPUT_DIGEST)):
        return None
    return Fingerprint(tags[T.TASK], tags[T.LABELS_DIGEST], tags[T.INPUT_DIGEST])


def _download_bundle(client: RegistryClient, run: RunInfo, dst: Path) -> Bundle:
    try:
        path = client.download_run_artifacts(run.run_id, T.BUNDLE_ARTIFACT, dst)
    except (NotFoundError, RegistryError) as exc:
        raise BundleError(dst, f"run {run.run_id} has no bundle/ artifact to register") from exc
    if not path.is_dir() or not any(path.iterdir()):
        raise BundleError(path, f"run {run.run_id} has no bundle/ artifact to register")
    try:
        return load_bundle(path, expected_digest=run.tags.get(T.RUN_BUNDLE_DIGEST) or None)
    except BundleError as exc:
        raise type(exc)(f"the bundle/ of run {run.run_id}", exc.problem) from exc


def _existing_versions(client: RegistryClient, name: str) -> list[VersionInfo]:
    try:
        client.get_model(name)
    except NotFoundError:
        return []
    return client.list_versions(name)


def _semver(existing: list[VersionInfo], new: Fingerprint, explicit: str | None) -> tuple[str, str]:
    known = [v.tags[T.SEMVER] for v in existing if _is_semver(v.tags.get(T.SEMVER))]
    highest = max(known, key=parse_semver) if known else None
    newest = fingerprint_of(existing[0]) if existing else None
    return next_semver(highest, newest, new, explicit=explicit, taken=known)


def _is_semver(text: str | None) -> bool:
    try:
        return text is not None and bool(parse_semver(text))
    except RegistryError:
        return False


def _model_dir(bundle: Bundle, target: Path, owner: dict[str, str]) -> Path:
    if not bundle.variants:  # no ONNX of its own (a pipeline): the bundle alone, no MLmodel
        shutil.copytree(bundle.path, target / T.BUNDLE_ARTIFACT)
        return target
    pre = bundle.contract.preprocessing
    size = (pre.input_size.height, pre.input_size.width)
    shape = [-1, 3, *size] if pre.layout == "NCHW" else [-1, *size, 3]
    return build_model_dir(
        bundle.path, bundle.model_path(), target, shape, bundle.contract.input_name, pre.dtype,
        owner,
    )  # fmt: skip
