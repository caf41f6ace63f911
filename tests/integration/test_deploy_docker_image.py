"""The image ``visionyard deploy docker`` describes, without a container engine: the ``cpu``
stages of the generated Dockerfile are read and their steps run as they are written, in a fresh
virtual environment, and the server its ``ENTRYPOINT`` starts is probed (ready, inference, the
``HEALTHCHECK`` command itself, SIGTERM).

What is remapped, and nothing else: absolute container paths become folders under the test's
tmp (``COPY SRC DEST`` maps DEST to the context's SRC; the venv, the state folder and HOME get
folders of their own); the config file gets loopback and free ports in place of 0.0.0.0:8000/8001.
The process sees only the image's ``ENV`` (remapped), not the test's environment.

``python`` in a ``RUN`` is this machine's Python 3.11 (the image's base is python:3.11), and pip
reads this machine's configuration (here a local index and wheel folder), as a build behind a
package mirror would.

Cost, and how it is kept down: the build stage's ``pip install -c constraints.txt WHEEL``
installs ~1.1 GB (mlflow and its dependencies) and took 3 min 8 s here from a cold start (5 min
with other tests running beside it). The venv it makes is kept under
``~/.cache/visionyard-tests/`` keyed by the digest of the constraints and the build steps (as a
Docker layer cache is keyed by its inputs); a later session uninstalls visionyard from it and
runs the same install step again, as written, which then installs this checkout's wheel and
checks every pinned dependency (13 s here; the module ~70 s). Set
``VISIONYARD_TEST_FRESH_IMAGE_VENV=1`` to build it from nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy_support import (
    MODEL,
    Stage,
    built_wheel,
    colour_store,
    read_dockerfile,
    stage,
    store_flags,
)
from tests.fixtures.runtime import COLOURS
from tests.fixtures.serving import encoded

pytestmark = pytest.mark.slow
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "visionyard-tests"
READY = re.compile(r"^serving http=(?P<http>\S+) grpc=\S+$")


@dataclass
class Image:
    contexts: dict[str, Path]  # "baked" and "pulled"
    venv: Path
    paths: dict[str, Path]  # container path -> path here (without the context's COPYs)
    tracking_uri: str

    def runtime(self, mode: str) -> Stage:
        return stage(read_dockerfile(self.contexts[mode] / "Dockerfile"), "cpu")


def _remap(text: str, paths: dict[str, Path]) -> str:
    for container in sorted(paths, key=len, reverse=True):
        text = text.replace(container.rstrip("/"), str(paths[container]).rstrip("/"))
    return text


def _copies(stage_: Stage, context: Path) -> dict[str, Path]:
    """``COPY SRC DEST`` of the context (not ``--from``): DEST is SRC here."""
    found = {}
    for copy in stage_.all("COPY"):
        parts = copy.args.split()
        if not parts[0].startswith("--from"):
            found[parts[1].rstrip("/")] = context / parts[0].rstrip("/")
    return found


def _run_step(step: str, paths: dict[str, Path]) -> float:
    """One ``RUN`` of the build stage, paths remapped; ``python`` is this machine's 3.11."""
    argv = shlex.split(_remap(step, paths))
    if argv[0] == "python":
        argv[0] = sys.executable
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{step}\n{done.stderr[-3000:]}"
    return time.monotonic() - started


def _build_venv(build: Stage, context: Path) -> Path:
    """The build stage's venv: cached by the digest of its inputs (see the module docs)."""
    runs = [r.args for r in build.all("RUN")]
    venv_path = "/opt/venv"
    assert runs[0] == f"python -m venv {venv_path}", runs
    constraints = (context / "constraints.txt").read_bytes()
    steps = re.sub(r"visionyard-\S+\.whl", "WHEEL", "\n".join(runs)).encode()
    key = hashlib.sha256(constraints + steps + sys.version.encode()).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / f"image-venv-{key}"
    paths = {venv_path: venv, **_copies(build, context)}
    with (CACHE / "image-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = os.environ.get("VISIONYARD_TEST_FRESH_IMAGE_VENV") == "1"
        if fresh or not (venv / "complete").exists():
            for stale in CACHE.glob("image-venv-*"):  # 1.1 GB each: keep only the current one
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            _run_step(runs[0], paths)
        else:  # the cached layer: what the install step left, without visionyard
            pip = [str(venv / "bin" / "pip"), "uninstall", "-q", "-y", "visionyard"]
            subprocess.run(pip, capture_output=True, check=True)
        for step in runs[1:]:
            took = _run_step(step, paths)
            print(f"{step[:60]}...: {took:.1f}s")
        (venv / "complete").touch()
    return venv


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Image:
    """The build context of each mode (baked, pulled); the build stage run once (both modes
    build the same venv)."""
    from visionyard.cli.main import main
    from visionyard.deploy import spec

    root = tmp_path_factory.mktemp("docker-image")
    settings = colour_store(sqlite_template)
    contexts = {"baked": root / "baked", "pulled": root / "pulled"}
    for mode, option in (("baked", "--bake"), ("pulled", "-m")):
        argv = [*store_flags(settings), "deploy", "docker", "--out", str(contexts[mode]),
                option, f"{MODEL}@production", "--wheel", str(built_wheel())]  # fmt: skip
        assert main(argv) == 0
    build = stage(read_dockerfile(contexts["baked"] / "Dockerfile"), "build")
    venv = _build_venv(build, contexts["baked"])
    state, home = root / "state", root / "home"
    state.mkdir()
    home.mkdir()
    paths = {spec.VENV: venv, spec.STATE_DIR: state, spec.HOME_DIR: home}
    return Image(contexts, venv, paths, settings.tracking_uri())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Container:
    process: subprocess.Popen[str]
    url: str
    env: dict[str, str]
    port: int
    runtime: Stage


@pytest.fixture(scope="module", params=["baked", "pulled"])
def container(
    image: Image, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Container]:
    """ENTRYPOINT + CMD with the image's ENV, in WORKDIR, as the Dockerfile states them; the
    pulled image gets the tracking URI as ``docker run -e`` would give it."""
    from visionyard.deploy import spec

    mode = request.param
    runtime = image.runtime(mode)
    paths = {**image.paths, **_copies(runtime, image.contexts[mode])}
    ports = {8000: _free_port(), 8001: _free_port()}
    config_here = paths[spec.CONFIG_FILE]
    text = _remap(config_here.read_text("utf-8"), paths).replace("0.0.0.0", "127.0.0.1")
    for port, free in ports.items():
        text = re.sub(rf"\b{port}\b", str(free), text)
    remapped = tmp_path_factory.mktemp("etc") / "serve.yaml"
    remapped.write_text(text, encoding="utf-8")
    paths[spec.CONFIG_FILE] = remapped
    env = {k: _remap(v, paths) for k, v in runtime.one("ENV").pairs().items()}
    if mode == "pulled":
        env["VISIONYARD_TRACKING__URI"] = image.tracking_uri
    command = runtime.one("ENTRYPOINT").exec_form()
    command += [a for cmd in runtime.all("CMD") for a in cmd.exec_form()]
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None
    assert executable.startswith(str(paths[spec.VENV]))
    workdir = _remap(runtime.one("WORKDIR").args, paths)
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [executable, *command[1:]], stdout=subprocess.PIPE, stderr=stderr, text=True,
            env=env, cwd=workdir,
        )  # fmt: skip
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline and process.poll() is None:
            match = READY.match(process.stdout.readline().strip())
            url = match["http"] if match else None
        assert url, log.read_text("utf-8")[-3000:]
        yield Container(process, url, env, ports[8000], runtime)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()


def test_the_image_server_is_ready_and_answers(container: Container) -> None:
    with httpx.Client(base_url=container.url, timeout=30) as http:
        assert http.get("/v2/health/ready").status_code == 200
        answer = http.post(f"/v1/models/{MODEL}:predict", content=encoded(COLOURS["red"]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0][0]["label"] == "red"
        meta = http.get(f"/v2/models/{MODEL}").json()
        assert meta["versions"] == ["1"]


def test_the_healthcheck_command_passes_against_it(container: Container) -> None:
    options, _, command = container.runtime.one("HEALTHCHECK").args.partition(" CMD ")
    import json

    argv = [a.replace(":8000/", f":{container.port}/") for a in json.loads(command)]
    python = shutil.which(argv[0], path=container.env["PATH"])
    assert python is not None
    done = subprocess.run([python, *argv[1:]], env=container.env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_sigterm_stops_the_image_server_cleanly(container: Container) -> None:
    container.process.send_signal(signal.SIGTERM)
    assert container.process.wait(15) == 0
