"""Where runs are recorded: the tracking configuration and the one MLflow client factory.

* Embedded default: a SQLite store ``<home>/mlflow.db`` with artifacts in ``<home>/artifacts``,
  always passed explicitly (MLflow's implicit default depends on the working directory).
* Team mode: an ``http(s)://`` MLflow server, or a ``postgresql://`` store (psycopg 3; the URI is
  mapped to ``postgresql+psycopg://`` so SQLAlchemy never looks for psycopg2).

A SQLite store is created only by commands that record runs (``connect(create=True)``);
every other command refuses a path where no store exists, so a typo is one clear error
instead of an empty store, and a path that cannot be a database (a directory, a file that is
not SQLite) fails at once instead of after minutes of connection retries.

Clients always get explicit tracking and registry URIs; mlflow's globals are only touched
inside :func:`mlflow_globals`, which restores them. Before a client is made, servers and
databases are probed with a short timeout, so a dead store is one quick
:class:`~visionyard.errors.TrackingUnavailableError` instead of minutes of retries (mlflow
retries HTTP requests and database connections with exponential backoff).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlflow import MlflowClient

from visionyard.errors import TrackingError, TrackingUnavailableError
from visionyard.settings import Settings
from visionyard.tracking.mlflow_model import ignore_noload_warning
from visionyard.tracking.translate import redact, translate_errors

PROBE_TIMEOUT_S = 3.0
SQLITE_HEADER = b"SQLite format 3\x00"
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
HTTP_SCHEMES = ("http", "https")
#: mlflow's HTTP defaults (7 retries, 120 s timeout) keep a dead server busy for minutes; these
#: apply only where the user did not set the variables.
HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_URI_HELP = (
    "use sqlite:///path/to/mlflow.db, postgresql://user:password@host:5432/db or "
    "http(s)://host:port (VISIONYARD_TRACKING__URI or --tracking-uri)"
)


@dataclass(frozen=True)
class TrackingConfig:
    """Everything needed to reach the tracking store; built from :class:`Settings`."""

    tracking_uri: str
    registry_uri: str
    artifact_root: str | None
    experiment: str
    flush_points: int = 1000
    flush_interval_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackingConfig:
        t = settings.tracking
        uri = normalize_uri(settings.tracking_uri())
        registry = normalize_uri(t.registry_uri) if t.registry_uri else uri
        artifacts = t.artifact_location
        if artifacts is None and scheme_of(uri) in DB_SCHEMES:
            artifacts = (settings.home / "artifacts").resolve().as_uri()
        return cls(uri, registry, artifacts, t.experiment, t.flush_points, t.flush_interval_s)

    def artifact_location(self, experiment: str) -> str | None:
        """Artifact location for a new experiment: ``<root>/<name slug>``, or the server's."""
        if self.artifact_root is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") or "experiment"
        return f"{self.artifact_root.rstrip('/')}/{slug}"


def scheme_of(uri: str) -> str:
    """The URI scheme without a driver suffix: ``postgresql+psycopg://`` -> ``postgresql``."""
    return urlsplit(uri).scheme.split("+")[0].lower()


def normalize_uri(uri: str) -> str:
    """Validate a tracking/registry URI and pin the PostgreSQL driver to psycopg 3."""
    scheme = scheme_of(uri)
    if scheme == "postgres":
        uri, scheme = "postgresql" + uri[len("postgres") :], "postgresql"
    if scheme in HTTP_SCHEMES:
        if not urlsplit(uri).hostname:
            raise TrackingError(f"tracking URI {uri!r} has no host; {_URI_HELP}")
        return uri.rstrip("/")
    if scheme == "file" or scheme == "":
        raise TrackingError(
            f"tracking URI {redact(uri)!r} is a plain folder (MLflow's file store is in "
            f"maintenance mode); {_URI_HELP}"
        )
    if scheme not in DB_SCHEMES and scheme != "databricks":
        raise TrackingError(f"unsupported tracking URI {redact(uri)!r}; {_URI_HELP}")
    if scheme == "postgresql" and urlsplit(uri).scheme.lower() == "postgresql":
        return "postgresql+psycopg" + uri[len("postgresql") :]
    return uri


def connect(config: TrackingConfig, *, create: bool = False) -> MlflowClient:
    """A client with explicit tracking and registry URIs, after probing both stores.

    A SQLite store that does not exist is refused unless ``create`` (commands that record
    runs): a typo in a path must not silently read an empty store."""
    for uri in dict.fromkeys((config.tracking_uri, config.registry_uri)):
        probe(uri, create=create)
    with translate_errors(config.tracking_uri, "open the tracking store"), _quiet_mlflow():
        client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.registry_uri)
        client.search_experiments(max_results=1)
    return client


def probe(uri: str, *, create: bool = False) -> None:
    """Fail fast with :class:`TrackingUnavailableError` when the store cannot be reached, and
    with :class:`TrackingError` for a SQLite path that is missing (unless ``create``) or that
    cannot be a database."""
    scheme = scheme_of(uri)
    if scheme in HTTP_SCHEMES:
        for key, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        _probe_http(uri)
    elif scheme == "postgresql":
        _probe_postgres(uri)
    elif scheme == "sqlite":
        _prepare_sqlite(uri, create)


def ensure_experiment(client: MlflowClient, config: TrackingConfig, name: str) -> str:
    """The id of experiment ``name``, created (with our artifact location) when missing."""
    with translate_errors(config.tracking_uri, f"open experiment {name!r}"):
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return str(client.create_experiment(name, config.artifact_location(name)))
            except Exception:  # created concurrently by another process: use that one
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
    if found.lifecycle_stage == "deleted":
        raise TrackingError(
            f"experiment {name!r} is deleted; restore it (mlflow experiments restore "
            f"--experiment-id {found.experiment_id}) or use another experiment name"
        )
    return str(found.experiment_id)


@contextmanager
def mlflow_globals(config: TrackingConfig) -> Iterator[None]:
    """Point mlflow's global tracking/registry URIs at ``config`` for APIs that need them
    (e.g. ``mlflow.register_model``), restoring the previous values and env vars after."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.registry_uri)
    try:
        yield
    finally:
        if saved[0] is None:
            tracking_utils._tracking_uri = None
        else:
            mlflow.set_tracking_uri(saved[0])
        registry_utils._registry_uri = saved[1]
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """mlflow's SQL store configures its ORM mappers with SQLAlchemy 2.1's deprecated ``noload``
    strategy; the warning is mlflow's to fix, so it is silenced here, once, for everyone. Its
    INFO lines about creating and migrating tables are not news to a visionyard user either."""
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ignore_noload_warning()
    yield


def _probe_http(uri: str) -> None:
    request = urllib.request.Request(f"{uri}/health", method="GET")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # the server answered (maybe 401/404 behind a proxy): it is reachable
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnavailableError(redact(uri), f"no answer at {uri}/health: {reason}") from exc


def _probe_postgres(uri: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    try:
        dsn = make_url(uri).set(drivername="postgresql").render_as_string(hide_password=False)
    except Exception as exc:
        raise TrackingError(f"malformed PostgreSQL URI {redact(uri)!r}; {_URI_HELP}") from exc
    try:
        psycopg.connect(dsn, connect_timeout=int(PROBE_TIMEOUT_S)).close()
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise TrackingUnavailableError(redact(uri), detail) from exc


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other schemes)."""
    if scheme_of(uri) != "sqlite":
        return None
    path = uri.split(":///", 1)[1] if ":///" in uri else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        raise TrackingError(f"SQLite tracking URI {uri!r} needs a file path; {_URI_HELP}")
    return Path(path)


def missing_sqlite_store(uri: str) -> Path | None:
    """The file of a SQLite store that does not exist yet; None when it exists or is not
    SQLite."""
    path = sqlite_path(uri)
    return path if path is not None and not path.exists() else None


def _prepare_sqlite(uri: str, create: bool) -> None:
    path = sqlite_path(uri)
    assert path is not None
    if path.is_dir():
        raise TrackingError(
            f"SQLite tracking store {path} is a directory, not an SQLite database file; "
            f"point at a file, e.g. sqlite:///{path / 'mlflow.db'}"
        )
    if path.exists():
        _check_sqlite_header(path)
        if not create and path.stat().st_size == 0:  # SQLite would make it a new, empty store
            raise TrackingError(
                f"no tracking store at {path}: the file is empty, nothing was ever recorded "
                "there; check --tracking-uri / VISIONYARD_TRACKING__URI / --home"
            )
    elif not create:
        raise TrackingError(
            f"no tracking store at {path}: nothing was ever recorded there; check "
            "--tracking-uri / VISIONYARD_TRACKING__URI / --home, or train or register first"
        )
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(
            f"cannot create the folder {parent} for the SQLite tracking store ({exc.strerror}); "
            "check the path (--home / VISIONYARD_HOME) and its permissions"
        ) from exc
    if not os.access(parent, os.W_OK):
        raise TrackingError(f"the SQLite tracking store folder {parent} is not writable")


def _check_sqlite_header(path: Path) -> None:
    """An existing file must be empty (SQLite makes it a database) or start like one."""
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise TrackingError(
            f"cannot read the SQLite tracking store {path} ({exc.strerror or exc})"
        ) from exc
    if head and head != SQLITE_HEADER:
        raise TrackingError(
            f"{path} is not an SQLite database; point the tracking URI at an MLflow store "
            "(sqlite:///path/to/mlflow.db)"
        )


def ui_command(config: TrackingConfig, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command for a database store (one worker, light on small machines);
    empty for an ``http(s)://`` store, whose server already serves the UI at its URI."""
    if scheme_of(config.tracking_uri) in HTTP_SCHEMES:
        return []
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", config.tracking_uri]
    if config.registry_uri != config.tracking_uri:
        cmd += ["--registry-store-uri", config.registry_uri]
    if config.artifact_root:
        cmd += ["--default-artifact-root", config.artifact_root]
    return [*cmd, "--host", host, "--port", str(port), "--workers", "1"]
