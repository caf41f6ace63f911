"""Helpers for the ``visionyard deploy docker`` tests: a registry holding ``colours@production``,
this checkout built as a wheel once per test process, and a small Dockerfile reader.

The reader knows only what the generated Dockerfiles use: stages (``FROM base AS name``),
instructions with ``\\`` continuations, and comments (kept apart: hadolint's pragmas are
comments).
"""

from __future__ import annotations

import atexit
import functools
import json
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.registry_support import log_colour_run
from visionyard.settings import Settings

MODEL = "colours"


@functools.cache
def colour_store(sqlite_template: Path) -> Settings:
    """``colours@production`` (version 1) in a SQLite store of its own, made once per test
    process (read-only for the tests: they share it)."""
    from visionyard.cli.main import main

    root = Path(tempfile.mkdtemp(prefix="vy-test-deploy-store-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    home = root / ".visionyard"
    home.mkdir(parents=True)
    shutil.copyfile(sqlite_template, home / "mlflow.db")
    settings = Settings(home=home, tracking={"experiment": "deploy-docker"})
    run_id = log_colour_run(settings, root)
    flags = store_flags(settings)
    assert main([*flags, "register", run_id, "--name", MODEL]) == 0
    assert main([*flags, "promote", MODEL, "1", "--to", "production"]) == 0
    return settings


def store_flags(settings: Settings) -> list[str]:
    return ["--home", str(settings.home), "--tracking-uri", settings.tracking_uri()]


@functools.cache
def built_wheel() -> Path:
    """This checkout as a wheel, built once per test process (``deploy docker``'s own builder)."""
    from visionyard.deploy.docker import build_wheel

    folder = Path(tempfile.mkdtemp(prefix="vy-test-wheel-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return build_wheel(folder)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (``ENTRYPOINT ["a", "b"]``)."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(v) for v in value]

    def pairs(self) -> dict[str, str]:
        """``KEY=VALUE`` pairs of ``ENV`` and ``LABEL`` (values quoted as the shell does)."""
        return dict(part.split("=", 1) for part in shlex.split(self.args))


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: {len(found)} {keyword} instructions"
        return found[0]


def read_dockerfile(path: Path) -> list[Stage]:
    """The stages of ``path`` in order."""
    stages: list[Stage] = []
    pending = ""
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and line.startswith("#"):
            if stages:
                stages[-1].comments.append(line)
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\") or not pending:
            continue
        keyword, _, args = pending.partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(name.strip(), base.strip()))
        else:
            stages[-1].instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
    return stages


def stage(stages: list[Stage], name: str) -> Stage:
    return next(s for s in stages if s.name == name)
