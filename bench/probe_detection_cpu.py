"""Probe: where a served model's images go, per thread of the server (issue 14's 64x64 gap).

bench_detection.py serves the trained 64x64 detector at 0.5-0.7x the in-process pipeline while
the ResNet-18 one reaches 0.9-1.0x. This probe trains the same architecture briefly (serving
speed does not depend on the weights), serves its FP32 bundle (``visionyard serve`` in a
subprocess, ``--monitor`` on or off), and per round measures, side by side: the in-process best
(and its CPU milliseconds an image, its best layout run again), then gRPC (h2load when
installed) and REST OIP binary at 32 closed-loop clients. ``--model resnet18 --variant
fp32|int8`` probes bench_serving.py's classifier instead (issue 16's gRPC figure). For each
protocol it reads the server's per-thread CPU from ``/proc`` (Linux) over the measurement and
prints images/s, the ratio, the cores the server used (of the cores the host has) and the
server's CPU milliseconds per image by thread: the event loop (``main``), the
batcher's workers (``vy-*``), gRPC's ``event_engine`` and other threads.

With ``--gil`` (py-spy installed: ``pip install py-spy``), py-spy samples the server in each
window with ``--gil`` (only the thread holding Python's GIL is recorded) and the probe prints the
share of sampling ticks in which some thread held it, and by which thread: a GIL held near 100 %
of the time would be the server's ceiling.

    .venv/bin/python bench/probe_detection_cpu.py --monitor on --rounds 3 [--gil]
    .venv/bin/python bench/probe_detection_cpu.py --model resnet18 --variant int8 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving_load import (  # noqa: E402
    H2Load,
    _inprocess,
    binary_target,
    closed_loop,
    grpc_load,
    grpc_requests,
    inprocess_best,
)
from probe_server_configs import model_arguments, the_model  # noqa: E402

CLIENTS, SECONDS = 32, 6.0
SPY_RATE = 200  # samples a second


def spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling only the GIL's holder over one window, if py-spy is installed."""
    tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(tool).exists():
        return None
    command = [tool, "record", "--pid", str(pid), "--rate", str(SPY_RATE), "--gil",
               "--nonblocking", "--threads", "--format", "raw", "--output", str(out),
               "--duration", str(round(SECONDS))]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gil_shares(out: Path) -> str:
    """'GIL held N % of ticks: thread a %, ...' from a raw py-spy file."""
    by_thread: dict[str, int] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread = stack.split(";", 1)[0].split(": ", 1)[-1]
        by_thread[thread] = by_thread.get(thread, 0) + int(count)
    ticks = SPY_RATE * round(SECONDS)
    shares = ", ".join(f"{k} {v / ticks:.0%}" for k, v in sorted(by_thread.items()))
    return f"GIL held {sum(by_thread.values()) / ticks:.0%} of ticks ({shares})"


def thread_cpu_ms(pid: int) -> dict[str, float]:
    """CPU milliseconds so far of each kind of thread of process ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        kind = "main" if tid == str(pid) else name if name.startswith("vy-") else f"({name})"
        out[kind] = out.get(kind, 0.0) + (int(stat[11]) + int(stat[12])) * 1000 / tick
    return out


def measure(
    pid: int, target: Any, gil: Path | None = None
) -> tuple[float, dict[str, float], float]:
    """Answers/s, the server's CPU ms by thread kind and the seconds, over one window in which
    only the load runs (h2load's start-up and its last calls fall outside it); py-spy writes
    ``gil`` over the window when given."""
    sampler = None
    if isinstance(target, H2Load):
        procs = target._start(CLIENTS, SECONDS + target.LEAD + target.TAIL)
        time.sleep(target.LEAD)
        sampler = spy(pid, gil) if gil else None
        answered, before, began = target._answers()["ok"], thread_cpu_ms(pid), time.perf_counter()
        time.sleep(SECONDS)
        answered = target._answers()["ok"] - answered
        rate = answered / (time.perf_counter() - began)
        spent, elapsed = thread_cpu_ms(pid), time.perf_counter() - began
        for proc in procs:
            proc.wait()
    else:
        closed_loop(target, 2, 1.0)
        sampler = spy(pid, gil) if gil else None
        before, began = thread_cpu_ms(pid), time.perf_counter()
        rate = closed_loop(target, CLIENTS, SECONDS)["rate"]
        spent, elapsed = thread_cpu_ms(pid), time.perf_counter() - began
    if sampler is not None:
        sampler.wait()
    return rate, {kind: spent[kind] - before.get(kind, 0.0) for kind in spent}, elapsed


def inprocess_cpu(bundle: Path, images: list[bytes]) -> str:
    """CPU milliseconds an image of the in-process pipeline in its usual best layout (2 threads,
    1 ORT thread each, batches of 8), over 4 s: the work the served images/s are compared to."""
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    rate = _inprocess(bundle, images, 4.0, (2, 1, 8))
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - began
    spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return f"2x1x8 {rate:.0f}/s, CPU ms an image {spent * 1000 / (rate * elapsed):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    model_arguments(parser, rounds=3)
    parser.add_argument("--gil", action="store_true", help="py-spy: share of time the GIL is held")
    args = parser.parse_args()
    from visionyard.serving.launch import serve_subprocess

    with tempfile.TemporaryDirectory(prefix="vy-probe-det-") as tmp, contextlib.ExitStack() as st:
        bundle, images, outputs = the_model(args, Path(tmp))
        env = {"VISIONYARD_MONITOR__ENABLED": "true" if args.monitor == "on" else "false"}
        urls = st.enter_context(serve_subprocess({"det": str(bundle)}, env=env))
        messages = grpc_requests("det", images, outputs)
        targets: dict[str, Any] = {
            "binary": binary_target(urls.http_url, "det", images, outputs),
            "grpc": grpc_load(st, urls.grpc_target, urls.http_url, "det", messages),
        }
        print(f"{args.model} {args.variant}, monitoring {args.monitor}, {CLIENTS} clients, "
              f"{SECONDS:g} s")  # fmt: skip
        for index in range(args.rounds):
            floor = inprocess_best(bundle, images, 5.0)["rate"]
            print(f"round {index + 1} in-process {floor:.0f}/s, {inprocess_cpu(bundle, images)}")
            for name, target in targets.items():
                gil = Path(tmp) / f"gil-{index}-{name}.txt" if args.gil else None
                rate, spent, elapsed = measure(urls.pid or 0, target, gil)
                count, total = rate * elapsed, sum(spent.values())
                per = " ".join(f"{k} {v / count:.2f}" for k, v in sorted(spent.items()) if v > 0)
                print(f"round {index + 1} {name:6s} {rate:4.0f}/s = {rate / floor:.2f}x in-process "
                      f"{floor:.0f}/s; server {total / elapsed / 1000:.2f} cores of "
                      f"{os.cpu_count()}; server CPU ms an image {total / count:.2f}: {per}",
                      flush=True)  # fmt: skip
                if gil is not None and gil.exists():
                    print(f"  {gil_shares(gil)}", flush=True)


if __name__ == "__main__":
    main()
