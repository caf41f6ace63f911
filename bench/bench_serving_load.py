"""Load generation for bench_serving.py: a lean client, closed and open loop, in-process best.

The client must cost the servers it measures as little CPU as possible (they share 2 cores with
it) and the same for every server. The HTTP client and the closed loop live in
:mod:`visionyard.deploy.load` (``visionyard deploy plan`` drives a server with them too) and
are re-exported here; gRPC uses a sync stub with prebuilt messages, or h2load. The client's own
CPU use is measured (``client_cpu``: cores busy in this process) and reported.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionyard.deploy.load import (
    Connect,
    Sender,
    closed_loop,
    http_client,
    http_request,
    percentiles,
    run_threads,
)

__all__ = ["Connect", "Sender", "closed_loop", "http_client", "http_request", "percentiles"]


def binary_target(url: str, model: str, images: list[bytes], outputs: Sequence[str]) -> Connect:
    """OIP v2 REST with the binary tensor extension: one encoded image as a BYTES element, the
    ``outputs`` asked for by name."""
    requests = []
    for image in images:
        raw = struct.pack("<I", len(image)) + image
        spec = {"binary_data_size": len(raw)}
        tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": spec}
        header = json.dumps({"inputs": [tensor], "outputs": [{"name": n} for n in outputs]})
        headers = {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        }
        path = f"/v2/models/{model}/infer"
        requests.append(http_request(url, path, header.encode() + raw, headers))
    return http_client(url, requests)


def grpc_requests(model: str, images: list[bytes], outputs: Sequence[str] = ()) -> list[Any]:
    """Prebuilt gRPC ``ModelInfer`` messages: one encoded image each, the ``outputs`` asked for
    by name (none: every output)."""
    from visionyard.serving.proto import grpc_service_pb2 as pb

    requests = []
    for image in images:
        tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])
        wanted = [pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs]
        raw = struct.pack("<I", len(image)) + image
        requests.append(
            pb.ModelInferRequest(
                model_name=model, inputs=[tensor], outputs=wanted, raw_input_contents=[raw]
            )
        )
    return requests


def grpc_client(target: str, requests: Sequence[Any]) -> Connect:
    """Sync gRPC ``ModelInfer`` over prebuilt request messages, one channel per thread."""
    import grpc

    from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

    def connect() -> Sender:
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(target))  # type: ignore[no-untyped-call]

        def send(i: int) -> bytes | None:
            try:
                stub.ModelInfer(requests[i % len(requests)], timeout=60)
            except grpc.RpcError:
                return None
            return b""

        return send

    return connect


class H2Load:
    """gRPC load from ``h2load`` (nghttp2's load generator, in C): the lean client for gRPC.

    The Python gRPC client costs ~0.3 ms of CPU per call, taken from the server on a 2-core
    machine; h2load sends the same unary ``ModelInfer`` calls as HTTP/2 POSTs with gRPC framing
    (one h2load per photo, side by side, clients split among them) for a fraction of that.
    h2load sees HTTP statuses only (a gRPC error is HTTP 200 with a ``grpc-status`` trailer),
    so answers are counted on the server: the change of ``visionyard_requests_total`` for the
    model and protocol in ``/metrics``, by status.
    """

    LEAD, TAIL = 1.0, 0.5  # seconds of load before and after the measured window

    def __init__(self, target: str, http_url: str, model: str, bodies: Sequence[bytes]) -> None:
        self.url = f"http://{target}/inference.GRPCInferenceService/ModelInfer"
        self.metrics_url = f"{http_url}/metrics"
        self.model = model
        self.files = []
        for body in bodies:
            with tempfile.NamedTemporaryFile(prefix="vy-h2load-", delete=False) as file:
                file.write(b"\x00" + struct.pack(">I", len(body)) + body)  # gRPC message frame
            self.files.append(Path(file.name))

    @staticmethod
    def available() -> bool:
        return shutil.which("h2load") is not None

    def run(self, clients: int, seconds: float) -> dict[str, Any]:
        """Answers per second over a window of ``seconds`` inside the run: h2load starts
        ``LEAD`` s before it and stops ``TAIL`` s after it, so that neither its start-up nor the
        calls it abandons in flight when it stops (work the server did for nobody) fall in the
        window, as neither does for the HTTP client (which waits for its last answers)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = self._start(clients, seconds + self.LEAD + self.TAIL)
        time.sleep(self.LEAD)
        before, started = self._answers(), time.perf_counter()
        time.sleep(seconds)
        after, elapsed = self._answers(), time.perf_counter() - started
        for proc in procs:
            proc.wait()
        spent = resource.getrusage(resource.RUSAGE_CHILDREN)
        answers = {k: v - before.get(k, 0.0) for k, v in after.items()}
        ok = answers.pop("ok", 0.0)
        cpu = (spent.ru_utime + spent.ru_stime) - (usage.ru_utime + usage.ru_stime)
        return {
            "rate": ok / elapsed,
            "failures": int(sum(answers.values())),
            "client_cpu": cpu / (seconds + self.LEAD + self.TAIL),
            "client": "h2load",
            **percentiles([]),
        }

    def _start(self, clients: int, seconds: float) -> list[subprocess.Popen[bytes]]:
        """One h2load per photo, the clients split among them."""
        share = [
            clients // len(self.files) + (i < clients % len(self.files))
            for i in range(len(self.files))
        ]
        headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        return [
            subprocess.Popen(
                ["h2load", "-D", f"{round(seconds * 1000)}ms", "-c", str(n), "-m", "1"]
                + ["-d", str(path), *headers, self.url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n, path in zip(share, self.files, strict=True)
            if n
        ]

    def _answers(self) -> dict[str, float]:
        text = urllib.request.urlopen(self.metrics_url, timeout=30).read().decode()
        found: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("visionyard_requests_total{"):
                continue
            labels, value = line.rsplit(" ", 1)
            if f'model="{self.model}"' in labels and 'protocol="grpc"' in labels:
                status = labels.split('status="', 1)[1].split('"', 1)[0]
                found[status] = found.get(status, 0.0) + float(value)
        return found

    def close(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


Target = Connect | H2Load


def grpc_load(
    stack: contextlib.ExitStack, target: str, http_url: str, model: str, messages: Sequence[Any]
) -> Target:
    """The gRPC load for ``messages``: h2load when installed (its files removed when ``stack``
    closes), else the Python client."""
    if H2Load.available():
        h2load = H2Load(target, http_url, model, [m.SerializeToString() for m in messages])
        stack.callback(h2load.close)
        return h2load
    return grpc_client(target, messages)


def saturate(target: Target, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``seconds``, after a warm-up (connections, first
    runs; h2load's is its lead-in, see :meth:`H2Load.run`)."""
    if isinstance(target, H2Load):
        return target.run(clients, seconds)
    closed_loop(target, 2, 1.0)
    return closed_loop(target, clients, seconds)


def open_loop(connect: Connect, rate: float, seconds: float, clients: int = 8) -> dict[str, Any]:
    """Requests at a fixed ``rate`` (spread over ``clients`` threads); latency per request."""
    latencies: list[float] = []
    start = time.perf_counter() + 0.1
    total = int(rate * seconds)

    def worker(offset: int) -> None:
        send = connect()
        for k in range(offset, total, clients):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            send(k)
            latencies.append(time.perf_counter() - began)

    run_threads(worker, clients)
    return {"rate": rate, **percentiles(latencies)}


def idle_latency(connect: Connect, count: int) -> dict[str, float]:
    """One request at a time with a pause between them (batch 1, idle server)."""
    latencies = []
    send = connect()
    for i in range(count):
        began = time.perf_counter()
        send(i)
        latencies.append(time.perf_counter() - began)
        time.sleep(0.05)
    return percentiles(latencies)


Layout = tuple[int, int, int]  # threads, ORT intra-op threads per session, images per run


def inprocess_best(bundle: Path, images: list[bytes], seconds: float) -> dict[str, Any]:
    """The fastest in-process pipeline (decode + preprocess + ORT + decode) of a few layouts.

    Threads each decode ``batch`` images and run them together, with ``intra`` ORT threads
    (2 x 1 x batch 8 is the layout the issue measured; the server's batcher forms batches of
    4 to 8 under this load). ``layouts`` holds every layout's rate: 2 x 1 x batch 4 is the
    pipeline with 8 images in flight, the ceiling for 8 clients.
    """
    best: dict[str, Any] = {"rate": 0.0}
    layouts: dict[str, float] = {}
    for workers, intra, batch in ((2, 1, 1), (2, 1, 4), (2, 1, 8), (1, 2, 1), (3, 1, 1)):
        rate = _inprocess(bundle, images, seconds / 2, (workers, intra, batch))
        layouts[f"{workers}x{intra}x{batch}"] = rate
        if rate > best["rate"]:
            config = f"{workers} threads x {intra} ORT thread(s), batch {batch}"
            best = {"rate": rate, "config": config}
    return {**best, "layouts": layouts}


def inprocess_idle(bundle: Path, images: list[bytes], count: int) -> dict[str, float]:
    """Latency of the same pipeline in-process, one image at a time (the floor for idle p50),
    with an ORT thread per core, as the server runs a lone request."""
    from visionyard.contract.preprocess import decode_for_contract, preprocess_image
    from visionyard.runtime.session import InferenceSession
    from visionyard.serving.threads import usable_cores

    session = InferenceSession.open(bundle, intra_op_threads=usable_cores())
    contract, latencies = session.contract, []
    for i in range(count):
        began = time.perf_counter()
        data = images[i % len(images)]
        tensor, meta = preprocess_image(decode_for_contract(data, contract), contract)
        session.decode(session.run(tensor[np.newaxis]), [meta])
        latencies.append(time.perf_counter() - began)
        time.sleep(0.05)
    return percentiles(latencies)


def _inprocess(bundle: Path, images: list[bytes], seconds: float, layout: Layout) -> float:
    from visionyard.contract.preprocess import decode_for_contract, preprocess_image
    from visionyard.runtime.session import InferenceSession

    workers, intra, batch = layout
    session = InferenceSession.open(bundle, intra_op_threads=intra)
    contract = session.contract
    counts = [0] * workers
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> None:
        i = index
        while time.perf_counter() < deadline:
            pairs = []
            for _ in range(batch):
                data = images[i % len(images)]
                pairs.append(preprocess_image(decode_for_contract(data, contract), contract))
                i += workers
            tensor = np.stack([tensor for tensor, _ in pairs])
            session.decode(session.run(tensor), [meta for _, meta in pairs])
            counts[index] += batch

    started = time.perf_counter()
    run_threads(worker, workers)
    return sum(counts) / (time.perf_counter() - started)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
