"""``visionyard serve`` as a real process, through its life as a deployment sees it: SIGTERM
drains (not ready at once, in-flight requests finish, new ones refused retryably, exit within
``serving.drain_s``); two replicas behind a real nginx are replaced one by one under load with
no failed request; a registry that cannot be reached, or no admin token, is said once and
clearly, without tracebacks."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from PIL import Image

from tests.fixtures.runtime import COLOURS, write_colour_bundle
from tests.fixtures.serving import encoded
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.proto import grpc_service_pb2_grpc as pb_grpc

READY = re.compile(r"^serving http=(?P<http>\S+) grpc=(?P<grpc>\S+)$")
RED = encoded(COLOURS["red"])
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_bundle(tmp_path_factory.mktemp("lifecycle") / "colour").path


@pytest.fixture(scope="module")
def slow_upload() -> list[tuple[str, tuple[str, bytes, str]]]:
    """Two 36-megapixel flat PNGs (120 KB each): seconds of decoding on the server."""
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), COLOURS["red"]).save(buffer, "PNG")
    png = buffer.getvalue()
    return [(name, (f"{name}.png", png, "image/png")) for name in ("a", "b")]


@dataclass
class Replica:
    process: subprocess.Popen[str]
    url: str
    log: Path
    grpc_target: str = ""

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM; the seconds until the process exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        took = time.monotonic() - started
        if self.process.stdout is not None:
            self.process.stdout.close()
        return took

    def logged(self) -> str:
        return self.log.read_text("utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    models: dict[str, str], log: Path, *, port: int = 0, env: dict[str, str] | None = None
) -> Replica:
    """``visionyard serve`` in a child process; returns once it printed its ready line."""
    command = [sys.executable, "-c", "from visionyard.cli.main import run; run()", "serve",
               "--host", "127.0.0.1", "--http-port", str(port), "--grpc-port", "0"]  # fmt: skip
    for name, reference in models.items():
        command += ["--model", f"{name}={reference}"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("VISIONYARD_")}
    with log.open("ab") as stderr:  # the child keeps its own descriptor
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**base, "VISIONYARD_HOME": str(log.parent / "home"), **(env or {})},
        )  # fmt: skip
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = READY.match(child.stdout.readline().strip())
        if match:
            return Replica(child, match["http"], log, match["grpc"])
        if child.poll() is not None:
            break
    child.kill()
    child.wait(10)
    child.stdout.close()
    raise AssertionError(f"serve did not start:\n{log.read_text('utf-8')[-3000:]}")


@contextmanager
def replica(models: dict[str, str], log: Path, **kwargs: object) -> Iterator[Replica]:
    running = start(models, log, **kwargs)  # type: ignore[arg-type]
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(10)
        if running.process.stdout is not None:
            running.process.stdout.close()


def _in_flight(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    found = re.search(r'^visionyard_queue_depth\{model="m"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_sigterm_drains_not_ready_at_once_finishes_in_flight_and_exits_in_time(
    bundle: Path,
    slow_upload: list[tuple[str, tuple[str, bytes, str]]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    drain_s = 20.0
    env = {"VISIONYARD_SERVING__DRAIN_S": str(drain_s)}
    with replica({"m": str(bundle)}, tmp_path / "serve.log", env=env) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        request.addfinalizer(http.close)
        assert http.get("/v2/health/ready").status_code == 200
        slow: dict[str, httpx.Response] = {}
        client = threading.Thread(
            target=lambda: slow.update(r=http.post("/v1/models/m:predict", files=slow_upload))
        )
        client.start()
        deadline = time.monotonic() + 10
        while _in_flight(http) < 1:
            assert time.monotonic() < deadline, "the slow request was not admitted"
            assert client.is_alive(), "the slow request ended before it was seen in flight"
            time.sleep(0.02)
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=5) as other:
            ready = other.get("/v2/health/ready")
            refused = other.post("/v1/models/m:predict", content=RED)
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            grpc_ready = stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
        assert client.is_alive(), "the slow request ended before the probes: make it slower"
        assert ready.status_code == 503
        assert ready.json() == {"ready": False}
        assert refused.status_code == 503
        assert "stopping" in refused.json()["error"]
        assert refused.headers["connection"] == "close"
        assert grpc_ready is False
        client.join(30)
        code = server.process.wait(drain_s)
        took = time.monotonic() - sent
    assert slow["r"].status_code == 200, slow["r"].text
    assert [p[0]["label"] for p in slow["r"].json()["predictions"]] == ["red", "red"]
    assert code == 0
    assert took < drain_s
    assert "draining" in server.logged()
    assert "Traceback" not in server.logged()


def test_drain_time_up_cuts_the_rest_off_and_exits(
    bundle: Path,
    slow_upload: list[tuple[str, tuple[str, bytes, str]]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    env = {"VISIONYARD_SERVING__DRAIN_S": "0.5"}
    slower = [*slow_upload, ("c", slow_upload[0][1]), ("d", slow_upload[0][1])]
    with replica({"m": str(bundle)}, tmp_path / "serve.log", env=env) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        request.addfinalizer(http.close)
        outcome: list[object] = []

        def call() -> None:
            try:
                outcome.append(http.post("/v1/models/m:predict", files=slower).status_code)
            except httpx.HTTPError as exc:
                outcome.append(exc)

        client = threading.Thread(target=call)
        client.start()
        while _in_flight(http) < 1:
            time.sleep(0.02)
        took = server.stop(timeout=15)
        client.join(30)
    assert took < 0.5 + 3.0, f"exited {took:.1f}s after SIGTERM with drain_s 0.5"
    assert server.process.returncode == 0
    assert "drain time is up" in server.logged()


def test_no_registry_no_admin_token_not_ready_said_once_no_tracebacks(tmp_path: Path) -> None:
    env = {
        "VISIONYARD_TRACKING__URI": f"http://127.0.0.1:{_free_port()}",  # nothing listens
        "VISIONYARD_SERVING__POLL_INTERVAL_S": "0.2",
    }
    with replica({"m": "colours@production"}, tmp_path / "serve.log", env=env) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/v2/health/live").status_code == 200
            assert http.get("/v2/health/ready").status_code == 503
            time.sleep(2.0)  # ten polls of the registry, all failing
            answer = http.post("/v1/models/m:predict", content=RED)
            assert answer.status_code == 503
            assert answer.json()["code"] == "serving.unavailable"
            admin = http.post("/v2/repository/index", headers={"Authorization": "Bearer x"})
            assert admin.status_code == 403
            assert "ADMIN_TOKEN" in admin.json()["error"]
        assert server.process.poll() is None, "the server must keep running, not crash-loop"
        server.stop()
    logged = server.logged()
    failures = [line for line in logged.splitlines() if "failed to load" in line]
    assert len(failures) == 1, failures
    assert "not reachable" in failures[0]
    assert "VISIONYARD_TRACKING__URI" in failures[0]
    assert logged.count("cannot read the rollout") <= 1
    assert "admin calls disabled" in logged
    assert "Traceback" not in logged


NGINX_CONF = """
worker_processes 1;
daemon off;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream replicas {{
        server 127.0.0.1:{one} max_fails=1 fail_timeout=1s;
        server 127.0.0.1:{two} max_fails=1 fail_timeout=1s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replicas;
            # a replica that is gone (connection refused) or draining (503) is skipped;
            # inference is a pure function of the request, so POSTs may be retried
            proxy_next_upstream error timeout http_503 non_idempotent;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 1s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@contextmanager
def nginx(root: Path, one: int, two: int) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, one=one, two=two, port=port, user=user))
    process = subprocess.Popen([binary, "-p", str(root), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


class Load:
    """Client threads posting an image through the load balancer until stopped; answers are
    counted by (phase, the upstream nginx names in ``X-Upstream``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "old"
        self.answers: Counter[tuple[str, str]] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(3)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self._stop.is_set():
                phase = self.phase
                try:
                    answer = http.post("/v1/models/m:predict", content=RED)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                else:
                    self.answers[(phase, answer.headers["x-upstream"])] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def wait_for(self, phase: str, upstream: str, count: int = 5, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.answers[(phase, upstream)] < count:
            assert time.monotonic() < deadline, f"{upstream} answered nothing in {phase}"
            time.sleep(0.05)


@pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (apt-get install nginx; .ci/run installs it)",
)
def test_rolling_replacement_behind_nginx_fails_no_request(bundle: Path, tmp_path: Path) -> None:
    models = {"m": str(bundle)}
    ports = [_free_port(), _free_port()]
    upstreams = [f"127.0.0.1:{p}" for p in ports]
    env = {"VISIONYARD_SERVING__DRAIN_S": "10"}
    logs = [tmp_path / f"replica-{n}.log" for n in range(4)]
    with ThreadPoolExecutor(2) as pool:  # the first two start side by side
        replicas = list(pool.map(lambda n: start(models, logs[n], port=ports[n], env=env), (0, 1)))
    try:
        with nginx(tmp_path, *ports) as url, Load(url) as load:
            for upstream in upstreams:
                load.wait_for("old", upstream)
            for n in (0, 1):
                load.phase = f"replacing {n}"
                replicas[n].stop()
                replicas[n] = start(models, logs[n + 2], port=ports[n], env=env)
                load.phase = f"replaced {n}"
                load.wait_for(load.phase, upstreams[n])
            load.phase = "new"
            for upstream in upstreams:
                load.wait_for("new", upstream)
    finally:
        for running in replicas:
            if running.process.poll() is None:
                running.stop()
    assert load.failures == [], load.failures[:5]
    assert sum(load.answers.values()) > 50, load.answers
    for log in logs:
        assert "Traceback" not in log.read_text("utf-8")
