"""The run API for users' own training loops.

::

    with visionyard.start_run("cifar-resnet", seed=0) as run:
        run.log_params({"lr": 0.1, "epochs": 30})
        for step in range(steps):
            run.log_metrics(step, {"loss": loss, "acc": acc})   # buffered, batched
        run.log_dataset(manifest, name="train")
        run.log_bundle("out/bundle")

Metrics go through a :class:`~visionyard.tracking.buffer.MetricBuffer` (flushed on size, on
time, at the end, on exceptions, at interpreter exit and on SIGTERM), so a crashing script
loses nothing it logged. The run ends FINISHED, FAILED (exception, ``sys.exit(non-zero)``) or
KILLED (Ctrl-C, SIGTERM). Every run records its environment (see
:mod:`visionyard.tracking.environment`).
"""

from __future__ import annotations

import atexit
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

from visionyard.errors import NotFoundError, TrackingError
from visionyard.settings import Settings, load_settings
from visionyard.tracking import mirror as mirrors
from visionyard.tracking.buffer import MetricBuffer, Point
from visionyard.tracking.environment import capture_environment, environment_tags, os_user
from visionyard.tracking.payloads import (
    bundle_source,
    check_bundle_dir,
    contract_record,
    dataset_record,
)
from visionyard.tracking.store import TrackingConfig, connect, ensure_experiment
from visionyard.tracking.translate import translate_errors

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
MAX_PER_BATCH = 100  # params/tags per log_batch (mlflow's limit)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
log = logging.getLogger("visionyard.tracking")


class TrackedRun:
    """One MLflow run, open until :meth:`end` (or the end of its ``with`` block)."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        experiment_id: str,
        config: TrackingConfig,
        mirror: mirrors.Mirror | None = None,
    ) -> None:
        self.run_id = run_id
        self._mirror = mirror  # a copy of the run to W&B (tracking.mirror); never fails it
        self.experiment_id = experiment_id
        self.config = config
        self._client = client
        self._io = threading.RLock()
        self._buffer = MetricBuffer(
            self._write_points,
            max_points=config.flush_points,
            interval_s=config.flush_interval_s,
        )
        self._status: RunStatus | None = None
        self._signalled = False
        self._previous_sigterm: Any = None
        atexit.register(self._at_exit)
        self._install_sigterm()

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(self._status_for(exc), raise_errors=exc is None)

    @property
    def ended(self) -> bool:
        return self._status is not None

    @property
    def artifact_uri(self) -> str:
        """``runs:/<run_id>`` (append ``/bundle`` etc. for one artifact folder)."""
        return f"runs:/{self.run_id}"

    # -- params, metrics, tags ---------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (values become strings; dicts and lists as JSON)."""
        items = [Param(str(k), _param_text(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_PER_BATCH):
            self._call(
                "log parameters",
                self._client.log_batch,
                self.run_id,
                params=items[start : start + MAX_PER_BATCH],
                synchronous=True,
            )
        self._mirrored(mirrors.Params(dict(params)))

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer one point per metric at ``step``; written in batches (see module docs)."""
        self._check_open()
        now = int(time.time() * 1000)
        self._buffer.add(
            [(str(k), _number(k, v, step), now, int(step)) for k, v in metrics.items()]
        )
        self._mirrored(mirrors.Metrics(int(step), {str(k): float(v) for k, v in metrics.items()}))

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.log_metrics(step, {key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        for start in range(0, len(items), MAX_PER_BATCH):
            self._call(
                "set tags",
                self._client.log_batch,
                self.run_id,
                tags=items[start : start + MAX_PER_BATCH],
                synchronous=True,
            )
        self._mirrored(mirrors.Tags({t.key: t.value for t in items}))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def flush(self) -> None:
        """Write every buffered metric point now."""
        with translate_errors(self.config.tracking_uri, "write metrics"):
            self._buffer.flush()

    # -- artifacts ---------------------------------------------------------------------------
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file, or a directory's contents, under ``artifact_path``."""
        self._upload(Path(path), artifact_path)
        self._mirrored(mirrors.FilesLogged(Path(path), artifact_path))

    def _upload(self, local: Path, artifact_path: str | None) -> None:
        if not local.exists():
            raise NotFoundError("artifact", str(local))
        upload = self._client.log_artifacts if local.is_dir() else self._client.log_artifact
        self._call(f"upload {local}", upload, self.run_id, str(local), artifact_path)

    def log_dict(self, obj: Any, name: str) -> None:
        """Write ``obj`` as JSON (or YAML for ``.yaml``/``.yml``) to artifact file ``name``."""
        self._call(f"write {name}", self._client.log_dict, self.run_id, obj, name)

    log_json = log_dict

    def log_text(self, text: str, name: str) -> None:
        self._call(f"write {name}", self._client.log_text, self.run_id, text, name)

    def log_figure_png(self, path: str | Path, artifact_path: str = "figures") -> None:
        """Upload a PNG figure (checked by signature) under ``figures/``."""
        local = Path(path)
        try:
            head = local.read_bytes()[: len(PNG_SIGNATURE)]
        except FileNotFoundError as exc:
            raise NotFoundError("figure", str(local)) from exc
        if head != PNG_SIGNATURE:
            raise TrackingError(f"{local} is not a PNG image; save the figure as PNG first")
        self.log_artifact(local, artifact_path)

    def log_dataset(self, manifest: Any, *, name: str, context: str = "training") -> None:
        """Log a dataset manifest as an MLflow dataset input (digest shown in the UI) and as
        the artifact ``datasets/<name>/manifest.json``; tag ``visionyard.dataset.<name>``."""
        record = dataset_record(manifest, name)
        dataset = Dataset(
            name=name,
            digest=record.mlflow_digest,
            source_type="local",
            source=record.source,
            schema=record.schema,
            profile=record.profile,
        )
        tags = [
            InputTag("mlflow.data.context", context),
            InputTag("visionyard.digest", record.digest),
        ]
        self._call(
            "log the dataset input",
            self._client.log_inputs,
            self.run_id,
            datasets=[DatasetInput(dataset, tags=tags)],
        )
        self.log_text(record.manifest_json, f"datasets/{name}/manifest.json")
        self.set_tags({f"visionyard.dataset.{name}": record.digest})
        self._mirrored(mirrors.DatasetLogged(name, record.digest, context, record.manifest_json))

    def log_contract(self, contract: Any) -> None:
        """Log the vision contract as ``contract/contract.json``; tag its digest."""
        record = contract_record(contract)
        self.log_text(record.json_text, "contract/contract.json")
        self.set_tags({"visionyard.contract_digest": record.digest})

    def log_bundle(self, bundle: str | Path | Any) -> str:
        """Upload a bundle (its directory, or a loaded ``Bundle``) under ``bundle/``; tag its
        file count and digest; returns the ``runs:/<id>/bundle`` URI."""
        bundle_dir, digest = bundle_source(bundle)
        files = check_bundle_dir(bundle_dir)
        self._upload(bundle_dir, "bundle")
        self._mirrored(mirrors.BundleLogged(bundle_dir, digest, f"{self.artifact_uri}/bundle"))
        tags: dict[str, Any] = {
            "visionyard.bundle": "bundle",
            "visionyard.bundle_files": len(files),
        }
        if digest:
            tags["visionyard.bundle_digest"] = digest
        self.set_tags(tags)
        return f"{self.artifact_uri}/bundle"

    # -- end of run --------------------------------------------------------------------------
    def end(self, status: RunStatus = "FINISHED", *, raise_errors: bool = True) -> None:
        """Flush metrics and mark the run ``status``; idempotent. A failed flush marks the run
        FAILED and raises (unless ``raise_errors`` is false: an exception is already leaving)."""
        with self._io:
            if self._status is not None:
                return
            self._status = status
        atexit.unregister(self._at_exit)
        self._restore_sigterm()
        error: TrackingError | None = None
        try:
            with translate_errors(self.config.tracking_uri, "write metrics"):
                self._buffer.close()
        except TrackingError as exc:
            error, status = exc, "FAILED"
        try:
            self._call("end the run", self._client.set_terminated, self.run_id, status)
        except TrackingError as exc:
            error = error or exc
        if self._mirror is not None:  # bounded wait; what was not sent is one warning
            self._mirror.send(mirrors.RunEnded(status))
            self._mirror.close(f"MLflow run {self.run_id}")
        if error is None:
            return
        if raise_errors:
            raise error
        log.warning("run %s: %s", self.run_id, error)

    def _status_for(self, exc: BaseException | None) -> RunStatus:
        if exc is None:
            return "FINISHED"
        if self._signalled or isinstance(exc, KeyboardInterrupt):
            return "KILLED"
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return "FINISHED"
        return "FAILED"

    def _at_exit(self) -> None:
        """Interpreter exit with the run still open: FAILED after an uncaught exception."""
        if not self.ended:
            crashed = getattr(sys, "last_value", None) is not None
            self.end("FAILED" if crashed else "FINISHED", raise_errors=False)

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _restore_sigterm(self) -> None:
        if (
            self._previous_sigterm is None
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True
        raise SystemExit(128 + signum)  # unwinds the with-block, which flushes and ends KILLED

    # -- plumbing ----------------------------------------------------------------------------
    def _mirrored(self, event: mirrors.MirrorEvent) -> None:
        if self._mirror is not None:
            self._mirror.send(event)

    def _write_points(self, points: Sequence[Point]) -> None:
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in points]
        self._call(
            "write metrics", self._client.log_batch, self.run_id, metrics=metrics, synchronous=True
        )

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._io, translate_errors(self.config.tracking_uri, action):
            return fn(*args, **kwargs)

    def _check_open(self) -> None:
        if self._status is not None:
            raise TrackingError(f"run {self.run_id} has ended ({self._status}); start a new run")


def start_run(
    experiment: str | None = None,
    *,
    settings: Settings | None = None,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    seed: int | None = None,
    description: str | None = None,
) -> TrackedRun:
    """Open a run in ``experiment`` (default ``settings.tracking.experiment``); use it as a
    context manager. ``settings`` defaults to :func:`~visionyard.settings.load_settings`."""
    settings = settings or load_settings().settings
    config = TrackingConfig.from_settings(settings)
    mirror = mirrors.open_mirror(settings)  # W&B missing: refused before any run exists
    client = connect(config, create=True)
    experiment_id = ensure_experiment(client, config, experiment or config.experiment)
    env = capture_environment(seed)
    all_tags = {**_system_tags(env, description), **environment_tags(env), **(tags or {})}
    with translate_errors(config.tracking_uri, "create the run"):
        created = client.create_run(
            experiment_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()}
        )
    run = TrackedRun(client, created.info.run_id, experiment_id, config, mirror)
    name = experiment or config.experiment
    run._mirrored(mirrors.RunStarted(run.run_id, name, run_name, dict(tags or {}), env))
    try:
        run.log_dict(env, "environment.json")
    except BaseException:
        run.end("FAILED", raise_errors=False)
        raise
    return run


def _system_tags(env: Mapping[str, Any], description: str | None) -> dict[str, str]:
    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": str(env["command"])[:500],
        "mlflow.user": os_user(),
    }
    if env.get("git_commit"):
        tags["mlflow.source.git.commit"] = str(env["git_commit"])
    if description:
        tags["mlflow.note.content"] = description
    return tags


def _param_text(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def _number(key: Any, value: Any, step: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TrackingError(f"metric {key!r} at step {step} is not a number: {value!r}") from exc
