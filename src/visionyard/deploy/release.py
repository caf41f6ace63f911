"""``visionyard deploy release``: a model release pipeline for CI, as files in a repository.

Written under ``--out`` (the repository root):

- ``.github/workflows/visionyard-release.yml``: GitHub Actions. On a push that changes the data
  or ``release/`` (the training configuration) it runs ``scripts/release.sh candidate`` (train,
  register, export the variants, gate against production on the pinned evaluation set, then a
  canary or staging), then waits for the ``production`` environment's required reviewers and
  runs ``scripts/release.sh production VERSION MODE``; beside it, job ``image`` builds the
  serving image with the candidate baked in and smoke-tests it (ready, metadata, graceful stop)
  on the runner's Docker. Built as a dict and dumped with PyYAML
  (nothing templated); checked against GitHub's workflow schema (check-jsonschema's vendored
  ``vendor.github-workflows``) in the tests;
- ``scripts/release.sh``: the steps, each one ``visionyard`` command whose exit code decides
  (the same script runs locally on the embedded store; ``release_script.sh`` beside this module);
- ``release/release.env``: model name, data, training flags, variants, canary (environment
  variables of the same name win);
- ``release/gate.yaml``: the promotion gate on the pinned evaluation set (its digest pinned
  when the set exists at generation time).

Existing files of these names are refused unless ``force`` (which overwrites only them: the
output is usually a repository root full of other files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visionyard import __version__
from visionyard.deploy import spec
from visionyard.deploy.spec import write_files
from visionyard.errors import ConfigError
from visionyard.settings import ServingSettings

WORKFLOW = ".github/workflows/visionyard-release.yml"
SCRIPT = "scripts/release.sh"
ENV_FILE = "release/release.env"
GATE_FILE = "release/gate.yaml"
_CPU_TORCH = "--extra-index-url https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class ReleaseOptions:
    model: str
    data: str = "data/train"  # training ImageFolder, relative to the repository root
    eval_data: str = "data/eval"  # the pinned evaluation set
    train_flags: str = "--epochs 10"
    variants: str = "fp32,int8"
    canary: int = 0  # > 0: a canary at this % instead of staging
    install: str = f'{_CPU_TORCH} "visionyard[torch]=={__version__}"'
    python: str = "3.12"


def generate(out: Path, options: ReleaseOptions, force: bool = False) -> list[Path]:
    """Write the workflow, the script, the settings and the gate under ``out``."""
    _check(options)
    files = {
        WORKFLOW: workflow_yaml(options),
        SCRIPT: script_text(),
        ENV_FILE: env_text(options),
        GATE_FILE: gate_text(out, options),
    }
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        raise ConfigError(
            f"{out} already holds {', '.join(existing)}: pass --force to overwrite them"
        )
    written = write_files(out, files)
    (out / SCRIPT).chmod(0o755)
    return written


def _check(options: ReleaseOptions) -> None:
    if not options.model or any(c in options.model for c in " /@'\"$`\\"):
        raise ConfigError(f"--model {options.model!r}: a registered model name such as shapes")
    for name, path in (("--data", options.data), ("--eval", options.eval_data)):
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ConfigError(f"{name} {path!r}: a folder inside the repository, relative to it")


def script_text() -> str:
    return (Path(__file__).parent / "release_script.sh").read_text(encoding="utf-8")


def env_text(options: ReleaseOptions) -> str:
    def line(name: str, value: str, why: str) -> str:
        return f': "${{{name}:={_bash(value)}}}"  # {why}\n'

    return (
        "# Release settings read by scripts/release.sh; a variable set in the environment wins.\n"
        "# This file is the training configuration: a change here starts a release.\n"
        + line("VY_MODEL", options.model, "registered model name")
        + line("VY_DATA", options.data, "training ImageFolder (train/ and val/)")
        + line("VY_GATE", GATE_FILE, "promotion gate: pinned evaluation set, regressions")
        + line("VY_TRAIN_FLAGS", options.train_flags, "flags of `visionyard train`")
        + line("VY_VARIANTS", options.variants, "variants `visionyard export` builds")
        + line("VY_EXPORT_FLAGS", "", "more flags of `visionyard export`")
        + line("VY_CANARY", str(options.canary), "> 0: a canary at this %, else staging")
        + line("VY_CANARY_STEPS", "5,25,50,100", "canary steps, %")
        + line("VY_ROLLOUT_POLICY", "", "rollout policy file (YAML), optional")
    )


def _bash(value: str) -> str:
    """``value`` inside ``"${X:=...}"``: only ``"``, ``$``, backquote and backslash need care."""
    for char in '\\"$`':
        value = value.replace(char, "\\" + char)
    return value


def gate_text(out: Path, options: ReleaseOptions) -> str:
    """The gate file; the evaluation set's digest is pinned when the set exists now."""
    dataset = os.path.relpath(options.eval_data, Path(GATE_FILE).parent)
    pin = "# dataset_digest: (run `visionyard data manifest` on the set and pin it here)\n"
    eval_dir = out / options.eval_data
    if eval_dir.is_dir():
        from visionyard.data.manifest import build_manifest, read_dataset

        pin = f"dataset_digest: {build_manifest(read_dataset(eval_dir)).digest}\n"
    return (
        "# Promotion gate (visionyard promote --gate): the candidate against production's\n"
        "# version on the pinned evaluation set; see README 'Registry'.\n"
        f"dataset: {dataset}\n" + pin + "max_metric_drop: 0.01\n"
        "max_class_drop: 0.05\n"
        "min_samples: 20\n"
        "min_variant_agreement: 0.95\n"
    )


def workflow(options: ReleaseOptions) -> dict[str, Any]:
    """The GitHub Actions workflow as data (see the module docstring)."""
    paths = sorted({f"{options.data}/**", f"{options.eval_data}/**", "release/**", SCRIPT})
    return {
        "name": f"visionyard release: {options.model}",
        "on": {
            "push": {"branches": ["main"], "paths": paths},
            "workflow_dispatch": {},
        },
        "permissions": {"contents": "read"},
        "concurrency": {
            "group": f"visionyard-release-{options.model}",
            "cancel-in-progress": False,
        },
        "env": {
            "VISIONYARD_TRACKING__URI": "${{ vars.VISIONYARD_TRACKING_URI }}",
            "MLFLOW_TRACKING_USERNAME": "${{ secrets.MLFLOW_TRACKING_USERNAME }}",
            "MLFLOW_TRACKING_PASSWORD": "${{ secrets.MLFLOW_TRACKING_PASSWORD }}",
            "COLUMNS": "160",
        },
        "jobs": {
            "candidate": {
                "name": "train, register, export, gate, stage",
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 180,
                "outputs": {
                    "version": "${{ steps.release.outputs.version }}",
                    "mode": "${{ steps.release.outputs.mode }}",
                },
                "steps": [
                    *_setup(options, lfs=True),
                    {
                        "id": "release",
                        "name": "release candidate",
                        "run": "scripts/release.sh candidate",
                    },
                ],
            },  # fmt: skip
            "image": _image_job(options),
            "production": {
                "name": "production (after approval)",
                "needs": "candidate",
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 60,
                # Settings > Environments > production: add required reviewers; the job waits.
                "environment": {"name": "production"},
                "env": {
                    "VERSION": "${{ needs.candidate.outputs.version }}",
                    "MODE": "${{ needs.candidate.outputs.mode }}",
                },
                "steps": [
                    *_setup(options, lfs=False),
                    {"name": "promote", "run": 'scripts/release.sh production "$VERSION" "$MODE"'},
                ],
            },
        },
    }


def _image_job(options: ReleaseOptions) -> dict[str, Any]:
    """Build the serving image with the candidate baked in (``deploy docker --bake``), start it
    and wait for its readiness probe: the smoke test runs where GitHub's runners have Docker."""
    ready = f"127.0.0.1:{ServingSettings().http_port}{spec.READY_PATH}"
    port = ServingSettings().http_port
    smoke = (
        f'docker run -d --name visionyard-smoke -p 127.0.0.1:{port}:{port} "$IMAGE"\n'
        "for _ in $(seq 90); do\n"
        f"  if curl -fsS {ready}; then break; fi\n"
        "  sleep 2\n"
        "done\n"
        f"curl -fsS {ready} || {{ docker logs visionyard-smoke; exit 1; }}\n"
        f'curl -fsS "127.0.0.1:{port}/v2/models/${{MODEL}}"\n'
        "docker stop -t 30 visionyard-smoke\n"
    )
    return {
        "name": "serving image: build and smoke-test",
        "needs": "candidate",
        "runs-on": "ubuntu-latest",
        "timeout-minutes": 45,
        "env": {
            "MODEL": options.model,
            "VERSION": "${{ needs.candidate.outputs.version }}",
            "IMAGE": f"visionyard-{options.model}:${{{{ needs.candidate.outputs.version }}}}",
        },
        "steps": [
            *_setup(options, lfs=False),
            {
                "name": "build context (the candidate's verified bundle baked in)",
                # the wheel of the release installed above (a checkout: pip wheel --no-deps .)
                "run": f'python -m pip download --no-deps -d wheels "visionyard=={__version__}"'
                "\nvisionyard deploy docker --out image-context --force "
                '--bake "${MODEL}=${MODEL}/${VERSION}" --wheel "$(ls wheels/visionyard-*.whl)"',
            },
            {"name": "docker build", "run": 'docker build -t "$IMAGE" image-context'},
            {"name": "smoke test: ready, metadata, graceful stop", "run": smoke},
        ],
    }


def _setup(options: ReleaseOptions, *, lfs: bool) -> list[dict[str, Any]]:
    return [
        {"uses": "actions/checkout@v4", "with": {"lfs": lfs}},
        {"uses": "actions/setup-python@v5", "with": {"python-version": options.python}},
        {"name": "install visionyard", "run": f"python -m pip install {options.install}"},
    ]


def workflow_yaml(options: ReleaseOptions) -> str:
    header = (
        "# Written by `visionyard deploy release`: a model release on a change of data or of\n"
        "# release/ (training configuration). Needs a shared tracking store: repository variable\n"
        "# VISIONYARD_TRACKING_URI (and MLflow credentials as secrets), and required reviewers\n"
        "# on the `production` environment.\n"
    )
    return header + yaml.safe_dump(workflow(options), sort_keys=False, width=100)
