"""``visionyard deploy k8s``: a kustomize base for the server, generated from the settings.

Files written under ``--out`` (each a Python dict dumped with PyYAML; nothing is templated):

- ``deployment.yaml``: the pod of :mod:`.k8s_pod` (probes, drain, security, spread); no
  ``replicas`` field, so that ``kubectl apply`` never fights the autoscaler over it;
- ``service.yaml``: HTTP and gRPC ports, with ``appProtocol`` ``http`` and ``kubernetes.io/h2c``;
- ``hpa.yaml``: ``autoscaling/v2`` on CPU utilisation and on the per-pod metric
  :data:`.spec.IN_FLIGHT_METRIC` (requests admitted and not finished, a gauge each server
  exports on ``/metrics``), served to the HPA by prometheus-adapter;
- ``pdb.yaml``: at most one pod voluntarily disrupted at a time;
- ``servicemonitor.yaml`` (unless ``service_monitor=False``): the Prometheus operator scrapes
  ``/metrics``, adding the ``namespace`` and ``pod`` labels the adapter rule relies on;
- ``serve.yaml`` and ``kustomization.yaml``: a ``configMapGenerator`` turns ``serve.yaml`` (the
  same file :func:`.spec.serve_yaml` writes for the image; no secrets) into a ConfigMap whose
  name carries a content hash, so a change of settings rolls the pods;
- ``prometheus-adapter/values.yaml``: Helm values for prometheus-adapter with the rule that
  exposes the metric per pod (not part of the kustomization: the adapter has its own release);
- ``kserve/`` (with ``kserve=True``): an ``InferenceService`` (``serving.kserve.io/v1beta1``,
  raw deployment mode) running the same image and pod, OIP v2 over HTTP, with its own
  kustomization. An alternative to the base, not an addition to it.

Model references are resolved against the registry before anything is written; the server
resolves them again at start and follows alias moves itself. The manifests are checked with
kubernetes-validate (strict), ``kubectl kustomize`` and, for the custom resources, the CRD
schemas vendored in ``schemas/`` (:func:`custom_resource_schema`).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visionyard.deploy import spec
from visionyard.deploy.k8s_pod import Manifest, Pod, Resources, pod_spec
from visionyard.errors import ConfigError
from visionyard.settings import Settings

__all__ = ["K8sOptions", "Resources", "Scaling", "custom_resource_schema", "generate"]

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
SCHEMAS = Path(__file__).parent / "schemas"
ADAPTER_VALUES = "prometheus-adapter/values.yaml"
KSERVE_DIR = "kserve"
#: The name KServe gives (and looks for in) a custom predictor's container.
KSERVE_CONTAINER = "kserve-container"


@dataclass(frozen=True)
class Scaling:
    """The autoscaler's bounds and targets (``deploy plan`` measures the targets)."""

    min_replicas: int = 2
    max_replicas: int = 10
    in_flight_per_pod: float = 4.0
    cpu_utilization_percent: int = 70


@dataclass(frozen=True)
class K8sOptions:
    name: str = "visionyard"
    image: str = ""  # default: visionyard-serving:<this visionyard's version>
    scaling: Scaling = Scaling()
    resources: Resources = Resources()
    service_monitor: bool = True
    kserve: bool = False


def default_image() -> str:
    return f"visionyard-serving:{spec.visionyard_version()}"


def check_options(options: K8sOptions) -> None:
    """One-line ConfigErrors for options Kubernetes would refuse later, less clearly."""
    if not _NAME.match(options.name):
        raise ConfigError(
            f"--name {options.name!r}: lower-case letters, digits and '-', 1-42 characters, "
            "starting with a letter (it names every resource)"
        )
    scaling = options.scaling
    if not 1 <= scaling.min_replicas <= scaling.max_replicas:
        raise ConfigError(
            f"replicas: need 1 <= --min-replicas ({scaling.min_replicas}) <= --max-replicas "
            f"({scaling.max_replicas})"
        )
    if scaling.in_flight_per_pod <= 0 or not 1 <= scaling.cpu_utilization_percent <= 100:
        raise ConfigError("HPA targets: in-flight per pod > 0 and CPU utilisation 1-100 %")


def check_planned_model(planned: str, models: list[str]) -> None:
    """A capacity plan measured one model: refuse it for a deployment that does not serve it."""
    served = {_registered(spec.parse_model(option)[1]) for option in models}
    if _registered(planned) not in served:
        raise ConfigError(
            f"the capacity plan measured {planned!r}, and no --model serves "
            f"{_registered(planned)!r}: measure this deployment's model with deploy plan"
        )


def _registered(reference: str) -> str:
    return reference.split("@")[0].split("/")[0]


def generate(
    out: Path, settings: Settings, models: list[str], options: K8sOptions, force: bool = False
) -> list[Path]:
    """Check the options and resolve every model reference FIRST, then write: a failure
    writes nothing. Returns the files written."""
    if not models:
        raise ConfigError("give at least one --model NAME=NAME@ALIAS to serve")
    check_options(options)
    spec.ports(settings)
    refs = [spec.resolve_model(settings, option) for option in models]
    spec.prepare_out(out, force)
    return spec.write_files(out, render(settings, refs, options))


def render(settings: Settings, refs: list[spec.ModelRef], options: K8sOptions) -> dict[str, str]:
    """Every file of the base (relative path -> text)."""
    pod = Pod(options.name, options.image or default_image(), options.resources)
    serve = spec.serve_yaml(settings, {ref.name: ref.reference for ref in refs})
    resources = {
        "deployment.yaml": deployment(settings, pod, refs),
        "service.yaml": service(settings, pod),
        "hpa.yaml": hpa(pod, options.scaling),
        "pdb.yaml": pdb(pod),
    }
    if options.service_monitor:
        resources["servicemonitor.yaml"] = service_monitor(pod)
    files = {path: dump(body) for path, body in resources.items()}
    files["serve.yaml"] = serve
    files["kustomization.yaml"] = dump(kustomization(pod, list(resources), hashed=True))
    files[ADAPTER_VALUES] = dump(adapter_values())
    if options.kserve:
        files[f"{KSERVE_DIR}/inferenceservice.yaml"] = dump(
            inference_service(settings, pod, options.scaling)
        )
        files[f"{KSERVE_DIR}/serve.yaml"] = serve
        body = kustomization(pod, ["inferenceservice.yaml"], hashed=False)
        files[f"{KSERVE_DIR}/kustomization.yaml"] = dump(body)
    return files


def dump(body: Manifest) -> str:
    header = f"# Generated by visionyard deploy k8s {spec.visionyard_version()}.\n"
    return header + yaml.safe_dump(body, sort_keys=False)


def _meta(pod: Pod, name: str | None = None, **extra: Any) -> Manifest:
    return {"name": name or pod.name, "labels": pod.labels, **extra}


def deployment(settings: Settings, pod: Pod, refs: list[spec.ModelRef]) -> Manifest:
    notes = {
        "visionyard.io/model-references": ",".join(f"{r.name}={r.reference}" for r in refs),
        "visionyard.io/model-versions-at-generation": ",".join(
            f"{r.name}={r.version}" for r in refs
        ),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(pod, annotations=notes),
        "spec": {
            "selector": {"matchLabels": pod.selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": pod.labels},
                "spec": pod_spec(settings, pod),
            },
        },
    }


def service(settings: Settings, pod: Pod) -> Manifest:
    port = spec.ports(settings)
    protocols = {"http": (port.http, "http"), "grpc": (port.grpc, "kubernetes.io/h2c")}
    ports = [
        {"name": name, "port": number, "targetPort": name, "appProtocol": protocol}
        for name, (number, protocol) in protocols.items()
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(pod),
        "spec": {
            "type": "ClusterIP",
            "selector": pod.selector,
            "ports": [{**p, "protocol": "TCP"} for p in ports],
        },
    }


def quantity(value: float) -> str:
    """A Kubernetes quantity in milli-units (``4.0`` -> ``4``, ``3.2`` -> ``3200m``)."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def hpa(pod: Pod, scaling: Scaling) -> Manifest:
    cpu = {"type": "Utilization", "averageUtilization": scaling.cpu_utilization_percent}
    in_flight = {"type": "AverageValue", "averageValue": quantity(scaling.in_flight_per_pod)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(pod),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": pod.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": cpu}},
                {
                    "type": "Pods",
                    "pods": {"metric": {"name": spec.IN_FLIGHT_METRIC}, "target": in_flight},
                },
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 30},
                        {"type": "Pods", "value": 2, "periodSeconds": 30},
                    ],
                    "selectPolicy": "Max",
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                },
            },
        },
    }


def pdb(pod: Pod) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(pod),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": pod.selector},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def service_monitor(pod: Pod) -> Manifest:
    endpoint = {"port": "http", "path": spec.METRICS_PATH, "interval": "15s"}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(pod),
        "spec": {
            "selector": {"matchLabels": pod.selector},
            "endpoints": [{**endpoint, "scrapeTimeout": "10s"}],
        },
    }


def adapter_rule() -> Manifest:
    """prometheus-adapter: the gauge per pod (summed over its ``model`` label), by the
    ``namespace`` and ``pod`` labels that the ServiceMonitor's scrape adds."""
    metric = spec.IN_FLIGHT_METRIC
    return {
        "seriesQuery": f'{metric}{{namespace!="",pod!=""}}',
        "resources": {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        },
        "name": {"matches": f"^{metric}$", "as": metric},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }


def adapter_values() -> Manifest:
    """Helm values (prometheus-community/prometheus-adapter) adding :func:`adapter_rule`."""
    return {"rules": {"custom": [adapter_rule()]}}


def kustomization(pod: Pod, resources: list[str], *, hashed: bool) -> Manifest:
    """``hashed=False`` where a custom resource mounts the ConfigMap (kustomize rewrites the
    hashed name only in the built-in kinds it knows)."""
    body: Manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
        "configMapGenerator": [{"name": pod.config_map, "files": ["serve.yaml"]}],
    }
    if not hashed:
        body["generatorOptions"] = {"disableNameSuffixHash": True}
    return body


def inference_service(settings: Settings, pod: Pod, scaling: Scaling) -> Manifest:
    """KServe: the same image and pod, HTTP only (OIP v2 REST), KServe's own HPA on CPU."""
    body = pod_spec(settings, pod, grpc=False)
    body["containers"][0]["name"] = KSERVE_CONTAINER
    predictor = {
        "labels": pod.labels,
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "scaleMetric": "cpu",
        "scaleTarget": scaling.cpu_utilization_percent,
        **body,
    }
    notes = {
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "serving.kserve.io/autoscalerClass": "hpa",
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(pod, annotations=notes),
        "spec": {"predictor": predictor},
    }


def custom_resource_schema(kind: str) -> dict[str, Any]:
    """The vendored JSON schema of ``ServiceMonitor`` or ``InferenceService`` (schemas/)."""
    files = {
        "ServiceMonitor": "servicemonitor_v1.json",
        "InferenceService": "inferenceservice_v1beta1.json.gz",
    }
    path = SCHEMAS / files[kind]
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    schema: dict[str, Any] = json.loads(raw)
    return schema
