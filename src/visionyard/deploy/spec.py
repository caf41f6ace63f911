"""What every deployment artifact agrees on, in one place: ports, probe paths, the drain and the
grace period, the user, the paths inside the image, the model references.

The Dockerfile (:mod:`.docker`), the Kubernetes manifests (:mod:`.k8s`) and the capacity plan
(:mod:`.plan`) read these values from here; ports and the drain come from ``settings.py``
(``serving.http_port``, ``serving.grpc_port``, ``serving.drain_s``). A unit test checks that the
REST app answers on the probe paths named here.

Also here: the two refusals every generator shares. A model reference is resolved against the
registry BEFORE anything is written (a typo fails in one line, no half-written folder), and an
output folder that holds other files is refused unless ``force`` is given.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from visionyard import __version__
from visionyard.errors import ConfigError, VisionyardError
from visionyard.settings import Settings

LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
#: The per-pod metric the HPA scales on: requests admitted and not finished (serving/metrics.py).
IN_FLIGHT_METRIC = "visionyard_queue_depth"

UID = 10001
USER = "visionyard"
VENV = "/opt/venv"
APP_DIR = "/opt/visionyard"
MODELS_DIR = f"{APP_DIR}/models"
CONFIG_FILE = "/etc/visionyard/serve.yaml"
#: The server's writable state (settings ``home``: registry cache, capture): an emptyDir in k8s.
STATE_DIR = "/var/lib/visionyard"
#: HOME of the user; MLflow reads tracking credentials from ``$HOME/.mlflow/credentials``.
HOME_DIR = "/home/visionyard"
CREDENTIALS_DIR = f"{HOME_DIR}/.mlflow"
#: Seconds a terminating pod keeps serving so that endpoints and load balancers drop it first.
PRESTOP_SLEEP_S = 5
#: Margin between the server's own drain deadline and the kubelet's SIGKILL.
GRACE_MARGIN_S = 5

ADMIN_SECRET = "visionyard-admin"
ADMIN_SECRET_KEY = "token"
TRACKING_SECRET = "visionyard-tracking"


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int


@dataclass(frozen=True)
class ModelRef:
    """``NAME=REF`` of ``--model``; ``version`` is what REF resolved to at generation time."""

    name: str
    reference: str
    version: str


def ports(settings: Settings) -> Ports:
    """The container's ports: the configured ones (0 = any free port makes no sense here)."""
    serving = settings.serving
    if not serving.http_port or not serving.grpc_port:
        raise ConfigError("serving.http_port and serving.grpc_port must be fixed ports to deploy")
    return Ports(serving.http_port, serving.grpc_port)


def grace_period_s(settings: Settings) -> int:
    """``terminationGracePeriodSeconds``: preStop sleep + the server's drain + a margin."""
    return PRESTOP_SLEEP_S + math.ceil(settings.serving.drain_s) + GRACE_MARGIN_S


def visionyard_version() -> str:
    return __version__


def parse_model(option: str) -> tuple[str, str]:
    """``NAME=REF`` (``shapes=shapes@production``) or a bare ``REF`` (name = REF's name)."""
    name, sep, reference = option.partition("=")
    if not sep:
        reference, name = option, option.split("@")[0].split("/")[0]
    if not name or not reference:
        raise ConfigError(f"--model {option!r}: expected NAME=REF such as shapes=shapes@production")
    return name, reference


def resolve_model(settings: Settings, option: str) -> ModelRef:
    """Check that the reference resolves in the registry now; one-line ConfigError otherwise."""
    from visionyard.serving.sources import is_registry_reference

    name, reference = parse_model(option)
    if not is_registry_reference(reference):
        raise ConfigError(f"--model {option!r}: REF must be NAME@ALIAS or NAME/VERSION")
    from visionyard.registry import resolve_version_number

    try:
        version = resolve_version_number(settings, reference)
    except VisionyardError as exc:
        raise ConfigError(f"model reference {reference!r} does not resolve: {exc}") from exc
    return ModelRef(name, reference, version)


def prepare_out(out: Path, force: bool) -> None:
    """Refuse a folder that holds files unless ``force`` (then empty it); create it."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty: choose an empty folder or pass --force")
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_files(out: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` (relative path -> text) under ``out``; return the paths."""
    written = []
    for relative, text in files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def serve_yaml(settings: Settings, models: Mapping[str, str]) -> str:
    """``serve.yaml`` of a deployed server (the image's file, the k8s ConfigMap): where it listens,
    its drain and what it serves (``models``: name -> reference or path). No secrets."""
    port = ports(settings)
    body = {
        "serving": {
            "host": "0.0.0.0",
            "http_port": port.http,
            "grpc_port": port.grpc,
            "drain_s": settings.serving.drain_s,
            "models": dict(models),
            **({"variant": settings.serving.variant} if settings.serving.variant else {}),
        },
        "monitor": {"enabled": settings.monitor.enabled},
    }
    return "# No secrets here: they come from the environment or mounted files.\n" + (
        yaml.safe_dump(body, sort_keys=False)
    )
