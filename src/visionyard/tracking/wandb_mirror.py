"""The Weights & Biases sink of the run mirror (:mod:`visionyard.tracking.mirror`).

What goes where in W&B:

* a tracked run -> a W&B run with the MLflow run id as its id, the MLflow experiment as its
  project (``tracking.wandb.project`` overrides); the environment, params and MLflow tags in
  its config; metrics in its history with an explicit ``step`` axis (visionyard logs some
  metrics at earlier steps than W&B's own counter, which W&B would drop);
* a dataset -> artifact ``dataset-<name>`` (type ``dataset``): the manifest file, references
  to its local images (W&B lists each file under ``images/``; past :data:`MAX_REFERENCED`
  images, one ``visionyard-dataset:<digest>`` reference instead), the digest in the metadata
  and as an alias ``sha256-<12 hex>``, and up to :data:`SAMPLES` sample images (one per label
  first) logged as ``samples/<name>``;
* PNG files logged as artifacts (the confusion matrix) -> images; a ``per_class.json`` with a
  confusion matrix -> a ``confusion_matrix`` table;
* the bundle -> artifact ``bundle-<run id>`` (type ``model``) with its files, the visionyard
  digest in the metadata and the alias ``sha256-<12 hex>``;
* a registry event -> a short W&B run (job type ``registry``, tagged with the event kind) that
  logs artifact ``<model name>`` (type ``model``) referencing ``models:/<name>/<version>``: a
  registration adds the alias ``mlflow-v<version>``, an alias move (promote, force, rollback)
  the registry alias itself (``production``...), which W&B moves from the previous holder,
  because every event of one version has the same content and so is the same artifact version.

``wandb`` is imported on the mirror's worker thread when the first event arrives.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionyard.errors import VisionyardError
from visionyard.settings import TrackingSettings
from visionyard.tracking.mirror import (
    BundleLogged,
    DatasetLogged,
    FilesLogged,
    Metrics,
    MirrorEvent,
    Params,
    RegistryEvent,
    RunEnded,
    RunStarted,
    Tags,
)

SAMPLES = 16
#: Larger datasets are referenced by digest only (W&B would stat every image).
MAX_REFERENCED = 20_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WandbMirrorError(RuntimeError):
    """W&B cannot take the run (its folder is not writable, no run was started)."""


class WandbSink:
    """Turns mirror events into W&B calls (see the module docstring)."""

    def __init__(self, settings: TrackingSettings) -> None:
        self._settings = settings
        self._run: Any = None
        self._wandb: Any = None
        self._tags: dict[str, str] = {}

    def handle(self, event: MirrorEvent) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, RegistryEvent):
            self._registry_event(event)
        elif isinstance(event, RunEnded):
            self._end(event)
        else:
            self._log(event, self._open_run())

    def _log(self, event: MirrorEvent, run: Any) -> None:
        if isinstance(event, Params):
            run.config.update(dict(event.values), allow_val_change=True)
        elif isinstance(event, Metrics):
            run.log({**event.values, "step": event.step})
        elif isinstance(event, Tags):
            self._tags.update(event.values)
            run.config.update({"mlflow_tags": dict(self._tags)}, allow_val_change=True)
        elif isinstance(event, DatasetLogged):
            self._dataset(event, run)
        elif isinstance(event, FilesLogged):
            self._files(event, run)
        elif isinstance(event, BundleLogged):
            self._bundle(event, run)

    # -- runs ----------------------------------------------------------------------------------
    def _start(self, event: RunStarted) -> None:
        tags = [_tag(f"{k.removeprefix('visionyard.')}={v}") for k, v in event.tags.items()]
        config = {
            "environment": dict(event.environment),
            "mlflow": {"run_id": event.run_id, "experiment": event.experiment},
        }
        self._run = self._init(
            id=event.run_id,
            name=event.run_name,
            project=self._settings.wandb.project or _name(event.experiment),
            job_type=event.job_type,
            tags=["visionyard", *tags],
            config=config,
        )
        self._run.define_metric("step")
        self._run.define_metric("*", step_metric="step")

    def _end(self, event: RunEnded) -> None:
        run, self._run = self._open_run(), None
        run.finish(exit_code=0 if event.status == "FINISHED" else 1)

    def _open_run(self) -> Any:
        if self._run is None:
            raise WandbMirrorError("no W&B run (it could not be started)")
        return self._run

    def _init(self, **kwargs: Any) -> Any:
        wandb = self._import()
        folder = _writable_dir(self._settings.wandb.dir)
        hook = sys.excepthook  # wandb.init replaces it; the run's end is ours to report
        try:
            return wandb.init(
                entity=self._settings.wandb.entity,
                dir=str(folder),
                mode=self._settings.wandb.mode,
                reinit="create_new",
                settings=wandb.Settings(console="off", save_code=False, silent=True),
                **kwargs,
            )
        finally:
            sys.excepthook = hook

    def _import(self) -> Any:
        if self._wandb is None:
            import wandb

            self._wandb = wandb
        return self._wandb

    # -- artifacts -----------------------------------------------------------------------------
    def _dataset(self, event: DatasetLogged, run: Any) -> None:
        wandb = self._import()
        manifest = json.loads(event.manifest_json)
        entries = manifest.get("entries") or []
        art = wandb.Artifact(
            f"dataset-{_name(event.name)}",
            type="dataset",
            metadata={
                "digest": event.digest,
                "context": event.context,
                "num_images": len(entries),
                "labels": list(manifest.get("labels") or []),
                "source": manifest.get("source"),
            },
        )
        with art.new_file("manifest.json", encoding="utf-8") as f:
            f.write(event.manifest_json)
        root = _local_root(manifest.get("source"))
        if root is not None and len(entries) <= MAX_REFERENCED:  # W&B lists every file
            art.add_reference(root.as_uri(), name="images", checksum=False)
        else:
            art.add_reference(f"visionyard-dataset:{event.digest}", name="images", checksum=False)
        run.log_artifact(art, aliases=["latest", _digest_alias(event.digest)])
        if root is not None and (images := _samples(root, entries, wandb)):
            run.log({f"samples/{_name(event.name)}": images})

    def _files(self, event: FilesLogged, run: Any) -> None:
        wandb = self._import()
        files = sorted(event.path.rglob("*")) if event.path.is_dir() else [event.path]
        prefix = event.artifact_path or "files"
        for path in files:
            if path.suffix.lower() == ".png":
                run.log({f"{prefix}/{path.stem}": wandb.Image(str(path))})
            elif path.name == "per_class.json":
                table = _confusion_table(path, wandb)
                if table is not None:
                    run.log({"confusion_matrix": table})

    def _bundle(self, event: BundleLogged, run: Any) -> None:
        wandb = self._import()
        digest = event.digest or _bundle_digest(event.path)
        art = wandb.Artifact(
            f"bundle-{_name(run.id)}",
            type="model",
            metadata={"visionyard.bundle_digest": digest, "mlflow_uri": event.mlflow_uri},
        )
        art.add_dir(str(event.path))
        aliases = ["latest"] + ([_digest_alias(digest)] if digest else [])
        run.log_artifact(art, aliases=aliases)

    # -- registry ------------------------------------------------------------------------------
    def _registry_event(self, event: RegistryEvent) -> None:
        wandb = self._import()
        body = {k: v for k, v in vars(event).items() if v not in (None, "", {})}
        run = self._init(
            name=f"{event.kind} {event.model} v{event.version}",
            project=self._settings.wandb.project or _name(self._settings.experiment),
            job_type="registry",
            tags=["visionyard", "registry", event.kind],
            config={"registry_event": body},
        )
        try:
            art = wandb.Artifact(
                _name(event.model), type="model", metadata=body, description=_describe(event)
            )
            uri = f"models:/{event.model}/{event.version}"
            art.add_reference(uri, name="bundle", checksum=False)
            alias = event.alias or f"mlflow-v{event.version}"
            run.log_artifact(art, aliases=["latest", alias], tags=[_tag(event.kind)])
        finally:
            run.finish()


def _writable_dir(configured: Path | None) -> Path:
    """W&B's folder, checked by writing to it: W&B itself silently falls back to the system
    temp folder, where nobody would look for the runs."""
    folder = configured or Path(os.environ.get("WANDB_DIR") or ".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise WandbMirrorError(
            f"the W&B folder {folder} is not writable ({exc.strerror or exc}); set "
            "tracking.wandb.dir or WANDB_DIR to a writable folder"
        ) from exc
    return folder


def _local_root(source: Any) -> Path | None:
    if not isinstance(source, str) or "://" in source:
        return None
    root = Path(source)
    return root if root.is_dir() else None


def _samples(root: Path, entries: list[Any], wandb: Any) -> list[Any]:
    """Up to :data:`SAMPLES` images, one per label first (in manifest order)."""
    firsts: dict[Any, Mapping[str, Any]] = {}
    for entry in entries:
        firsts.setdefault(entry.get("label"), entry)
    chosen = list(firsts.values())[:SAMPLES]
    chosen += [e for e in entries if e not in chosen][: SAMPLES - len(chosen)]
    return [
        wandb.Image(str(root / e["path"]), caption=str(e.get("label") or e["path"]))
        for e in chosen
        if (root / e["path"]).is_file()
    ]


def _confusion_table(path: Path, wandb: Any) -> Any:
    body = json.loads(path.read_text(encoding="utf-8"))
    matrix, labels = body.get("confusion_matrix"), body.get("labels")
    if not matrix or not labels:
        return None
    rows = [
        [labels[t], labels[p], int(count)]
        for t, row in enumerate(matrix)
        for p, count in enumerate(row)
    ]
    return wandb.Table(columns=["actual", "predicted", "count"], data=rows)


def _bundle_digest(path: Path) -> str | None:
    from visionyard.bundle.store import load_bundle

    try:
        return load_bundle(path).digest()
    except VisionyardError:  # MLflow took the folder as it is; so does the copy
        return None


def _describe(event: RegistryEvent) -> str:
    if event.alias is None:
        return f"{event.model} version {event.version} registered by {event.actor}"
    moved = f"from version {event.from_version} " if event.from_version else ""
    why = f": {event.reason}" if event.reason else ""
    return f"{event.kind} of {event.alias} {moved}to {event.version} by {event.actor}{why}"


def _digest_alias(digest: str) -> str:
    return "sha256-" + digest.removeprefix("sha256:")[:12]


def _name(text: str) -> str:
    """A W&B project/artifact name: letters, digits, ``.``, ``_``, ``-``."""
    return _UNSAFE.sub("-", text).strip("-") or "visionyard"


def _tag(text: str) -> str:
    return text[:64]
