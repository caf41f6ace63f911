"""Probe: how close could any server on visionyard's stack come to the in-process pipeline?

Issue 14 asks the served 64x64 detector for >= 0.9x the in-process pipeline's images/s. On this
2-core machine the client, the server's transport and the model share the same cores, so a
server's ratio is bounded by what its transport costs per request beside what an image costs.
This probe measures that bound side by side, in alternating rounds:

- ``in-process``: the best in-process pipeline (bench_serving_load.inprocess_best), images/s B;
- ``visionyard``: ``visionyard serve`` of the same bundle, REST OIP binary and gRPC;
- ``no-op``: the same stacks doing nothing per request (bench/serving_noop.py: uvicorn with a
  plain ASGI app; grpc.aio with the OIP service), answering visionyard's own answer, requests/s
  R. A server that did the model's work at in-process speed on top of that transport would
  serve at most 1 / (1/B + 1/R) images/s, a ratio of R / (R + B): the **ceiling**.

Every load is h2load (nghttp2's C client, ``apt-get install nghttp2-client``): 32 closed-loop
clients, one h2load per request image. Also printed per load: the server's CPU per request
(all its threads, from /proc), the clients' (h2load's) CPU per request, and the share of the
host's 2 cores left idle.

``--model resnet18 --variant fp32|int8`` serves issue 16's ResNet-18-style classifier instead
(bench_serving.py's, on its photos) of the briefly trained 64x64 detector.

    .venv/bin/python bench/probe_transport_ceiling.py [--model detector64|resnet18] \
        [--variant fp32|int8] [--monitor on|off] [--rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from bench_serving import monitor_env  # noqa: E402
from bench_serving_baselines import _child, free_port, wait_http  # noqa: E402
from bench_serving_load import H2Load, grpc_requests, inprocess_best  # noqa: E402
from probe_server_configs import model_arguments, the_model  # noqa: E402

from visionyard.deploy.plan import cpu_seconds  # noqa: E402

CLIENTS, SECONDS = 32, 5.0


@dataclass
class Load:
    """One server and protocol under h2load: where to send which bodies, and the server's pid."""

    name: str
    pid: int
    url: str
    bodies: list[Path]
    headers: list[list[str]]
    h1: bool
    counted: H2Load | None = None  # visionyard gRPC: answers counted in its /metrics


def rest_bodies(
    tmp: Path, images: list[bytes], outputs: tuple[str, ...]
) -> tuple[list[Path], list[list[str]]]:
    """OIP REST binary bodies (one image as a BYTES element, ``outputs`` asked for by name)."""
    bodies, headers = [], []
    for index, image in enumerate(images):
        raw = struct.pack("<I", len(image)) + image
        tensor = {"name": "image", "datatype": "BYTES", "shape": [1],
                  "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
        wanted = [{"name": n} for n in outputs]
        header = json.dumps({"inputs": [tensor], "outputs": wanted}).encode()
        bodies.append(tmp / f"rest{index}")
        bodies[-1].write_bytes(header + raw)
        headers.append(["Content-Type: application/octet-stream",
                        f"Inference-Header-Content-Length: {len(header)}"])  # fmt: skip
    return bodies, headers


def grpc_bodies(tmp: Path, images: list[bytes], outputs: tuple[str, ...]) -> list[Path]:
    """gRPC-framed ``ModelInfer`` messages, as h2load sends them."""
    bodies = []
    for index, message in enumerate(grpc_requests("m", images, outputs)):
        data = message.SerializeToString()
        bodies.append(tmp / f"grpc{index}")
        bodies[-1].write_bytes(b"\x00" + struct.pack(">I", len(data)) + data)
    return bodies


GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"]


def answers(http_url: str, grpc_target: str, rest_body: Path, rest_headers: list[str],
            image: bytes, outputs: tuple[str, ...]) -> tuple[bytes, bytes]:  # fmt: skip
    """visionyard's answer to one request over each protocol (the no-op servers send these)."""
    import grpc

    from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

    headers = dict(h.split(": ", 1) for h in rest_headers)
    request = urllib.request.Request(
        f"{http_url}/v2/models/m/infer", rest_body.read_bytes(), headers
    )
    rest = urllib.request.urlopen(request, timeout=30).read()
    with grpc.insecure_channel(grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ModelInfer(grpc_requests("m", [image], outputs)[0], timeout=30)
    return rest, reply.SerializeToString()


@contextlib.contextmanager
def noop_server(kind: str, answer: Path) -> Iterator[tuple[int, int]]:
    """A no-op server (serving_noop.py) on a free port: (pid, port)."""
    port = free_port()
    command = [sys.executable, str(BENCH / "serving_noop.py"), kind, str(port), str(answer)]
    with _child(command) as pid:
        if kind == "rest":
            wait_http(f"http://127.0.0.1:{port}/")
        else:
            import grpc

            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
        yield pid, port


def host_idle() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return values[3] + values[4], sum(values)


def run(load: Load) -> dict[str, float]:
    """``CLIENTS`` clients for ``SECONDS``: answers/s, CPU per request, idle host share."""
    before = _readings(load.pid)
    if load.counted is not None:  # visionyard gRPC: its H2Load counts the answers
        found = load.counted.run(CLIENTS, SECONDS)
        spent = SECONDS + H2Load.LEAD + H2Load.TAIL
        return _figures(found["rate"], found["rate"] * spent, load.pid, before)
    share = [CLIENTS // len(load.bodies) + (i < CLIENTS % len(load.bodies))
             for i in range(len(load.bodies))]  # fmt: skip
    began = time.perf_counter()
    procs = []
    for clients, body, headers in zip(share, load.bodies, load.headers, strict=True):
        flags = ["--h1"] if load.h1 else []
        for header in headers:
            flags += ["-H", header]
        procs.append(subprocess.Popen(
            ["h2load", *flags, "-D", f"{round(SECONDS * 1000)}ms", "-c", str(clients), "-m", "1",
             "-d", str(body), load.url],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        ))  # fmt: skip
    done = failed = 0
    for proc in procs:
        out = proc.communicate()[0]
        codes = re.search(r"status codes: (\d+) 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if codes is None:
            raise RuntimeError(f"h2load said:\n{out}")
        done += int(codes.group(1))
        failed += int(codes.group(2)) + int(codes.group(3))
    if failed:  # (h2load's own "failed" also counts the calls cut off when its time is up)
        raise RuntimeError(f"{load.name}: {failed} answers were errors")
    elapsed = time.perf_counter() - began
    return _figures(done / elapsed, done, load.pid, before)


def _children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


Readings = tuple[float, tuple[int, int], float]  # server CPU s, host (idle, all), clients' CPU s


def _readings(pid: int) -> Readings:
    return cpu_seconds(pid) or 0.0, host_idle(), _children()


def _figures(rate: float, count: float, pid: int, before: Readings) -> dict[str, float]:
    """Per request, since ``before``: the server's and the clients' CPU, and the idle share."""
    server, idle, clients = _readings(pid)
    count = max(count, 1.0)
    return {
        "rate": rate,
        "server_ms": 1000 * (server - before[0]) / count,
        "client_ms": 1000 * (clients - before[2]) / count,
        "idle": (idle[0] - before[1][0]) / max(idle[1] - before[1][1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    model_arguments(parser, rounds=4)
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load is not installed: apt-get install nghttp2-client")
    from visionyard.serving.launch import serve_subprocess

    with tempfile.TemporaryDirectory(prefix="vy-probe-ceil-") as name, contextlib.ExitStack() as st:
        tmp = Path(name)
        bundle, images, outputs = the_model(args, tmp)
        rest, rest_headers = rest_bodies(tmp, images, outputs)
        grpc = grpc_bodies(tmp, images, outputs)
        urls = st.enter_context(serve_subprocess({"m": str(bundle)}, env=monitor_env(args.monitor)))
        assert urls.pid is not None
        rest_answer, grpc_answer = answers(
            urls.http_url, urls.grpc_target, rest[0], rest_headers[0], images[0], outputs
        )
        (tmp / "rest.answer").write_bytes(rest_answer)
        (tmp / "grpc.answer").write_bytes(grpc_answer)
        messages = [m.SerializeToString() for m in grpc_requests("m", images, outputs)]
        counted = H2Load(urls.grpc_target, urls.http_url, "m", messages)
        st.callback(counted.close)
        rest_pid, rest_port = st.enter_context(noop_server("rest", tmp / "rest.answer"))
        grpc_pid, grpc_port = st.enter_context(noop_server("grpc", tmp / "grpc.answer"))
        grpc_path = "/inference.GRPCInferenceService/ModelInfer"
        loads = [
            Load("visionyard rest", urls.pid, f"{urls.http_url}/v2/models/m/infer", rest,
                 rest_headers, h1=True),
            Load("visionyard grpc", urls.pid, "", grpc, [GRPC_HEADERS] * len(grpc), h1=False,
                 counted=counted),
            Load("no-op rest", rest_pid, f"http://127.0.0.1:{rest_port}/v2/models/m/infer", rest,
                 rest_headers, h1=True),
            Load("no-op grpc", grpc_pid, f"http://127.0.0.1:{grpc_port}{grpc_path}", grpc,
                 [GRPC_HEADERS] * len(grpc), h1=False),
        ]  # fmt: skip
        label = "64x64 detector" if args.model == "detector64" else f"ResNet-18 {args.variant}"
        print(f"{label}, monitoring {args.monitor}, {CLIENTS} h2load clients, "
              f"{SECONDS:g} s a load, answers of {len(rest_answer)} B (REST) and "
              f"{len(grpc_answer)} B (gRPC)", flush=True)  # fmt: skip
        found: dict[str, list[dict[str, float]]] = {"in-process": []}
        for index in range(args.rounds):
            base = inprocess_best(bundle, images, 4.0)["rate"]
            found["in-process"].append({"rate": base})
            order = loads if index % 2 == 0 else loads[::-1]
            parts = [f"in-process {base:.0f}/s"]
            for load in order:
                figures = run(load)
                figures["ratio"] = figures["rate"] / base
                found.setdefault(load.name, []).append(figures)
                parts.append(f"{load.name} {figures['rate']:.0f}/s")
            print(f"round {index + 1}: " + ", ".join(parts), flush=True)
    report(found)


def report(found: dict[str, list[dict[str, float]]]) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in found[name])

    print("medians over rounds:")
    print(f"  in-process best: {median('in-process', 'rate'):.0f} images/s")
    for name in found:
        if name == "in-process":
            continue
        cpu, client = median(name, "server_ms"), median(name, "client_ms")
        idle = median(name, "idle")
        print(f"  {name:16s} {median(name, 'rate'):7.0f}/s  {median(name, 'ratio'):6.3f}x "
              f"in-process; server CPU {cpu:.3f} ms a request, h2load {client:.3f} ms, "
              f"host idle {idle:.1%}")  # fmt: skip
    bases = [r["rate"] for r in found["in-process"]]
    for protocol in ("rest", "grpc"):
        noop = [r["rate"] for r in found[f"no-op {protocol}"]]
        served = [r["ratio"] for r in found[f"visionyard {protocol}"]]
        ceilings = [r / (r + b) for r, b in zip(noop, bases, strict=True)]
        each = " ".join(f"{c:.3f}" for c in ceilings)
        print(f"  {protocol}: ceiling R/(R+B) {statistics.median(ceilings):.3f}x ({each}); "
              f"visionyard {statistics.median(served):.3f}x = "
              f"{statistics.median(s / c for s, c in zip(served, ceilings, strict=True)):.3f} "
              "of the ceiling")  # fmt: skip


if __name__ == "__main__":
    main()
