"""Registered pipelines: register a spec as a new version of a model, resolve it for serving.

A pipeline version is stored like any version, so that promote, rollback, history, diff, gc,
``bundle verify`` and signatures work on it unchanged: a bundle registered from a run, recorded
by digest. The bundle has no ONNX model of its own (its manifest lists no variant):

    contract.json    the end result's contract: the detector's input and box decoding, labelled
                     by the classifier's labels (semver, ``models diff`` and gates read it)
    pipeline.yaml    the spec with every stage pinned (``PinnedSpec``)

Chosen over a tag-only record because the trust path (digest on the version, verification on
every load) then covers the spec too, and a registered pipeline is refused as a duplicate like
any bundle. The version also carries ``vy.kind = pipeline`` (the model too) and, per stage,
``vy.stage.<role>`` (as written in the spec) and ``vy.pinned.<role>`` (``NAME/VERSION``), so a
server can tell, without downloading anything, which stage versions it should serve now.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionyard.bundle.store import CONTRACT, Bundle, file_entry, load_bundle, seal
from visionyard.contract.schema import VisionContract
from visionyard.errors import ConfigError, NotFoundError, RegistryError
from visionyard.pipeline.runner import PipelineRunner, pipeline_contract
from visionyard.pipeline.spec import (
    ROLES,
    SPEC_FILE,
    Pinned,
    PinnedSpec,
    PipelineSpec,
    Stage,
    load_pinned,
    load_spec,
)
from visionyard.pipeline.validate import check_stage
from visionyard.registry import tags as T
from visionyard.registry.service import Registry
from visionyard.registry.views import parse_reference, resolve_version
from visionyard.runtime.session import InferenceSession
from visionyard.settings import Settings
from visionyard.tracking.registry_client import RegistryClient, VersionInfo

KIND = T.KIND
PIPELINE = T.PIPELINE_KIND
STAGE_TAG = "vy.stage."
PINNED_TAG = "vy.pinned."
CACHE_DIR = "serving-cache"


@dataclass(frozen=True)
class PipelineRegistration:
    name: str
    version: str
    semver: str
    spec: PinnedSpec


@dataclass(frozen=True)
class StageVersion:
    """A stage as served or evaluated: its role, ``NAME/VERSION`` and verified bundle."""

    role: str
    reference: str
    path: Path

    @property
    def version(self) -> str:
        return self.reference.rsplit("/", 1)[1]


@dataclass(frozen=True)
class ResolvedPipeline:
    """A pipeline version and the stage versions to run with it."""

    version: str
    path: Path  # the pipeline's own verified bundle
    spec: PinnedSpec
    stages: dict[str, StageVersion]

    @property
    def revision(self) -> str:
        return revision(self.version, {r: s.reference for r, s in self.stages.items()})


def revision(version: str, stages: dict[str, str]) -> str:
    """What a server compares to tell a change: the version and each stage's version."""
    return "+".join([version, *(stages[role] for role in ROLES)])


def is_pipeline(version: VersionInfo) -> bool:
    return version.tags.get(KIND) == PIPELINE


def register_pipeline(
    registry: Registry, spec_path: Path, name: str, *, force: bool = False
) -> PipelineRegistration:
    """Validate ``spec_path``, pin its stages and register it as a new version of ``name``."""
    spec = load_spec(spec_path)
    source = f"pipeline spec {spec_path}"
    _check_target(registry.client, name, spec)
    pinned, contracts = _pin(registry, spec, source)
    contract = pipeline_contract(contracts["detector"], contracts["classifier"])
    with tempfile.TemporaryDirectory(prefix="vy-pipeline-") as tmp:
        bundle = write_pipeline_bundle(Path(tmp) / "bundle", pinned, contract)
        run_id = _log_run(registry.settings, name, pinned, bundle)
    done = registry.register(run_id, name, force=force)
    version = done.version.version
    for key, value in pipeline_tags(spec, pinned).items():
        registry.client.set_version_tag(name, version, key, value)
    registry.client.set_model_tag(name, KIND, PIPELINE)
    return PipelineRegistration(name, version, done.semver, pinned)


def pipeline_tags(spec: PipelineSpec, pinned: PinnedSpec) -> dict[str, str]:
    tags = {KIND: PIPELINE}
    for role in ROLES:
        tags[STAGE_TAG + role] = str(getattr(spec, role))
        tags[PINNED_TAG + role] = str(getattr(pinned.pinned, role))
    return tags


def write_pipeline_bundle(directory: Path, spec: PinnedSpec, contract: VisionContract) -> Bundle:
    """A bundle holding the contract and the pinned spec, and no model (no variant)."""
    directory.mkdir(parents=True)
    (directory / CONTRACT).write_text(contract.to_json(), encoding="utf-8")
    (directory / SPEC_FILE).write_text(spec.to_yaml(), encoding="utf-8")
    table = {rel: file_entry(directory / rel) for rel in (CONTRACT, SPEC_FILE)}
    seal(directory, table, {}, {PIPELINE: spec.model_dump(mode="json")})
    return load_bundle(directory)


def read_pinned(bundle_dir: Path) -> PinnedSpec:
    """The pinned spec of a verified pipeline bundle."""
    if not (bundle_dir / SPEC_FILE).is_file():
        raise RegistryError(f"{bundle_dir} holds no {SPEC_FILE}: it is not a pipeline version")
    return load_pinned(bundle_dir / SPEC_FILE)


def show_pipeline(registry: Registry, reference: str) -> tuple[VersionInfo, PinnedSpec]:
    """The version ``reference`` points at and its pinned spec (``pipeline show``)."""
    version = resolve_version(registry.client, parse_reference(reference))
    if not is_pipeline(version):
        raise ConfigError(f"{version.name}/{version.version} is a model, not a pipeline")
    _, path = registry.fetch_bundle(f"{version.name}/{version.version}", _cache(registry))
    return version, read_pinned(path)


def pinned_stages(registry: Registry, spec: PinnedSpec) -> dict[str, StageVersion]:
    """Each stage's pinned version, fetched and verified (evaluation, gates)."""
    return {role: _fetch(registry, role, spec.pinned_stage(role)) for role in ROLES}


def live_stages(registry: Registry, spec: PinnedSpec) -> dict[str, StageVersion]:
    """Each stage's version to serve now: a stage written as ``REG@alias`` follows the alias,
    one written as ``REG/VERSION`` stays pinned."""
    return {role: _fetch(registry, role, _live(spec, role)) for role in ROLES}


def resolve_served(settings: Settings, reference: str, cache: Path) -> ResolvedPipeline | None:
    """For the server: the pipeline ``reference`` points at with its live stages; None when
    it points at a plain model."""
    registry = Registry(settings)
    version = resolve_version(registry.client, parse_reference(reference))
    if not is_pipeline(version):
        return None
    _, path = registry.fetch_bundle(f"{version.name}/{version.version}", cache)
    spec = read_pinned(path)
    stages = live_stages(registry, spec)
    for role, stage in stages.items():  # a followed alias may have moved to another task
        check_stage(
            role, stage.reference, load_bundle(stage.path).contract, f"pipeline {reference}"
        )
    return ResolvedPipeline(version.version, path, spec, stages)


def served_lookup(settings: Settings) -> Callable[[str], str]:
    """For the server's polls, without downloads, on one registry client kept for every poll:
    reference -> a plain model's version number, or a pipeline's :func:`revision` (its
    version and the version each stage resolves to now)."""
    client = RegistryClient.from_settings(settings)

    def lookup(reference: str) -> str:
        version = _poll(client, reference)
        if not is_pipeline(version):
            return version.version
        stages, tags = {}, version.tags
        for role in ROLES:
            written = tags.get(STAGE_TAG + role) or tags.get(PINNED_TAG + role, "")
            found = _poll(client, Stage.parse(role, written).reference)
            stages[role] = f"{found.name}/{found.version}"
        return revision(version.version, stages)

    return lookup


def _poll(client: RegistryClient, reference: str) -> VersionInfo:
    """An alias read through the alias; anything else (or an alias not found, for the error
    that names what exists) through :func:`resolve_version`."""
    parsed = parse_reference(reference)
    if parsed.alias is not None:
        found = client.version_by_alias(parsed.name, parsed.alias)
        if found is not None:
            return found
    return resolve_version(client, parsed)


def _live(spec: PinnedSpec, role: str) -> Stage:
    written = spec.stage(role)
    return written if written.alias else spec.pinned_stage(role)


def _pin(
    registry: Registry, spec: PipelineSpec, source: str
) -> tuple[PinnedSpec, dict[str, VisionContract]]:
    pins, contracts = {}, {}
    for stage in spec.stages():
        fetched = _fetch(registry, stage.role, stage, source)
        contract = load_bundle(fetched.path).contract
        check_stage(stage.role, fetched.reference, contract, source)
        pins[stage.role], contracts[stage.role] = fetched.reference, contract
    data = {**spec.model_dump(mode="json"), "pinned": Pinned.model_validate(pins).model_dump()}
    return PinnedSpec.model_validate(data), contracts


def _fetch(registry: Registry, role: str, stage: Stage, source: str = "pipeline") -> StageVersion:
    try:
        version = resolve_version(registry.client, parse_reference(stage.reference))
    except NotFoundError as exc:
        raise ConfigError(f"{source}: {role}: {stage.reference} does not resolve: {exc}") from exc
    if is_pipeline(version):
        raise ConfigError(f"{source}: {role}: {stage.reference} is a pipeline, not a model")
    ref = f"{version.name}/{version.version}"
    _, path = registry.fetch_bundle(ref, _cache(registry))
    return StageVersion(role, ref, path)


def _check_target(client: RegistryClient, name: str, spec: PipelineSpec) -> None:
    """A pipeline is registered under a model that holds pipelines (or a new one)."""
    if name in {stage.name for stage in spec.stages()}:
        raise ConfigError(f"--name {name}: a pipeline cannot be registered under its own stage")
    try:
        model = client.get_model(name)
    except NotFoundError:
        return
    if model.latest_version is not None and model.tags.get(KIND) != PIPELINE:
        raise ConfigError(f"--name {name}: {name} holds models, not pipelines; choose another name")


def _log_run(settings: Settings, name: str, spec: PinnedSpec, bundle: Bundle) -> str:
    from visionyard.tracking import start_run

    params = {f"pipeline.{role}": getattr(spec.pinned, role) for role in ROLES}
    tags = {"visionyard.pipeline": name}
    with start_run(settings=settings, run_name=f"pipeline {name}", tags=tags) as run:
        run.log_params({**params, "pipeline.min_score": spec.min_score,
                        "pipeline.max_crops": spec.max_crops,
                        "pipeline.crop.padding": spec.crop.padding,
                        "pipeline.crop.min_size": spec.crop.min_size})  # fmt: skip
        run.log_bundle(bundle)
        return run.run_id


def _cache(registry: Registry) -> Path:
    return Path(registry.settings.home) / CACHE_DIR


def open_pinned(registry: Registry, reference: str) -> PipelineRunner:
    """The pipeline version ``reference`` points at, on its PINNED stages (evaluation: the
    version is scored as registered, whatever its stage aliases point at now)."""
    version, spec = show_pipeline(registry, reference)
    stages = pinned_stages(registry, spec)
    sessions = {role: InferenceSession.open(stage.path) for role, stage in stages.items()}
    versions = {role: stage.reference for role, stage in stages.items()}
    return PipelineRunner(spec, sessions["detector"], sessions["classifier"], versions)
