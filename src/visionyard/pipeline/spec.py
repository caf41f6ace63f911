"""The pipeline spec: a YAML file chaining registered models, detect -> crop -> classify.

::

    pipeline: 1
    detector: shapes-detector@production     # REG@alias or REG/VERSION
    classifier: shapes@production
    crop: {padding: 0.1, min_size: 4}         # padding: a fraction of the box's side
    min_score: 0.3                            # detections below are not classified
    max_crops: 32                             # at most this many boxes per image, best first

Every key but ``pipeline``, ``detector`` and ``classifier`` is optional; an unknown key or an
impossible value is refused in one line that names the field (pydantic does the checking).

A registered pipeline version stores the spec with a ``pinned`` section added at registration:
each stage's reference resolved to ``REG/VERSION`` (:class:`PinnedSpec`). A stage written as
``REG@alias`` is recorded both ways: pinned (provenance, evaluation and gates use that version)
and followed live by a server (a move of that alias hot-swaps that stage only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from visionyard.errors import ConfigError

SPEC_FILE = "pipeline.yaml"
ROLES = ("detector", "classifier")
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][\w.\-]*)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+))$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CropSpec(_Strict):
    #: each side of the box grows by this fraction of the box's own side (0.1: 10% per side)
    padding: float = Field(0.1, ge=0, le=2)
    #: boxes narrower or lower than this many original pixels (after padding) are skipped
    min_size: int = Field(4, ge=1)


def _check_reference(value: str) -> str:
    if not _REF.match(value):
        raise ValueError(f"{value!r} is not a registry reference; write NAME@ALIAS or NAME/VERSION")
    return value


class PipelineSpec(_Strict):
    pipeline: Literal[1]
    detector: str
    classifier: str
    crop: CropSpec = CropSpec()
    min_score: float = Field(0.0, ge=0, le=1)
    max_crops: int = Field(32, ge=1, le=1000)

    _refs = field_validator("detector", "classifier")(_check_reference)

    def stage(self, role: str) -> Stage:
        return Stage.parse(role, str(getattr(self, role)))

    def stages(self) -> list[Stage]:
        return [self.stage(role) for role in ROLES]


class Pinned(_Strict):
    detector: str
    classifier: str

    _refs = field_validator("detector", "classifier")(_check_reference)


class PinnedSpec(PipelineSpec):
    """A registered pipeline's spec: every stage pinned to ``REG/VERSION``."""

    pinned: Pinned

    def pinned_stage(self, role: str) -> Stage:
        return Stage.parse(role, str(getattr(self.pinned, role)))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


@dataclass(frozen=True)
class Stage:
    """One stage's reference: ``name`` with an ``alias`` or a ``version``."""

    role: str
    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, role: str, text: str) -> Stage:
        match = _REF.match(text)
        if match is None:  # the spec's validators make this unreachable for parsed specs
            raise ConfigError(f"pipeline spec: {role}: {text!r} is not a registry reference")
        return cls(role, match["name"], match["alias"], match["version"])

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


_S = TypeVar("_S", bound=PipelineSpec)


def parse_spec(data: Any, source: str = "pipeline spec") -> PipelineSpec:
    """Validate a user's spec (a mapping); :class:`ConfigError` naming the field."""
    return _validate(PipelineSpec, data, source)


def parse_pinned(data: Any, source: str = "pipeline spec") -> PinnedSpec:
    return _validate(PinnedSpec, data, source)


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate a spec file."""
    return parse_spec(read_yaml(path), f"pipeline spec {path}")


def load_pinned(path: Path) -> PinnedSpec:
    return parse_pinned(read_yaml(path), f"pipeline spec {path}")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read pipeline spec {path}: {exc}") from exc


def _validate(kind: type[_S], data: Any, source: str) -> _S:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping (pipeline: 1, detector: ..., ...)")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_problem(exc)}") from exc


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "spec"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    if err["type"] == "missing":
        return f"{where}: required field missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"
