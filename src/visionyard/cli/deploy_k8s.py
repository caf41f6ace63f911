"""``visionyard deploy k8s``: a kustomize base for the server; registered on the ``deploy``
group in :mod:`visionyard.cli.deploy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from visionyard.cli.console import app_context, out

T = TypeVar("T")

_WHAT = {
    "deployment.yaml": "Deployment: probes, drain, non-root, read-only root, topology spread",
    "service.yaml": "Service: HTTP and gRPC (appProtocol)",
    "hpa.yaml": "HorizontalPodAutoscaler: CPU and in-flight requests per pod",
    "pdb.yaml": "PodDisruptionBudget",
    "servicemonitor.yaml": "ServiceMonitor (Prometheus operator)",
    "serve.yaml": "server settings, as a ConfigMap (no secrets)",
    "kustomization.yaml": "kustomize base",
    "values.yaml": "prometheus-adapter Helm values: the per-pod metric for the HPA",
    "inferenceservice.yaml": "KServe InferenceService (same image, OIP v2)",
}


def k8s(
    ctx: typer.Context,
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the kustomize base to."),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="NAME=NAME@ALIAS the server serves (repeatable)."
    ),
    min_replicas: int = typer.Option(2, "--min-replicas", min=1, help="HPA lower bound."),
    max_replicas: int = typer.Option(10, "--max-replicas", min=1, help="HPA upper bound."),
    image: str | None = typer.Option(
        None, "--image", help="Server image (default: visionyard-serving:<visionyard version>)."
    ),
    name: str = typer.Option("visionyard", "--name", help="Name of every resource."),
    cpu: str | None = typer.Option(
        None, "--cpu", help="CPU request per pod, a Kubernetes quantity (default: plan, else 2)."
    ),
    memory: str = typer.Option("2Gi", "--memory", help="Memory request and limit per pod."),
    target_in_flight: float | None = typer.Option(
        None,
        "--target-in-flight",
        min=0.001,
        help="HPA target: in-flight requests per pod (default: plan, else 4).",
    ),
    target_cpu: int | None = typer.Option(
        None,
        "--target-cpu",
        min=1,
        max=100,
        help="HPA target: CPU utilisation, percent (default: plan, else 70).",
    ),
    plan_file: Path | None = typer.Option(
        None, "--plan", help="Capacity plan from 'visionyard deploy plan': the HPA targets."
    ),
    service_monitor: bool = typer.Option(
        True, "--service-monitor/--no-service-monitor", help="Write a ServiceMonitor."
    ),
    kserve: bool = typer.Option(False, "--kserve", help="Also write kserve/ (InferenceService)."),
    force: bool = typer.Option(False, "--force", help="Empty a non-empty --out folder first."),
) -> None:
    """Write a kustomize base: Deployment, Service, HPA, PDB, ConfigMap, ServiceMonitor."""
    from visionyard.deploy import spec
    from visionyard.deploy.k8s import K8sOptions, Resources, Scaling, generate

    planned = _planned(plan_file, model)
    scaling = Scaling(
        min_replicas,
        max_replicas,
        _first(target_in_flight, planned.get("in_flight"), Scaling().in_flight_per_pod),
        _first(target_cpu, planned.get("cpu_percent"), Scaling().cpu_utilization_percent),
    )
    options = K8sOptions(
        name=name,
        image=image or "",
        scaling=scaling,
        resources=Resources(_first(cpu, planned.get("cpu"), Resources().cpu), memory),
        service_monitor=service_monitor,
        kserve=kserve,
    )
    written = generate(out_dir, app_context(ctx).settings, model, options, force)
    table = Table("file", "what", title=f"kustomize base in {escape(str(out_dir))}")
    for path in written:
        table.add_row(escape(str(path.relative_to(out_dir))), _WHAT.get(path.name, ""))
    out().print(table)
    for line in (
        f"secrets: kubectl create secret generic {spec.TRACKING_SECRET} "
        "--from-literal=VISIONYARD_TRACKING__URI=... [--from-literal=MLFLOW_TRACKING_TOKEN=...]",
        f"         kubectl create secret generic {spec.ADMIN_SECRET} "
        f"--from-literal={spec.ADMIN_SECRET_KEY}=...  (optional: admin calls)",
        f"apply:   kubectl apply -k {out_dir}",
    ):
        out().print(escape(line), highlight=False, soft_wrap=True)
    source = f"from {plan_file}" if plan_file else "given or default"
    out().print(
        escape(
            f"HPA targets ({source}): {scaling.in_flight_per_pod:g} requests in flight per pod, "
            f"CPU {scaling.cpu_utilization_percent} % of {options.resources.cpu}"
        ),
        highlight=False,
        soft_wrap=True,
    )


def _first(*values: T | None) -> T:
    """The first value given: an explicit option, then the capacity plan, then the default."""
    return next(value for value in values if value is not None)


def _planned(plan_file: Path | None, models: list[str]) -> dict[str, Any]:
    """The HPA targets of a capacity plan (``deploy plan``) measured on one of ``models``."""
    if plan_file is None:
        return {}
    from visionyard.deploy.k8s import check_planned_model
    from visionyard.deploy.plan import read_plan

    plan = read_plan(plan_file)
    check_planned_model(plan.model.reference, models)
    hpa = plan.hpa
    millicores = hpa.cpu_request_millicores
    return {
        "in_flight": hpa.in_flight_per_pod,
        "cpu_percent": hpa.cpu_utilization_percent,
        "cpu": f"{millicores}m" if millicores else None,
    }
