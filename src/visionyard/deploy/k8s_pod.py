"""The server's pod, shared by the Deployment and KServe's ``InferenceService``: container,
probes, drain, security, volumes and topology spread, all read from :mod:`.spec`.

- Probes on the OIP health endpoints: ``startupProbe`` and ``livenessProbe`` on
  :data:`.spec.LIVE_PATH` (the process answers), ``readinessProbe`` on :data:`.spec.READY_PATH`
  (every model has a version serving; false while a model loads, while the registry is
  unreachable and once SIGTERM arrived). A pod that cannot reach the registry stays live and
  not ready: no restart loop.
- Drain: ``preStop`` sleeps :data:`.spec.PRESTOP_SLEEP_S` so that endpoints and load balancers
  drop the pod before SIGTERM; the server then drains for ``serving.drain_s``;
  ``terminationGracePeriodSeconds`` is :func:`.spec.grace_period_s` (both plus a margin). The
  ``sleep`` handler needs Kubernetes 1.30 or later (beta and on by default since 1.30).
- Non-root (uid :data:`.spec.UID`), read-only root filesystem, no capabilities, RuntimeDefault
  seccomp; the writable state dir (settings ``home``: registry cache, capture), ``/tmp`` and the
  user's HOME (MLflow and onnxruntime write small files there at start) are ``emptyDir``
  volumes; ``serve.yaml`` comes from the ConfigMap.
- Secrets are referenced, never written: the admin token (optional: without it the server
  starts with admin calls disabled and says so) and the tracking secret, whose keys become
  environment variables (``VISIONYARD_TRACKING__URI``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``
  or ``MLFLOW_TRACKING_TOKEN``).
- CPU is requested, not limited (a CPU limit throttles inference without saving anything the
  request does not already reserve); memory is requested and limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from visionyard.deploy import spec
from visionyard.settings import Settings

Manifest = dict[str, Any]
CONTAINER = "server"
TMP_DIR = "/tmp"
TMP_SIZE = "1Gi"
#: HOME takes the libraries' small files: ``~/.config/mlflow`` (telemetry) and
#: ``~/.cache/Microsoft/DeveloperTools`` (onnxruntime), written at start (measured).
HOME_SIZE = "64Mi"


@dataclass(frozen=True)
class Resources:
    """The container's CPU request and memory request (= limit), as Kubernetes quantities."""

    cpu: str = "2"
    memory: str = "2Gi"


@dataclass(frozen=True)
class Pod:
    """What varies between generated pods: the app's name, image and resources."""

    name: str
    image: str
    resources: Resources

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"

    @property
    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "visionyard", "app.kubernetes.io/instance": self.name}

    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.selector,
            "app.kubernetes.io/component": "model-server",
            "app.kubernetes.io/version": spec.visionyard_version(),
            "app.kubernetes.io/managed-by": "visionyard",
        }


def container(settings: Settings, pod: Pod, *, grpc: bool = True) -> Manifest:
    """The server container; ``grpc=False`` exposes the HTTP port only (KServe wants one)."""
    port = spec.ports(settings)
    ports = [{"name": "http", "containerPort": port.http, "protocol": "TCP"}]
    if grpc:
        ports.append({"name": "grpc", "containerPort": port.grpc, "protocol": "TCP"})
    return {
        "name": CONTAINER,
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "env": _env(),
        "envFrom": [{"secretRef": {"name": spec.TRACKING_SECRET, "optional": False}}],
        "resources": {
            "requests": {"cpu": pod.resources.cpu, "memory": pod.resources.memory},
            "limits": {"memory": pod.resources.memory},
        },
        **probes(port.http),
        "lifecycle": {"preStop": {"sleep": {"seconds": spec.PRESTOP_SLEEP_S}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": _mounts(),
    }


def probes(http_port: int) -> Manifest:
    """Startup and liveness on the live path, readiness on the ready path (the HTTP port)."""

    def get(path: str, period: int, failures: int) -> Manifest:
        return {
            "httpGet": {"path": path, "port": http_port, "scheme": "HTTP"},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    return {
        "startupProbe": get(spec.LIVE_PATH, 2, 60),
        "readinessProbe": get(spec.READY_PATH, 5, 2),
        "livenessProbe": get(spec.LIVE_PATH, 10, 3),
    }


def _env() -> list[Manifest]:
    admin = {"name": spec.ADMIN_SECRET, "key": spec.ADMIN_SECRET_KEY, "optional": True}
    return [
        {"name": "VISIONYARD_CONFIG", "value": spec.CONFIG_FILE},
        {"name": "VISIONYARD_HOME", "value": spec.STATE_DIR},
        {"name": "HOME", "value": spec.HOME_DIR},
        {"name": "VISIONYARD_SERVING__ADMIN_TOKEN", "valueFrom": {"secretKeyRef": admin}},
    ]


def _mounts() -> list[Manifest]:
    config_dir = str(PurePosixPath(spec.CONFIG_FILE).parent)
    return [
        {"name": "config", "mountPath": config_dir, "readOnly": True},
        {"name": "state", "mountPath": spec.STATE_DIR},
        {"name": "tmp", "mountPath": TMP_DIR},
        {"name": "home", "mountPath": spec.HOME_DIR},
    ]


def volumes(pod: Pod) -> list[Manifest]:
    return [
        {"name": "config", "configMap": {"name": pod.config_map}},
        {"name": "state", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
        {"name": "home", "emptyDir": {"sizeLimit": HOME_SIZE}},
    ]


def pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": spec.UID,
        "runAsGroup": spec.UID,
        "fsGroup": spec.UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def topology_spread(pod: Pod) -> list[Manifest]:
    """Spread over zones and nodes; ``ScheduleAnyway`` so a small cluster still schedules."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": pod.selector},
            "matchLabelKeys": ["pod-template-hash"],
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def pod_spec(settings: Settings, pod: Pod, *, grpc: bool = True) -> Manifest:
    """The pod's spec (also the body of KServe's predictor, which inlines a PodSpec)."""
    return {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": spec.grace_period_s(settings),
        "securityContext": pod_security(),
        "topologySpreadConstraints": topology_spread(pod),
        "containers": [container(settings, pod, grpc=grpc)],
        "volumes": volumes(pod),
    }
