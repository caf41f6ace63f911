"""The pod ``deploy k8s`` writes, run as a real process: the container's command (the image's
``visionyard serve``), its environment, the ConfigMap's ``serve.yaml`` and the tracking Secret's
keys, with the admin Secret absent. The Deployment's own probes find it live and ready,
``/metrics`` carries the HPA's metric, every folder it writes to is an ``emptyDir`` in the pod
(the root filesystem is read-only there), and on SIGTERM it exits inside the grace period.

No container engine or cluster here: the image's paths are mapped to temporary folders (and the
tests run as root, so a read-only folder could not stop a write: the test watches where the
server writes instead).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cli import store_flags
from tests.registry_support import log_colour_run
from visionyard.cli.main import main
from visionyard.deploy import k8s, spec
from visionyard.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_for(url: str, seconds: float, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert child.poll() is None, f"the server exited with {child.returncode}"
        if status(url) == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within {seconds:.0f}s")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Settings:
    root = tmp_path_factory.mktemp("k8s-pod")
    home = root / ".visionyard"
    home.mkdir()
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "k8s-pod"})
    flags = store_flags(settings)
    assert main([*flags, "register", log_colour_run(settings, root), "--name", "shapes"]) == 0
    assert main([*flags, "promote", "shapes", "1", "--to", "production"]) == 0
    return settings


def pod_environment(server: dict[str, Any], paths: dict[str, Path], tracking_uri: str) -> dict:
    """The container's env with the image's paths mapped; the Secrets as a cluster holds them."""
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    for item in server["env"]:
        if "value" in item:
            value = item["value"]
            env[item["name"]] = str(paths.get(value, value))
        else:  # the admin Secret is optional and absent here
            assert item["valueFrom"]["secretKeyRef"]["optional"] is True
    (tracking,) = server["envFrom"]
    assert tracking["secretRef"]["name"] == spec.TRACKING_SECRET
    env["VISIONYARD_TRACKING__URI"] = tracking_uri  # a key of the tracking Secret
    return env


def test_the_generated_pod_starts_is_probed_ready_and_stops_inside_its_grace_period(
    registry: Settings, tmp_path: Path
) -> None:
    http, grpc = free_port(), free_port()
    settings = registry.model_copy(
        update={"serving": registry.serving.model_copy(
            update={"http_port": http, "grpc_port": grpc, "drain_s": 3.0})}
    )  # fmt: skip
    out = tmp_path / "k8s"
    k8s.generate(out, settings, ["shapes=shapes@production"], k8s.K8sOptions())
    pod = yaml.safe_load((out / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    # the folders a process may write to (each empty now); on a read-only root, only emptyDirs
    writable = {where: tmp_path / where.strip("/").replace("/", "-")
                for where in (spec.STATE_DIR, spec.HOME_DIR, "/tmp")}  # fmt: skip
    for folder in writable.values():
        folder.mkdir()
    env = pod_environment(
        server, {spec.CONFIG_FILE: out / "serve.yaml", **writable}, settings.tracking_uri()
    )
    env["TMPDIR"] = str(writable["/tmp"])
    state = writable[spec.STATE_DIR]
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        child = subprocess.Popen(  # the image's ENTRYPOINT: visionyard serve, no arguments
            [sys.executable, "-c", "from visionyard.cli.main import run; run()", "serve"],
            env=env, cwd=state, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{server['ports'][0]['containerPort']}"
        startup = server["startupProbe"]
        wait_for(base + startup["httpGet"]["path"],
                 startup["periodSeconds"] * startup["failureThreshold"], child)  # fmt: skip
        wait_for(base + server["readinessProbe"]["httpGet"]["path"], 60, child)
        assert status(base + server["livenessProbe"]["httpGet"]["path"]) == 200
        with urllib.request.urlopen(base + spec.METRICS_PATH, timeout=3) as reply:
            assert f"# TYPE {spec.IN_FLIGHT_METRIC} gauge" in reply.read().decode()
        started = time.monotonic()
        os.killpg(child.pid, signal.SIGTERM)
        budget = pod["terminationGracePeriodSeconds"] - spec.PRESTOP_SLEEP_S
        assert child.wait(timeout=budget) == 0
        assert time.monotonic() - started < budget
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    text = log.read_text(errors="replace")
    assert "admin calls disabled" in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]
    assert list(state.iterdir()), "the server's state (registry cache) belongs in the state dir"
    written = {where for where, folder in writable.items() if list(folder.iterdir())}
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    read_only = {where for where in written if mounts.get(where) not in empty_dirs}
    assert not read_only, f"the server writes to {read_only}: read-only in the pod"
