"""Benchmark: what a rollout costs production, and how fast a breach takes traffic back.

One ``visionyard serve`` subprocess follows a real registry (SQLite store in a temp folder) and
serves two registered models by their production alias:

- ``m``: a ResNet-18-style classifier (random weights), 224x224, real JPEG photos at 640x480;
  version 1 in production, version 2 the same network registered again (so a candidate costs
  exactly what production costs);
- ``c``: the tests' colour classifier; version 2 fails every flat image inside ONNX Runtime
  (and answers every photo), so it can "start failing" mid-rollout.

Each round measures every condition back to back on ``m`` (rollouts started and aborted through
the registry, the server following within its poll interval): no rollout, shadow 20 %, shadow
100 %, canary 10 % and canary 100 % (held: ``min_requests`` out of reach), each as images/s at
saturation (8 closed-loop clients) and p50/p99 with one request in flight; each round starts
one condition later than the one before (so none is always measured first). The report gives
the median over rounds of each figure and of its ratio to the same round's "no rollout" (issue
12's targets: shadow 100 % p50 <= 1.05x and images/s >= 0.95x; canary routing >= 0.98x).

Then the breach: a canary of 50 % of ``c`` serves photos until its step has ``min_requests``,
then the client switches to flat images and the candidate fails each of its requests. Measured
per trial, from the client's own answers: the time from the first failure, and from the moment
the policy's error rule can fire (the deciding window closes: enough requests and the error
rate above ``max_error_rate``), to the last answer from the candidate (traffic back on
production; target < 2 s after the window closes). The server judges figures every
``serving.rollout_decide_interval_s`` (default 0.5 s).

    .venv/bin/python bench/bench_rollout.py [--seconds 5] [--repeat 3] [--breaches 3]
        [--lone-threads 1]

With one request in flight the server runs production's batch on every core (a second session,
``serving.lone_intra_op_threads``), and a shadow running then takes a core from it;
``--lone-threads 1`` tells whether that is the shadow's p50 cost (on 2026-12-05 it was not: the
shadow-100 p50 ratio stayed ~2x with one thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(BENCH.parent))
from bench_serving import photos  # noqa: E402
from bench_serving_load import closed_loop, http_client, http_request  # noqa: E402
from tests.fixtures.runtime import colour_classifier_onnx, colour_contract  # noqa: E402
from tests.fixtures.serving import encoded  # noqa: E402
from tests.integration.test_server_rollout import failing_on_real_images  # noqa: E402

from visionyard.bundle.store import write_bundle  # noqa: E402
from visionyard.monitor.rollout.lifecycle import (  # noqa: E402
    StartRequest,
    abort_rollout,
    start_rollout,
)
from visionyard.monitor.rollout.policy import Policy  # noqa: E402
from visionyard.monitor.rollout.state import Rollout, read_rollout  # noqa: E402
from visionyard.registry import Registry  # noqa: E402
from visionyard.serving.launch import serve_subprocess  # noqa: E402
from visionyard.settings import Settings  # noqa: E402
from visionyard.tracking import start_run  # noqa: E402

SATURATE, ONE = 8, 1
#: Held rollouts: no decision can be made while they are measured.
HELD = Policy(min_requests=10**9, min_step_seconds=10**6)
BREACH = Policy(min_requests=30, min_step_seconds=600, max_error_rate=0.05,
                max_p99_latency_ratio=1000.0)  # fmt: skip
CONDITIONS: dict[str, tuple[str, tuple[int, ...]] | None] = {
    "off": None,
    "shadow-20": ("shadow", (20,)),
    "shadow-100": ("shadow", (100,)),
    "canary-10": ("canary", (10, 100)),
    "canary-100": ("canary", (100,)),
}
SERVER_ENV = {"VISIONYARD_SERVING__POLL_INTERVAL_S": "1.0", "VISIONYARD_LOG_LEVEL": "WARNING"}


def register(settings: Settings, root: Path, name: str, model: bytes, contract: Any) -> str:
    bundle = write_bundle(root / uuid.uuid4().hex[:8], model=model, contract=contract)
    with start_run(settings=settings) as run:
        run.log_bundle(bundle.path)
        run_id = run.run_id
    # force: the same network registered twice (two versions that cost exactly the same)
    return str(Registry(settings).register(run_id, name, force=True).version.version)


def build_models(settings: Settings, root: Path) -> dict[str, str]:
    """Registered names: ``m`` (ResNet-18-style twice) and ``c`` (colour, failing v2)."""
    import torch

    from visionyard.contract.schema import VisionContract
    from visionyard.export import export_torch
    from visionyard.train.models import resnet18

    torch.manual_seed(0)
    contract = VisionContract.classification([f"class{i}" for i in range(10)], input_size=224)
    net = export_torch(resnet18(10), contract)
    names = {"m": "bench-resnet", "c": "bench-colour"}
    for version in ("1", "2"):
        assert register(settings, root, names["m"], net, contract) == version
    assert register(settings, root, names["c"], colour_classifier_onnx(), colour_contract()) == "1"
    assert register(settings, root, names["c"], failing_on_real_images(), colour_contract()) == "2"
    for name in names.values():
        Registry(settings).promote(name, "1", "production")
    return names


def shown(url: str, served: str) -> dict[str, Any] | None:
    body = httpx.get(f"{url}/v2/models/{served}", timeout=10).json()
    found: dict[str, Any] | None = body.get("parameters", {}).get("rollout")
    return found


def wait(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the server to follow the rollout")
        time.sleep(0.05)
    return found


def switch(registry: Registry, url: str, name: str, condition: str) -> None:
    """End any running rollout of ``m``, then start ``condition``'s (held) and wait until the
    server routes it."""
    current = read_rollout(registry, name)
    if current is not None and current.running:
        abort_rollout(registry, name)
    wait(lambda: shown(url, "m") is None)
    plan = CONDITIONS[condition]
    if plan is None:
        return
    mode, steps = plan
    start_rollout(registry, StartRequest(name, "2", mode, steps, HELD))  # type: ignore[arg-type]
    wait(lambda: shown(url, "m"))


def measure(url: str, images: list[bytes], seconds: float) -> dict[str, float]:
    path = "/v1/models/m:predict"
    connect = http_client(url, [http_request(url, path, body) for body in images])
    closed_loop(connect, 2, 1.0)  # warm-up: connections, the candidate's first runs
    busy = closed_loop(connect, SATURATE, seconds)
    one = closed_loop(connect, ONE, seconds)
    return {"rate": busy["rate"], "failures": busy["failures"] + one["failures"],
            "p50": one["p50"], "p99": one["p99"], "busy_p50": busy["p50"]}  # fmt: skip


def shed_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    lines = [ln for ln in text.splitlines() if ln.startswith("visionyard_shadow_shed_total{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if 'model="m"' in ln)


def rounds(
    registry: Registry, url: str, name: str, images: list[bytes], args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {c: [] for c in CONDITIONS}
    order = list(CONDITIONS)
    for index in range(args.repeat):
        turn = index % len(order)  # each round starts one later: no condition always goes first
        for condition in order[turn:] + order[:turn]:
            switch(registry, url, name, condition)
            shed = shed_total(url)
            found = measure(url, images, args.seconds)
            found["shed"] = shed_total(url) - shed
            out[condition].append(found)
        brief = ", ".join(f"{c} {out[c][-1]['rate']:.1f}/s" for c in CONDITIONS)
        print(f"round {index + 1}/{args.repeat}: {brief}", flush=True)
    switch(registry, url, name, "off")
    return out


def breach(registry: Registry, url: str, name: str, good: bytes, bad: bytes) -> dict[str, float]:
    """One trial: good traffic until the step has enough requests, then failures."""
    start_rollout(registry, StartRequest(name, "2", "canary", (50, 100), BREACH))
    wait(lambda: shown(url, "c"))
    candidate = errors = 0
    failing_at = decidable_at = last_candidate = None
    production_run = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while production_run < 60:  # 60 production answers in a row: 2**-60 while still split
            image = bad if candidate >= BREACH.min_requests else good
            if image is bad and failing_at is None:
                failing_at = time.perf_counter()
            response = http.post("/v1/models/c:predict", content=image)
            now = time.perf_counter()
            served_by_candidate = response.status_code != 200 or (
                response.json()["model_version"] == "2"
            )
            if not served_by_candidate:
                production_run += 1
                continue
            production_run, last_candidate = 0, now
            candidate += 1
            errors += int(response.status_code != 200)
            rate_now = errors / candidate
            if decidable_at is None and rate_now > BREACH.max_error_rate:
                decidable_at = now
    state = wait(lambda: ended(registry, name))
    assert failing_at is not None
    assert decidable_at is not None
    assert last_candidate is not None
    return {"from_failure_s": last_candidate - failing_at,
            "from_window_s": last_candidate - decidable_at,
            "failed_requests": float(errors), "candidate_requests": float(candidate),
            "rule_ok": float(state.rule == "max_error_rate")}  # fmt: skip


def ended(registry: Registry, name: str) -> Rollout | None:
    state = read_rollout(registry, name)
    return state if state is not None and not state.running else None


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def ratio(found: dict[str, list[dict[str, float]]], condition: str, key: str) -> float:
    """The median over rounds of the condition's figure / the same round's "off" figure."""
    pairs = zip(found[condition], found["off"], strict=True)
    return statistics.median(row[key] / off[key] for row, off in pairs)


def report(found: dict[str, list[dict[str, float]]], trials: list[dict[str, float]]) -> None:
    print(f"\n{'condition':<12}{'img/s':>8}{'x off':>8}{'p50 ms':>9}{'x off':>8}"
          f"{'p99 ms':>9}{'shed':>8}{'fail':>6}")  # fmt: skip
    for condition, rows in found.items():
        rate, p50 = median(rows, "rate"), median(rows, "p50")
        print(f"{condition:<12}{rate:>8.1f}{ratio(found, condition, 'rate'):>8.3f}{p50:>9.2f}"
              f"{ratio(found, condition, 'p50'):>8.3f}{median(rows, 'p99'):>9.2f}"
              f"{median(rows, 'shed'):>8.0f}{sum(r['failures'] for r in rows):>6.0f}")  # fmt: skip
    targets = [
        ("shadow 100 % p50 <= 1.05x", ratio(found, "shadow-100", "p50"), 1.05, "le"),
        ("shadow 100 % images/s >= 0.95x", ratio(found, "shadow-100", "rate"), 0.95, "ge"),
        ("canary 10 % img/s >= 0.98x (own bar)", ratio(found, "canary-10", "rate"), 0.98, "ge"),
        ("canary 100 % images/s >= 0.98x", ratio(found, "canary-100", "rate"), 0.98, "ge"),
    ]
    if trials:
        worst = max(t["from_window_s"] for t in trials)
        targets.append(("breach -> production < 2 s after the window (worst)", worst, 2.0, "le"))
    print("\nbreach trials (canary 50 % of c; candidate fails every request once it has "
          f"{BREACH.min_requests}):")  # fmt: skip
    for i, t in enumerate(trials, 1):
        print(f"  {i}: back on production {t['from_window_s']:.2f} s after the window closed, "
              f"{t['from_failure_s']:.2f} s after the first failure; {t['failed_requests']:.0f} "
              f"failed of {t['candidate_requests']:.0f} candidate requests; rule max_error_rate "
              f"{'recorded' if t['rule_ok'] else 'NOT recorded'}")  # fmt: skip
    print("\ntargets (issue 12):")
    for label, value, limit, way in targets:
        met = value <= limit if way == "le" else value >= limit
        print(f"  {label:<52} {value:7.3f}  {'met' if met else 'NOT met'}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="side-by-side rounds (median)")
    parser.add_argument("--breaches", type=int, default=3, help="breach trials")
    parser.add_argument(
        "--lone-threads",
        type=int,
        default=None,
        help="serving.lone_intra_op_threads of the server (1: a lone request runs on one core, "
        "so a shadow does not take a core from it)",
    )
    args = parser.parse_args()
    print(f"load average before: {load()}", flush=True)
    images = photos()
    with tempfile.TemporaryDirectory(prefix="vy-bench-rollout-") as tmp:
        root = Path(tmp)
        settings = Settings(home=root / ".visionyard", tracking={"experiment": "bench"})
        names = build_models(settings, root)
        registry = Registry(settings)
        flags = ["--home", str(settings.home), "--tracking-uri", settings.tracking_uri()]
        models = {served: f"{name}@production" for served, name in names.items()}
        env = dict(SERVER_ENV)
        if args.lone_threads is not None:
            env["VISIONYARD_SERVING__LONE_INTRA_OP_THREADS"] = str(args.lone_threads)
        with serve_subprocess(models, args=flags, env=env) as urls:
            url = urls.http_url
            found = rounds(registry, url, names["m"], images, args)
            good, bad = photos()[0], encoded((255, 0, 0))
            trials = [breach(registry, url, names["c"], good, bad) for _ in range(args.breaches)]
        report(found, trials)
    print(f"load average after: {load()} ({os.cpu_count()} cores: above that, other work competed)")


if __name__ == "__main__":
    main()
