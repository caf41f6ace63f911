"""The report of bench_serving.py: medians of the side-by-side rounds, ratios against targets."""

from __future__ import annotations

import statistics
from typing import Any

CONCURRENCY = 32  # closed-loop clients at saturation (bench_serving.py)
MINIMAL = {"minimal": "inline", "minimal-threads": "threads", "minimal-upload": "upload"}
VARIANTS = ("fp32", "int8")
#: Served / in-process best, per protocol (gRPC: issue 16).
TARGETS = {"predict": 0.90, "binary": 0.90, "grpc": 0.95}
#: Clients of the light-load case: one request in flight, and a few more.
ONE, FEW = 1, 8


def median(rounds: list[dict[str, Any]], key: str, field: str = "rate") -> float:
    return float(statistics.median(r[key][field] for r in rounds))


def median_ratio(rounds: list[dict[str, Any]], top: str, bottom: str) -> float:
    return float(statistics.median(r[top]["rate"] / r[bottom]["rate"] for r in rounds))


def report(results: dict[str, Any]) -> None:
    rounds = results["rounds"]
    print(f"\n== images/s at saturation: medians of {len(rounds)} side-by-side rounds ==")
    print(f"({CONCURRENCY} closed-loop clients; client cores used, per target below)")
    for variant in VARIANTS:
        best = median(rounds, f"inprocess-{variant}")
        config = rounds[0][f"inprocess-{variant}"]["config"]
        print(f"{variant}: in-process best {best:6.1f} ({config})")
        for kind in ("predict", "binary", "grpc"):
            key = f"{kind}-{variant}"
            ratio = median_ratio(rounds, key, f"inprocess-{variant}")
            client = f"{rounds[0][key]['client']} client {median(rounds, key, 'client_cpu'):.3f}"
            print(
                f"  visionyard {kind:8s} {median(rounds, key):6.1f}   "
                f"ratio {ratio:.2f}x (target >= {TARGETS[kind]:.2f})   [{client} cores]"
            )
    plain = median(rounds, "plain-loop")
    print(f"\nbaselines, FP32 (the model as exported): plain single-threaded loop {plain:6.1f}")
    forms = {"inline": "async endpoint", "threads": "thread pool", "upload": "file upload"}
    for name, form in ((n, forms[f]) for n, f in MINIMAL.items()):
        rate = median(rounds, name)
        calibration = median_ratio(rounds, name, "plain-loop")
        ratio = median_ratio(rounds, "predict-fp32", name)
        print(
            f"  minimal FastAPI ({form:14s}) {rate:6.1f} = {calibration:.2f}x the plain loop   "
            f"visionyard FP32/minimal {ratio:.2f}x (target >= 1.25), "
            f"INT8/minimal {median_ratio(rounds, 'predict-int8', name):.2f}x"
        )
    print("  (the issue measured its minimal server at 0.75-0.92x of the plain loop)")
    ceiling = median_ratio(rounds, "inprocess-fp32", "minimal")
    print(
        f"  ceiling for any FP32 server of this model: in-process best / minimal (async endpoint)"
        f" = {ceiling:.2f}x"
    )
    if "mlflow" in rounds[0]:
        ml = median(rounds, "mlflow")
        ratio = median_ratio(rounds, "predict-fp32", "mlflow")
        int8 = median_ratio(rounds, "predict-int8", "mlflow")
        ceiling = median_ratio(rounds, "inprocess-fp32", "mlflow")
        print(
            f"mlflow models serve {ml:6.2f}   visionyard FP32/mlflow {ratio:.1f}x (target >= 10), "
            f"INT8/mlflow {int8:.1f}x; FP32 ceiling (in-process best / mlflow) {ceiling:.1f}x; "
            f"its client must also spend {results['mlflow_encode_ms']:.0f} ms/image on JSON"
        )
    _report_light(results)
    _report_rest(results)


def _report_light(results: dict[str, Any]) -> None:
    """One request in flight (visionyard :predict vs the minimal app, p50), and a few clients."""
    rounds = results["rounds"]
    if "one-predict-fp32" not in rounds[0]:
        return
    ours, theirs = median(rounds, "one-predict-fp32", "p50"), median(rounds, "one-minimal", "p50")
    few = median_ratio(rounds, "few-predict-fp32", "inprocess-fp32")
    print(f"\n== light load, FP32 REST :predict (medians of {len(rounds)} rounds) ==")
    print(
        f"{ONE} client: visionyard p50 {ours:.1f} ms "
        f"(p99 {median(rounds, 'one-predict-fp32', 'p99'):.1f}), minimal FastAPI (async "
        f"endpoint) p50 {theirs:.1f} ms (p99 {median(rounds, 'one-minimal', 'p99'):.1f}): "
        f"{ours / theirs:.2f}x (target <= 1.00)"
    )
    print(
        f"{FEW} clients: visionyard {median(rounds, 'few-predict-fp32'):.1f} images/s = "
        f"{few:.2f}x the in-process best (target >= 0.95)"
    )
    layouts = [r["inprocess-fp32"].get("layouts", {}) for r in rounds]
    if all("2x1x4" in layout for layout in layouts):
        ceiling = statistics.median(
            layout["2x1x4"] / r["inprocess-fp32"]["rate"]
            for layout, r in zip(layouts, rounds, strict=True)
        )
        print(
            f"  ceiling: the in-process pipeline itself with {FEW} images in flight (2 threads x "
            f"batch 4) runs at {ceiling:.2f}x its best layout; visionyard at {FEW} clients = "
            f"{few / ceiling:.2f}x that"
        )
    if "rss_mb" in results:
        print(f"server RSS after the rounds (both models loaded): {results['rss_mb']:.1f} MB")


def _report_rest(results: dict[str, Any]) -> None:
    print("\n== latency, REST :predict (ms) ==")
    for variant, lat in results["latency"].items():
        half, idle, floor = lat["half"], lat["idle"], lat["floor"]
        print(
            f"{variant}: half saturation ({half['rate']:.1f}/s) p50 {half['p50']:.1f} "
            f"p99 {half['p99']:.1f} | batch-1 idle p50 {idle['p50']:.1f} p99 {idle['p99']:.1f} "
            f"(in-process one image: p50 {floor['p50']:.1f})"
        )
    swap = results["swap"]
    print(
        f"\n== hot swap under load == first new-version answer after "
        f"{swap['to_first_new_s']:.3f}s, failed requests {swap['failed']}, "
        f"answers {swap['answers']}"
    )
    print(f"cold start (process start -> both protocols ready): {results['cold_start_s']:.2f}s")
    mem = results["soak"]
    print(
        f"memory under load: RSS {mem['early_mb']:.1f} MB after {mem['seconds'] / 10:.0f}s, "
        f"{mem['late_mb']:.1f} MB after {mem['seconds']:.0f}s "
        f"({mem['growth'] * 100:+.1f}%, target within 5%)"
    )
