"""``visionyard deploy plan``: one replica's sustainable images/s at a p99 target, measured, and
the autoscaler's targets derived from it.

A real ``visionyard serve`` starts on loopback with the model (the same settings, so the same
store, variant choice and threads as a pod), and closed-loop clients (:mod:`.load`) send it
JPEG images rendered at the model's contract size through REST ``:predict``, one concurrency
level after another (1, 2, 4, ... ``max_concurrency``; ``seconds`` is split evenly over them).
For each level: images/s, p50/p99 as the client sees them, the mean number of requests in
flight in the server (its summed request time from ``/metrics`` over the level's duration:
Little's law, the time average of :data:`.spec.IN_FLIGHT_METRIC`, which a sampled gauge only
approximates) and the CPU cores the server process used. Levels stop once p99 exceeds the
target, a request fails, or throughput stops growing (two levels within 2 % of the best: more
in flight only adds latency).

The capacity is the LOWEST concurrency whose images/s is within 5 % of the best level that
meets the target. The HPA targets leave ``headroom`` (default 0.8) for the time a scale-up
takes: in-flight per pod = capacity in-flight x headroom; CPU request = the cores used at
capacity (rounded up to 100m) with a utilisation target of headroom x 100 %.

The JSON written (``kind: visionyard.capacity-plan``, ``version: 1``) is :class:`CapacityPlan`;
``deploy k8s`` reads it with :func:`read_plan` and takes ``plan.hpa`` (:class:`HpaTargets`):

- ``hpa.metric``: the per-pod metric name (``visionyard_queue_depth``), a Pods metric through a
  Prometheus adapter, target type ``AverageValue`` = ``hpa.in_flight_per_pod``;
- ``hpa.cpu_request_millicores``: the container's ``resources.requests.cpu`` (``"1900m"``) and
  ``hpa.cpu_utilization_percent``: the Resource metric's ``averageUtilization``; both null
  when the CPU could not be measured (no ``/proc``);
- ``hpa.images_per_s_per_pod``: the capacity, for people and dashboards.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionyard import __version__
from visionyard.deploy.load import Connect, closed_loop, http_client, http_request
from visionyard.deploy.spec import IN_FLIGHT_METRIC, ModelRef
from visionyard.errors import ConfigError, VisionyardError

KIND = "visionyard.capacity-plan"
#: Within this share of the best passing rate, the lowest concurrency is the capacity.
NEAR_BEST = 0.95
#: A level that adds less than this share over the best so far counts as a plateau.
PLATEAU = 1.02


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Level(_Frozen):
    """One concurrency level's figures (latencies as the client sees them)."""

    concurrency: int
    images_per_s: float
    p50_ms: float
    p99_ms: float
    in_flight: float = Field(description=f"time average of {IN_FLIGHT_METRIC} (Little's law)")
    cpu_cores: float | None = Field(description="server process CPU seconds per second")
    requests: int
    failures: int


class HpaTargets(_Frozen):
    """What ``deploy k8s`` writes into the HorizontalPodAutoscaler and the container."""

    metric: str = IN_FLIGHT_METRIC
    in_flight_per_pod: float
    cpu_request_millicores: int | None
    cpu_utilization_percent: int | None
    images_per_s_per_pod: float
    headroom: float


class PlannedModel(_Frozen):
    name: str
    reference: str
    version: str
    input_size: tuple[int, int] = Field(description="height, width of the images sent")


class CapacityPlan(_Frozen):
    """The file ``deploy plan --out`` writes (see the module docstring)."""

    kind: str = KIND
    version: int = 1
    model: PlannedModel
    p99_target_ms: float
    measured_at: str
    host_cpus: int
    visionyard: str = __version__
    seconds_per_level: float
    levels: list[Level]
    capacity: Level
    hpa: HpaTargets


class PlanRequest(_Frozen):
    p99_ms: float
    seconds: float = 20.0
    max_concurrency: int = 32
    headroom: float = 0.8


def levels_for(max_concurrency: int) -> list[int]:
    """1, 2, 4, ... up to ``max_concurrency`` (which is always the last)."""
    levels = [1]
    while levels[-1] * 2 < max_concurrency:
        levels.append(levels[-1] * 2)
    if levels[-1] != max_concurrency:
        levels.append(max_concurrency)
    return levels


def choose(levels: list[Level], p99_ms: float) -> Level:
    """The capacity: lowest concurrency within :data:`NEAR_BEST` of the best passing rate."""
    passing = [lv for lv in levels if lv.p99_ms <= p99_ms and lv.failures == 0]
    if not passing:
        first = levels[0]
        raise ConfigError(
            f"no concurrency meets p99 <= {p99_ms:g} ms: at concurrency 1 p99 is "
            f"{first.p99_ms:.1f} ms ({first.images_per_s:.1f} images/s, {first.failures} "
            "failed); raise --p99-ms above that or serve a faster variant"
        )
    best = max(lv.images_per_s for lv in passing)
    return min((lv for lv in passing if lv.images_per_s >= NEAR_BEST * best),
               key=lambda lv: lv.concurrency)  # fmt: skip


def hpa_targets(capacity: Level, headroom: float) -> HpaTargets:
    cores = capacity.cpu_cores
    millicores = None if cores is None else max(100, math.ceil(cores * 10) * 100)
    return HpaTargets(
        in_flight_per_pod=round(max(capacity.in_flight, 0.1) * headroom, 2),
        cpu_request_millicores=millicores,
        cpu_utilization_percent=None if cores is None else round(headroom * 100),
        images_per_s_per_pod=round(capacity.images_per_s, 2),
        headroom=headroom,
    )


def write_plan(plan: CapacityPlan, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.model_dump_json(indent=2) + "\n", encoding="utf-8")


def read_plan(path: Path) -> CapacityPlan:
    """Read a plan written by ``deploy plan``; one-line ConfigError when it is not one."""
    try:
        plan = CapacityPlan.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read capacity plan {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(
            f"{path} is not a capacity plan from 'visionyard deploy plan': {where}: {first['msg']}"
        ) from exc
    if plan.kind != KIND:
        raise ConfigError(f"{path}: kind is {plan.kind!r}, expected {KIND!r}")
    return plan


# -- measuring ---------------------------------------------------------------------------------

OnLevel = Callable[[Level], None]


def measure(
    ref: ModelRef,
    request: PlanRequest,
    serve_args: list[str],
    inference_token: str | None = None,
    on_level: OnLevel | None = None,
) -> CapacityPlan:
    """Start ``visionyard [serve_args] serve``, drive it level by level, return the plan."""
    from visionyard.serving.launch import serve_subprocess

    with tempfile.TemporaryDirectory(prefix="vy-plan-") as tmp:
        log = Path(tmp) / "serve.log"
        try:
            with serve_subprocess({ref.name: ref.reference}, args=serve_args, log_path=log) as at:
                size = _input_size(at.http_url, ref.name)
                headers = {"Authorization": f"Bearer {inference_token}"} if inference_token else {}
                path = f"/v1/models/{ref.name}:predict"
                bodies = [http_request(at.http_url, path, b, headers) for b in images(size)]
                target = _Target(http_client(at.http_url, bodies), at.http_url, ref.name, at.pid)
                levels, per_level = _levels(target, request, on_level)
        except VisionyardError as exc:
            raise VisionyardError(f"{exc}; server log: {_last_line(log)}") from exc
    capacity = choose(levels, request.p99_ms)
    return CapacityPlan(
        model=PlannedModel(
            name=ref.name, reference=ref.reference, version=ref.version, input_size=size
        ),
        p99_target_ms=request.p99_ms,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        host_cpus=len(os.sched_getaffinity(0)),
        seconds_per_level=per_level,
        levels=levels,
        capacity=capacity,
        hpa=hpa_targets(capacity, request.headroom),
    )


@dataclass(frozen=True)
class _Target:
    connect: Connect
    http_url: str
    model: str
    pid: int | None

    @property
    def metrics_url(self) -> str:
        return self.http_url + "/metrics"


def _levels(
    target: _Target, request: PlanRequest, on_level: OnLevel | None
) -> tuple[list[Level], float]:
    plan = levels_for(request.max_concurrency)
    per_level = max(request.seconds / len(plan), 1.0)
    closed_loop(target.connect, 2, 1.0)  # warm-up: connections, first runs
    levels: list[Level] = []
    flat = 0
    for clients in plan:
        level = _one_level(target, clients, per_level)
        levels.append(level)
        if on_level is not None:
            on_level(level)
        best = max(lv.images_per_s for lv in levels[:-1]) if len(levels) > 1 else 0.0
        flat = flat + 1 if best and level.images_per_s < PLATEAU * best else 0
        if level.p99_ms > request.p99_ms or level.failures or flat >= 2:
            break
    return levels, per_level


def _one_level(target: _Target, clients: int, seconds: float) -> Level:
    cpu_before, busy_before = cpu_seconds(target.pid), _busy_seconds(target)
    started = time.perf_counter()
    result = closed_loop(target.connect, clients, seconds)
    elapsed = time.perf_counter() - started
    cpu_after, busy_after = cpu_seconds(target.pid), _busy_seconds(target)
    cores = None
    if cpu_before is not None and cpu_after is not None:
        cores = round((cpu_after - cpu_before) / elapsed, 3)
    return Level(
        concurrency=clients,
        images_per_s=round(result["rate"], 2),
        p50_ms=round(result["p50"], 2),
        p99_ms=round(result["p99"], 2),
        in_flight=round((busy_after - busy_before) / elapsed, 2),
        cpu_cores=cores,
        requests=result["requests"],
        failures=result["failures"],
    )


def _busy_seconds(target: _Target) -> float:
    """The server's summed request time for the model (``visionyard_request_duration_seconds_sum``,
    stage ``total``): its change over a window divided by the window is the mean number of
    requests in flight (Little's law), the time average of :data:`IN_FLIGHT_METRIC`."""
    try:
        text = urllib.request.urlopen(target.metrics_url, timeout=30).read().decode()
    except OSError as exc:
        raise VisionyardError(f"cannot read the server's /metrics: {exc}") from exc
    total = 0.0
    for line in text.splitlines():
        if line.startswith("visionyard_request_duration_seconds_sum{"):
            labels, value = line.rsplit(" ", 1)
            if f'model="{target.model}"' in labels and 'stage="total"' in labels:
                total += float(value)
    return total


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads); None without /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _input_size(http_url: str, model: str) -> tuple[int, int]:
    import json

    try:
        with urllib.request.urlopen(f"{http_url}/v2/models/{model}", timeout=30) as answer:
            metadata = json.loads(answer.read())
        size = metadata["parameters"]["contract"]["preprocessing"]["input_size"]
        return int(size["height"]), int(size["width"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise VisionyardError(
            f"cannot read the contract of {model!r} from the server: {exc}"
        ) from exc


def images(size: tuple[int, int], count: int = 12) -> list[bytes]:
    """Synthetic shapes photos (:mod:`visionyard.data.synth`) at ``size``, as JPEG (quality 90)."""
    from PIL import Image

    from visionyard.data.synth import make_classification_set

    height, width = size
    with tempfile.TemporaryDirectory(prefix="vy-plan-images-") as tmp:
        root = make_classification_set(
            tmp, train_per_class=max(1, count // 4), val_per_class=1, size=max(16, height, width)
        )
        out = []
        for path in sorted(root.glob("*/*/*.png"))[:count]:
            with Image.open(path) as image:
                buffer = io.BytesIO()
                image.convert("RGB").resize((width, height)).save(buffer, "JPEG", quality=90)
                out.append(buffer.getvalue())
    return out


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(none)"
    return lines[-1][-300:] if lines else "(empty)"
