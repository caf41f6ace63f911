"""The MLflow model registry as plain values, for :mod:`visionyard.registry` (the policy side).

Everything MLflow-specific about registered models lives here; every call is wrapped by
:func:`~visionyard.tracking.translate.translate_errors`, and a missing model, version or alias
becomes :class:`~visionyard.errors.NotFoundError`.

A registered version is a stock MLflow model (ONNX flavor) logged as an MLflow 3 *logged model*
of the source run, so ``mlflow.pyfunc.load_model("models:/NAME@production")`` and
``mlflow models serve`` work on it. Its artifacts::

    MLmodel, model.onnx, conda.yaml, python_env.yaml, requirements.txt   (the MLflow ONNX model)
    bundle/                    the verified visionyard bundle (contract, variants, checksums)
    gate_reports/<id>.json     promotion gate reports written by ``visionyard promote``

Reads prefer the cheap calls measured on SQLite with 2,000 versions: ``search_registered_models``
with a name filter (not ``get_registered_model``, which loads every version), and
``search_model_versions`` with ``max_results`` and an order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient

from visionyard.errors import RegistryError, TrackingError, VisionyardError
from visionyard.settings import Settings
from visionyard.tracking.mlflow_model import quiet_mlflow
from visionyard.tracking.queries import RunInfo, _run_info, fetch_run
from visionyard.tracking.registry_records import ModelInfo as ModelInfo
from visionyard.tracking.registry_records import VersionInfo as VersionInfo
from visionyard.tracking.registry_records import (
    model_info,
    model_not_found,
    version_info,
    version_not_found,
)
from visionyard.tracking.store import TrackingConfig, connect, mlflow_globals
from visionyard.tracking.translate import translate_errors

T = TypeVar("T")
ALIAS_WRITE_ATTEMPTS = 3
_DUPLICATE_KEY = ("duplicate key", "unique constraint", "uniqueviolation", "integrityerror")
_MISSING = "RESOURCE_DOES_NOT_EXIST"
_EXISTS = "RESOURCE_ALREADY_EXISTS"


class RegistryClient:
    """Registered models, versions, aliases, tags and version artifacts on one store."""

    def __init__(self, config: TrackingConfig, client: MlflowClient | None = None) -> None:
        self.config = config
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        return cls(TrackingConfig.from_settings(settings))

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = connect(self.config)
        return self._client

    @property
    def uri(self) -> str:
        return self.config.registry_uri

    # -- registered models --------------------------------------------------------------------

    def get_model(self, name: str) -> ModelInfo:
        """The model ``name`` with its tags and aliases; :class:`NotFoundError` if unknown.
        (A read by name: half the cost of a search filtered on the name, which also loads
        every stage's latest version through subqueries; the server reads it every poll.)"""
        try:
            found = self._call(
                f"read registered model {name!r}", lambda: self.client.get_registered_model(name)
            )
        except VisionyardError as exc:
            if _MISSING in _codes(exc):
                raise model_not_found(name) from exc
            raise
        if found.name != name:  # a store that matches names without case
            raise model_not_found(name)
        return model_info(found)

    def list_models(self) -> list[ModelInfo]:
        """Every registered model, sorted by name."""
        return sorted(self._search_models(None), key=lambda m: m.name)

    def ensure_model(self, name: str, description: str = "") -> None:
        """Create the registered model unless it exists (also when created concurrently)."""
        try:
            self._call(
                f"create registered model {name!r}",
                lambda: self.client.create_registered_model(name, description=description),
            )
        except VisionyardError as exc:
            if _EXISTS not in _codes(exc):
                raise

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self._call(
            f"tag model {name!r}", lambda: self.client.set_registered_model_tag(name, key, value)
        )

    def get_alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None when it is not set."""
        return self.get_model(name).aliases.get(alias)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``. Two first-time writes of the same alias race on an
        insert in MLflow's SQL store (a unique-key violation for the loser); the row exists
        after that, so the write is retried."""
        action = f"point alias {alias!r} of {name!r} at version {version}"
        for attempt in range(1, ALIAS_WRITE_ATTEMPTS + 1):
            try:
                self._call(
                    action, lambda: self.client.set_registered_model_alias(name, alias, version)
                )
                return
            except TrackingError as exc:
                if attempt == ALIAS_WRITE_ATTEMPTS or not _duplicate_key(exc):
                    raise

    # -- versions -----------------------------------------------------------------------------

    def version_by_alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version ``alias`` points at, read through the alias (the server's polls: a
        fraction of :meth:`get_model`'s cost); None when the model or the alias is unknown
        (:func:`~visionyard.registry.views.resolve_version` says which)."""
        try:
            found = self._call(
                f"read alias {alias!r} of {name!r}",
                lambda: self.client.get_model_version_by_alias(name, alias),
            )
        except VisionyardError as exc:
            if _unknown(exc):
                return None
            raise
        return version_info(found)

    def get_version(self, name: str, version: str) -> VersionInfo:
        """One version, with its aliases; :class:`NotFoundError` if the model or it is unknown."""
        try:
            found = self._call(
                f"read version {version} of {name!r}",
                lambda: self.client.get_model_version(name, str(version)),
            )
        except VisionyardError as exc:
            if _unknown(exc):
                self.get_model(name)
                raise version_not_found(name, version) from exc
            raise
        return version_info(found)

    def list_versions(self, name: str, limit: int | None = None) -> list[VersionInfo]:
        """Versions of ``name``, newest first (at most ``limit``); aliases are not filled."""
        flt = f"name = '{_quote(name)}'"
        order = ["version_number DESC"]
        return [version_info(v) for v in self._search_versions(flt, order, limit)]

    def find_versions(self, name: str, tag: str, value: str) -> list[VersionInfo]:
        """Versions of ``name`` whose tag ``tag`` equals ``value``."""
        flt = f"name = '{_quote(name)}' and tags.`{tag}` = '{_quote(value)}'"
        return [version_info(v) for v in self._search_versions(flt, ["version_number DESC"], None)]

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call(
            f"tag version {version} of {name!r}",
            lambda: self.client.set_model_version_tag(name, version, key, value),
        )

    def create_version(
        self, name: str, run: RunInfo, model_dir: Path, tags: Mapping[str, str]
    ) -> VersionInfo:
        """Log ``model_dir`` (an MLflow model folder, see
        :func:`~visionyard.tracking.mlflow_model.build_model_dir`) as a logged model of ``run``
        and register it as a new version of ``name`` with ``tags``."""
        model_id = self._log_model(name, run, model_dir)
        self.ensure_model(name)
        # The SQL registry store resolves ``models:/<model_id>`` through mlflow's GLOBAL
        # tracking URI (mlflow's own TODO), so the globals point at our store for this call.
        with mlflow_globals(self.config):
            created = self._call(
                f"register a version of {name!r}",
                lambda: self.client.create_model_version(
                    name, source=f"models:/{model_id}", run_id=run.run_id, tags=dict(tags),
                    model_id=model_id,
                ),
            )  # fmt: skip
        return version_info(created)

    def _log_model(self, name: str, run: RunInfo, model_dir: Path) -> str:
        """What ``mlflow.<flavor>.log_model`` does, with this client's explicit URIs."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        action = f"log the model of {name!r} in run {run.run_id}"
        logged = self._call(
            action,
            lambda: self.client.create_logged_model(
                run.experiment_id, name=name, source_run_id=run.run_id, model_type="onnx"
            ),
        )
        model_id = str(logged.model_id)
        self._call(action, lambda: self.client.log_model_artifacts(model_id, str(model_dir)))
        ready = LoggedModelStatus.READY
        self._call(action, lambda: self.client.finalize_logged_model(model_id, ready))
        output = LoggedModelOutput(model_id, step=0)
        self._call(action, lambda: self.client.log_outputs(run.run_id, [output]))
        return model_id

    def delete_version(self, version: VersionInfo) -> int:
        """Delete the version's artifacts, its logged model and its registry entry; returns
        the bytes its artifacts held."""
        size = self.artifact_bytes(version)
        uri = self.artifact_uri(version)
        where = f"version {version.version} of {version.name!r}"
        self._call(f"delete the artifacts of {where}", lambda: self._repo(uri).delete_artifacts())
        self._call(
            f"delete {where}",
            lambda: self.client.delete_model_version(version.name, version.version),
        )
        model_id = version.model_id
        if model_id:
            self._call(
                f"delete the logged model of {where}",
                lambda: self.client.delete_logged_model(model_id),
            )
        return size

    # -- runs and artifacts -------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """The run ``run_id`` as plain values; :class:`NotFoundError` when unknown."""
        with quiet_mlflow():
            return _run_info(fetch_run(self.client, self.config, run_id))

    def download_run_artifacts(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(
            self._call(
                f"download {path!r} of run {run_id}",
                lambda: self.client.download_artifacts(run_id, path, str(dst)),
            )
        )

    def artifact_uri(self, version: VersionInfo) -> str:
        """Where the version's files are stored (resolved from ``models:/`` sources)."""
        return str(
            self._call(
                f"locate version {version.version} of {version.name!r}",
                lambda: self.client.get_model_version_download_uri(version.name, version.version),
            )
        )

    def download_version_artifacts(self, version: VersionInfo, path: str, dst: Path) -> Path:
        """Download ``path`` of the version's artifacts (``bundle``, ``gate_reports/x.json``)."""
        dst.mkdir(parents=True, exist_ok=True)
        uri = self.artifact_uri(version)
        return Path(
            self._call(
                f"download {path!r} of version {version.version} of {version.name!r}",
                lambda: self._repo(uri).download_artifacts(path, str(dst)),
            )
        )

    def upload_version_artifact(self, version: VersionInfo, local: Path, artifact_dir: str) -> str:
        """Store ``local`` under ``artifact_dir`` of the version; returns its relative path."""
        uri = self.artifact_uri(version)
        self._call(
            f"store {local.name} on version {version.version} of {version.name!r}",
            lambda: self._repo(uri).log_artifact(str(local), artifact_dir),
        )
        return f"{artifact_dir}/{local.name}"

    def artifact_bytes(self, version: VersionInfo) -> int:
        """Total size of the version's artifacts (walks the folders)."""
        return self.bytes_at(self.artifact_uri(version))

    def bytes_at(self, uri: str) -> int:
        """Total size of the artifacts under ``uri`` (0 when nothing is there)."""
        return int(self._call("measure artifacts", lambda: _walk_size(self._repo(uri), None)))

    # -- internals ----------------------------------------------------------------------------

    def _repo(self, uri: str) -> Any:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(
            uri, tracking_uri=self.config.tracking_uri, registry_uri=self.config.registry_uri
        )

    def _search_models(self, name: str | None) -> list[ModelInfo]:
        flt = None if name is None else f"name = '{_quote(name)}'"
        what = "list registered models" if name is None else f"read registered model {name!r}"
        found = self._call(what, lambda: _all_pages(self.client.search_registered_models, flt))
        models = [model_info(m) for m in found]
        return models if name is None else [m for m in models if m.name == name]

    def _search_versions(self, flt: str, order: list[str], limit: int | None) -> list[Any]:
        def search() -> list[Any]:
            if limit is not None:
                return list(
                    self.client.search_model_versions(flt, max_results=limit, order_by=order)
                )
            return _all_pages(self.client.search_model_versions, flt, order)

        return self._call("search model versions", search)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        with translate_errors(self.uri, action), quiet_mlflow():
            try:
                return fn()
            except Exception as exc:
                code = getattr(exc, "error_code", None)
                if code in (_MISSING, _EXISTS, "INVALID_PARAMETER_VALUE"):
                    raise _CodedError(str(code), f"cannot {action}: {_first_line(exc)}") from exc
                raise


class _CodedError(RegistryError):
    """An MLflow error whose code the caller may act on (missing, already exists)."""

    def __init__(self, mlflow_code: str, message: str) -> None:
        super().__init__(message)
        self.mlflow_code = mlflow_code


def _unknown(exc: BaseException) -> bool:
    """Whether MLflow said the model, version or alias asked for does not exist (its SQL store
    answers an unknown version or alias with an invalid-parameter code)."""
    return bool({_MISSING, "INVALID_PARAMETER_VALUE"} & _codes(exc))


def _codes(exc: BaseException) -> set[str]:
    codes: set[str] = set()
    while exc is not None:
        code = getattr(exc, "mlflow_code", None) or getattr(exc, "error_code", None)
        if code:
            codes.add(str(code))
        exc = exc.__cause__  # type: ignore[assignment]
    return codes


def _duplicate_key(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _DUPLICATE_KEY)


def _all_pages(
    search: Callable[..., Any], flt: str | None, order: list[str] | None = None
) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = search(filter_string=flt, max_results=1000, order_by=order, page_token=token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def _walk_size(repo: Any, path: str | None) -> int:
    total = 0
    for item in repo.list_artifacts(path):
        total += _walk_size(repo, item.path) if item.is_dir else int(item.file_size or 0)
    return total


def _quote(value: str) -> str:
    if "'" in value:
        raise RegistryError(f"names with a single quote are not supported: {value!r}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
