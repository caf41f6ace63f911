"""``deploy k8s`` manifests: valid for Kubernetes (kubernetes-validate, strict), built by
``kubectl kustomize``, custom resources valid against the vendored CRD schemas, and agreeing
with what the server really does (probe paths, port, drain, the metric the HPA scales on).

No registry here: the model references are given already resolved (the CLI tests resolve them).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from visionyard.deploy import k8s, spec
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.metrics import ServingMetrics
from visionyard.serving.pool import ModelPool, PoolConfig
from visionyard.serving.rest.routes import create_rest_app
from visionyard.settings import Settings, load_settings

#: Kubernetes versions validated against: the oldest with the preStop ``sleep`` handler on by
#: default that is still widely run, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
BUILT_IN = ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")
ADMIN_TOKEN = "s3cret-admin-token"
TRACKING_URI = "postgresql://mlflow:s3cret-password@db.internal/mlflow"
REFS = [spec.ModelRef("shapes", "shapes@production", "3"), spec.ModelRef("dets", "dets/7", "7")]


def settings() -> Settings:
    serving = {"http_port": 9100, "grpc_port": 9101, "drain_s": 12.5, "admin_token": ADMIN_TOKEN}
    return Settings(serving=serving, tracking={"uri": TRACKING_URI})


def options(**changes: Any) -> k8s.K8sOptions:
    scaling = k8s.Scaling(min_replicas=2, max_replicas=10, in_flight_per_pod=3.2)
    return k8s.K8sOptions(**{"scaling": scaling, "kserve": True, **changes})


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s")
    spec.write_files(out, k8s.render(settings(), REFS, options()))
    return out


def load(base: Path, name: str) -> dict[str, Any]:
    body = yaml.safe_load((base / name).read_text())
    assert isinstance(body, dict)
    return body


def container(base: Path) -> dict[str, Any]:
    pod = load(base, "deployment.yaml")["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    assert isinstance(only, dict)
    return only


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot check that kustomize builds the base")
    done = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# -- validation by the ecosystem's tools ---------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_resources_pass_kubernetes_validate_strict(base: Path, version: str) -> None:
    docs = [load(base, name) for name in BUILT_IN] + [
        doc for doc in kustomize(base) if doc["kind"] == "ConfigMap"
    ]
    assert [d["kind"] for d in docs] == [
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"
    ]  # fmt: skip
    for doc in docs:
        # raises on an invalid resource, and on a kind or apiVersion the version does not know
        assert kubernetes_validate.validate(doc, version, strict=True) == version[:4]


def test_kubernetes_validate_strict_rejects_an_unknown_field(base: Path) -> None:
    broken = load(base, "deployment.yaml")
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("servicemonitor.yaml", "ServiceMonitor"),
        ("kserve/inferenceservice.yaml", "InferenceService"),
    ],
)
def test_custom_resources_match_their_vendored_schemas(base: Path, path: str, kind: str) -> None:
    doc = load(base, path)
    assert doc["kind"] == kind
    schema = k8s.custom_resource_schema(kind)
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(doc)] == []
    if kind == "ServiceMonitor":
        doc["spec"]["endpoints"][0]["paht"] = "/metrics"
    else:
        doc["spec"]["predictor"]["containers"][0]["readOnlyRootFilesystem"] = True
    assert list(validator.iter_errors(doc)), "the schema must refuse an unknown field"


def test_kustomize_builds_the_base_and_hashes_the_config_map(base: Path) -> None:
    docs = kustomize(base)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
         "ServiceMonitor"]
    )  # fmt: skip
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    assert re.fullmatch(r"visionyard-config-[a-z0-9]{10}", config["metadata"]["name"])
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    listed = load(base, "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted([*BUILT_IN, "servicemonitor.yaml"])


def test_kserve_folder_builds_and_its_config_map_name_is_the_mounted_one(base: Path) -> None:
    docs = kustomize(base / "kserve")
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == ["ConfigMap", "InferenceService"]
    predictor = by_kind["InferenceService"]["spec"]["predictor"]
    volumes = {v["name"]: v for v in predictor["volumes"]}
    assert volumes["config"]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    (server,) = predictor["containers"]
    assert server["image"] == container(base)["image"]
    assert [p["containerPort"] for p in server["ports"]] == [9100]


# -- agreement with the server -------------------------------------------------------------------


def test_probes_are_on_paths_and_port_the_rest_app_answers(base: Path) -> None:
    server = container(base)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": 9100, "grpc": 9101}
    probes = {kind: server[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe",
                                                         "readinessProbe")}  # fmt: skip
    assert {p["port"] for p in probes.values()} == {settings().serving.http_port}
    assert probes["readinessProbe"]["path"] == spec.READY_PATH == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == spec.LIVE_PATH
    metrics = ServingMetrics()
    app = create_rest_app(DataPlane(ModelPool({}, PoolConfig(), metrics), metrics),
                          settings().serving)  # fmt: skip

    async def get_all() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            return [(await client.get(p["path"])).status_code for p in probes.values()]

    import asyncio

    assert asyncio.run(get_all()) == [200, 200, 200]


def test_grace_period_covers_pre_stop_and_the_servers_drain(base: Path) -> None:
    pod = load(base, "deployment.yaml")["spec"]["template"]["spec"]
    pre_stop = container(base)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop == spec.PRESTOP_SLEEP_S
    drain = settings().serving.drain_s
    assert pod["terminationGracePeriodSeconds"] == pre_stop + math.ceil(drain) + spec.GRACE_MARGIN_S
    assert pod["terminationGracePeriodSeconds"] == 5 + 13 + 5
    predictor = load(base, "kserve/inferenceservice.yaml")["spec"]["predictor"]
    assert predictor["terminationGracePeriodSeconds"] == pod["terminationGracePeriodSeconds"]


def test_config_map_is_the_servers_serve_yaml_without_secrets(base: Path) -> None:
    text = (base / "serve.yaml").read_text()
    loaded = load_settings(base / "serve.yaml", environ={}).settings
    assert loaded.serving.models == {"shapes": "shapes@production", "dets": "dets/7"}
    assert (loaded.serving.http_port, loaded.serving.drain_s) == (9100, 12.5)
    assert loaded.serving.host == "0.0.0.0"
    assert text == (base / "kserve" / "serve.yaml").read_text()
    every_file = "".join(p.read_text() for p in base.rglob("*.yaml"))
    assert ADMIN_TOKEN not in every_file
    assert "s3cret-password" not in every_file
    assert "kind: Secret\n" not in every_file


def test_secrets_are_referenced_by_name(base: Path) -> None:
    server = container(base)
    env = {e["name"]: e for e in server["env"]}
    admin = env["VISIONYARD_SERVING__ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert admin == {"name": spec.ADMIN_SECRET, "key": spec.ADMIN_SECRET_KEY, "optional": True}
    assert server["envFrom"] == [{"secretRef": {"name": spec.TRACKING_SECRET, "optional": False}}]
    assert env["VISIONYARD_CONFIG"]["value"] == spec.CONFIG_FILE


def test_pod_runs_non_root_on_a_read_only_root_with_writable_state_and_tmp(base: Path) -> None:
    pod = load(base, "deployment.yaml")["spec"]["template"]["spec"]
    server = container(base)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == spec.UID
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["allowPrivilegeEscalation"] is False
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert {mounts[spec.STATE_DIR], mounts["/tmp"], mounts[spec.HOME_DIR]} == empty
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_service_names_http_and_grpc_with_app_protocols(base: Path) -> None:
    ports = {p["name"]: p for p in load(base, "service.yaml")["spec"]["ports"]}
    assert (ports["http"]["port"], ports["http"]["appProtocol"]) == (9100, "http")
    assert (ports["grpc"]["port"], ports["grpc"]["appProtocol"]) == (9101, "kubernetes.io/h2c")
    monitor = load(base, "servicemonitor.yaml")["spec"]
    assert monitor["endpoints"][0]["port"] == "http"
    assert monitor["endpoints"][0]["path"] == spec.METRICS_PATH
    service_labels = load(base, "service.yaml")["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= service_labels.items()


def test_hpa_scales_on_cpu_and_a_per_pod_gauge_the_server_exports(base: Path) -> None:
    body = load(base, "hpa.yaml")["spec"]
    assert (body["minReplicas"], body["maxReplicas"]) == (2, 10)
    by_type = {m["type"]: m for m in body["metrics"]}
    assert by_type["Resource"]["resource"]["target"]["averageUtilization"] == 70
    pods = by_type["Pods"]["pods"]
    assert pods["metric"]["name"] == spec.IN_FLIGHT_METRIC
    assert pods["target"] == {"type": "AverageValue", "averageValue": "3200m"}
    metrics = ServingMetrics()
    metrics.queue_depth.labels(model="shapes").set(3)
    exposed = metrics.render().decode()
    assert f"# TYPE {spec.IN_FLIGHT_METRIC} gauge" in exposed
    # one series per model, no pod label: the scrape adds ``pod``, the adapter sums per pod
    assert f'{spec.IN_FLIGHT_METRIC}{{model="shapes"}} 3.0' in exposed


def test_adapter_rule_exposes_the_hpa_metric_per_pod(base: Path) -> None:
    (rule,) = load(base, k8s.ADAPTER_VALUES)["rules"]["custom"]
    assert rule["seriesQuery"].startswith(spec.IN_FLIGHT_METRIC + "{")
    hpa_metrics = load(base, "hpa.yaml")["spec"]["metrics"]
    assert rule["name"]["as"] == hpa_metrics[1]["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert "by (<<.GroupBy>>)" in rule["metricsQuery"]


def test_adapter_query_is_valid_promql_once_rendered(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: cannot parse the adapter's query")
    query = (
        k8s.adapter_rule()["metricsQuery"]
        .replace("<<.Series>>", spec.IN_FLIGHT_METRIC)
        .replace("<<.LabelMatchers>>", 'namespace="serving",pod=~"a|b"')
        .replace("<<.GroupBy>>", "pod")
    )
    rules = {"groups": [{"name": "adapter", "rules": [{"record": "x:y", "expr": query}]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# -- options -------------------------------------------------------------------------------------


def test_service_monitor_and_kserve_are_optional(tmp_path: Path) -> None:
    files = k8s.render(settings(), REFS, options(service_monitor=False, kserve=False))
    assert "servicemonitor.yaml" not in files
    assert not [f for f in files if f.startswith("kserve/")]
    assert "servicemonitor.yaml" not in yaml.safe_load(files["kustomization.yaml"])["resources"]


def test_image_defaults_to_this_version_and_can_be_chosen(base: Path) -> None:
    assert container(base)["image"] == f"visionyard-serving:{spec.visionyard_version()}"
    files = k8s.render(settings(), REFS, options(image="registry.example/vy:1.2"))
    assert "image: registry.example/vy:1.2\n" in files["deployment.yaml"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Bad_Name"}, "--name 'Bad_Name'"),
        ({"scaling": k8s.Scaling(min_replicas=5, max_replicas=2)}, "--min-replicas (5)"),
    ],
)
def test_bad_options_are_refused_before_anything_is_resolved(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    from visionyard.errors import ConfigError

    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape(message)):
        k8s.generate(out, settings(), ["shapes=shapes@production"], options(**changes))
    assert not out.exists()
