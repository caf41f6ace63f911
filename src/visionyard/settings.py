"""One settings tree for visionyard, built once at the edge and passed down explicitly.

Sources, lowest to highest priority: defaults < config file < environment (``VISIONYARD_``
prefix, ``__`` between nested keys, e.g. ``VISIONYARD_TRACKING__URI``) < command-line flags.
:func:`load_settings` returns the settings together with where every leaf value came from, so
``visionyard config show`` can explain the effective configuration.

The config file is TOML or YAML, found from the ``--config`` flag, else ``VISIONYARD_CONFIG``,
else ``./visionyard.toml`` when it exists.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import EnvSettingsSource

from visionyard.errors import ConfigError

DEFAULT_CONFIG_FILE = "visionyard.toml"
Source = Literal["default", "file", "env", "flag"]
#: Trackers a run can be mirrored to besides MLflow (``tracking.mirror``).
MIRRORS = ("wandb",)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSettings(_Section):
    max_pixels: int = Field(40_000_000, gt=0, description="decompression-bomb limit per image")
    max_bytes: int = Field(32 * 1024 * 1024, gt=0, description="largest encoded image accepted")


class WandbSettings(_Section):
    """Where the Weights & Biases mirror writes (``tracking.mirror = ["wandb"]``)."""

    project: str | None = Field(None, description="W&B project; default: the MLflow experiment")
    entity: str | None = Field(None, description="W&B team or user; default: W&B's own")
    dir: Path | None = Field(None, description="W&B's local folder; default: $WANDB_DIR or .")
    mode: Literal["online", "offline"] | None = Field(
        None, description="default: $WANDB_MODE, else online"
    )


class TrackingSettings(_Section):
    uri: str | None = Field(None, description="MLflow tracking URI; default: SQLite under home")
    registry_uri: str | None = Field(None, description="MLflow registry URI; default: = uri")
    artifact_location: str | None = Field(None, description="artifact root for new experiments")
    experiment: str = "visionyard"
    flush_points: int = Field(1000, gt=0, description="metric points buffered before a write")
    flush_interval_s: float = Field(5.0, gt=0, description="longest time a point waits")
    mirror: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="also send every tracked run and registry event to: wandb (MLflow stays "
        "the source of truth); env: VISIONYARD_TRACKING__MIRROR=wandb",
    )
    mirror_timeout_s: float = Field(
        30.0, gt=0, description="longest wait at the end of a run for a mirror to catch up"
    )
    wandb: WandbSettings = Field(default_factory=lambda: WandbSettings())

    @field_validator("mirror", mode="before")
    @classmethod
    def _known_mirrors(cls, value: Any) -> Any:
        if isinstance(value, str):  # env: "wandb", "wandb,other" or a JSON list
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        names = value
        if not isinstance(names, list | tuple):
            return value
        names = [str(n).strip().lower() for n in names if str(n).strip()]
        unknown = [n for n in names if n not in MIRRORS]
        if unknown:
            raise ValueError(f"unknown mirror {unknown[0]!r}; known: {', '.join(MIRRORS)}")
        return list(dict.fromkeys(names))


class RegistrySettings(_Section):
    aliases: list[str] = Field(default_factory=lambda: ["candidate", "staging", "production"])
    signing_key: str | None = Field(
        None,
        description="HMAC key: sign digests at registration/export and refuse unsigned or "
        "badly signed versions on every load (for registries others can write to)",
    )


class TrainSettings(_Section):
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    num_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = library default")


class ServingSettings(_Section):
    host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(8001, ge=0, le=65535)
    admin_token: str | None = None
    max_batch_size: int = Field(8, gt=0)
    max_queue_delay_ms: float = Field(2.0, ge=0)
    max_queue_size: int = Field(256, gt=0)
    poll_interval_s: float = Field(5.0, gt=0)
    models: dict[str, str] = Field(
        default_factory=dict, description="name -> bundle path or NAME@alias / NAME/3"
    )
    inference_token: str | None = Field(None, description="bearer token for inference calls")
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    inference_workers: int = Field(
        2, gt=0, description="threads per model, each decoding its batch's images and running it"
    )
    lone_intra_op_threads: int = Field(
        0,
        ge=0,
        description="ONNX Runtime threads of a second session per model for a batch that runs "
        "alone (no other worker busy, nothing queued); 0 = one per core, 1 = no second session",
    )
    decode_workers: int | None = Field(
        None, description="deprecated, ignored: the inference workers decode their own images"
    )
    variant: str | None = Field(
        None,
        description="serve this variant of every version (fp32, int8, fp16); unset = the "
        "fastest that passed its export checks; a version without it is refused",
    )
    retry_after_s: int = Field(1, ge=0)
    rollout_decide_interval_s: float = Field(
        0.5,
        gt=0,
        description="how often a rollout's live figures are judged (and a breach "
        "rolled back); the rollout itself is re-read every poll_interval_s",
    )
    shadow_queue_size: int = Field(
        64, gt=0, description="shadow requests waiting for the candidate; full = shed"
    )
    log_queue_lines: int = Field(
        10000,
        gt=0,
        description="log lines held while stderr is not read (a stalled log shipper); past "
        "that they are dropped and counted, so the server never waits on its log stream",
    )
    drain_s: float = Field(
        10.0,
        gt=0,
        description="on SIGTERM: longest wait for in-flight requests before the server exits "
        "(deploy k8s derives terminationGracePeriodSeconds from it)",
    )
    header_timeout_s: float = Field(
        15.0,
        gt=0,
        description="REST: a connection whose request head (request line and headers) has not "
        "all arrived this long after the connection or the head's first byte is closed; the "
        "body and idle keep-alive (30 s) are not timed by it. gRPC: a connection that has not "
        "finished its HTTP/2 handshake this long after connecting is closed",
    )
    max_connections: int = Field(
        1000,
        gt=0,
        description="REST: open connections at most (lowered to fit the process's open-file "
        "limit); a connection past it is answered 503 and closed at once",
    )


class CaptureSettings(_Section):
    dir: Path | None = Field(
        None, description="keep hard images here (DIR/MODEL/VERSION/YYYYMMDD/); unset = off"
    )
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="keep an image whose top-1 confidence is below this"
    )
    max_margin: float = Field(
        0.1, ge=0, le=1, description="keep an image whose top-1 minus top-2 is below this"
    )
    sample_rate: float = Field(0.0, ge=0, le=1, description="share of all images kept at random")
    max_bytes: int = Field(1024**3, gt=0, description="disk quota of the capture folder")
    max_per_minute: int = Field(600, gt=0, description="images written per minute, at most")
    queue_size: int = Field(256, gt=0, description="images waiting for the writer; full = drop")


class MonitorSettings(_Section):
    enabled: bool = Field(True, description="live windows of image and prediction statistics")
    window_size: int = Field(500, gt=0, description="images per window, at most")
    window_seconds: float = Field(600.0, gt=0, description="oldest image a window keeps, seconds")
    min_samples: int = Field(30, gt=1, description="fewer images in a window: not enough data")
    alpha: float = Field(0.005, gt=0, lt=1, description="drift threshold after correction")
    compare_every_images: int = Field(
        100, gt=0, description="compare the window with the reference after this many images"
    )
    compare_every_s: float = Field(
        30.0, gt=0, description="...or after this many seconds (background thread)"
    )
    compare_budget: float = Field(
        0.02,
        gt=0,
        le=1,
        description="share of the time drift tests may take: after a test of t seconds the "
        "next one waits at least t / compare_budget seconds",
    )
    image_every: int = Field(
        1,
        gt=0,
        description="image statistics of one request in N (prediction statistics of all); "
        "raise it if monitoring costs too much throughput",
    )
    capture: CaptureSettings = Field(default_factory=CaptureSettings)
    ui: bool = Field(False, description="serve the read-only web page /ui (behind the token)")


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="VISIONYARD_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(Path(".visionyard"), description="project-local state directory")
    log_level: str = "INFO"
    images: ImageSettings = Field(default_factory=ImageSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() merges the layers itself (to know each value's source).
        return (init_settings,)

    def tracking_uri(self) -> str:
        """The explicit tracking URI: configured, or SQLite under ``home``."""
        if self.tracking.uri:
            return self.tracking.uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: dict[str, Source]
    config_file: Path | None


def load_settings(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the settings from every layer; ``flags`` uses dotted keys (``tracking.uri``)."""
    env = dict(os.environ if environ is None else environ)
    path = _find_config_file(config_file, env)
    layers: list[tuple[Source, dict[str, Any]]] = [
        ("file", _read_file(path) if path else {}),
        ("env", _read_env(env)),
        ("flag", _unflatten({k: v for k, v in (flags or {}).items() if v is not None})),
    ]
    merged: dict[str, Any] = {}
    for _, values in layers:
        merged = _deep_merge(merged, values)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    sources: dict[str, Source] = dict.fromkeys(_flatten(settings.model_dump()), "default")
    for name, values in layers:
        for key in _flatten(values):
            sources[key] = name
    return LoadedSettings(settings, sources, path)


def effective_values(settings: Settings) -> dict[str, Any]:
    """Every leaf value by dotted key."""
    return _flatten(settings.model_dump(mode="json"))


def _find_config_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    if env.get("VISIONYARD_CONFIG"):
        return _find_config_file(Path(env["VISIONYARD_CONFIG"]), {})
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    return data


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    try:
        return _EnvSource(env)()
    except Exception as exc:  # pydantic-settings raises SettingsError for bad JSON values
        raise ConfigError(f"bad VISIONYARD_ environment variable: {exc}") from exc


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' own env parsing, over a given mapping instead of ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = {
            k.lower(): v for k, v in environ.items() if k.upper() != "VISIONYARD_CONFIG"
        }
        super().__init__(Settings, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        parts.append(f"{field}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _unflatten(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in values.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
