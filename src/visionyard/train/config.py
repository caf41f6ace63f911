"""The trainer's configuration (one pydantic model) and the contract it implies.

The vision contract of a trained model is BUILT from this configuration (input size, resize
policy, mean/std), and the trainer's data pipeline ends in that contract's own preprocessing,
so the transforms used in training and in serving cannot differ.

``seed``, ``device``, ``num_threads`` and ``max_pixels`` default to ``None``: they are then
taken from :class:`~visionyard.settings.Settings` by :meth:`TrainConfig.resolved`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from visionyard.contract.schema import IMAGENET_MEAN, IMAGENET_STD, VisionContract
from visionyard.errors import ConfigError
from visionyard.settings import Settings

#: The ONNX output (the contract's ``embedding_output``) holding a trained model's pooled
#: penultimate features (:func:`visionyard.train.models.with_embedding`).
EMBEDDING_OUTPUT = "embedding"

#: The registry's names (visionyard.train.models.ARCHITECTURES); a test keeps them equal.
ARCH_NAMES = ("small_cnn", "resnet18", "mobilenet_v2")
Amp = Literal["none", "bf16", "fp16"]
#: What each task may monitor for early stopping and the best epoch (the first is the default).
MONITORS = {
    "classification": ("val_accuracy", "val_loss"),
    "detection": ("val_map_50_95", "val_map_50"),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Augmentation(_Model):
    """On-the-fly augmentation of the decoded training images (never of validation images)."""

    enabled: bool = True
    hflip: bool = True
    vflip: bool = False
    rotate_degrees: float = Field(10.0, ge=0, le=180)
    translate: float = Field(0.1, ge=0, le=0.5, description="fraction of width/height")
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = Field(0.2, ge=0, lt=1)
    contrast: float = Field(0.2, ge=0, lt=1)
    saturation: float = Field(0.2, ge=0, lt=1)

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError("scale must be (low, high) with 0 < low <= high")
        return value


#: AdamW learning rates of classifiers whose architecture does not train at the default 3e-3.
#: Measured on the synthetic shapes set, 6 epochs: a ResNet-18 at 112x112 at 3e-3 never left
#: chance (train loss ln 4, top-1 0.31), at 1e-3 reached 0.59 and at 5e-4 0.98; at 64x64 3e-3
#: reached 0.70 and 5e-4 0.95. A MobileNetV2 at 64x64 does better at 3e-3 (0.68) than at 1e-3
#: (0.47), so it keeps the default.
CLASSIFIER_LR: dict[str, float] = {"resnet18": 5e-4}


class TrainConfig(_Model):
    """Everything one training run needs; logged as the run's parameters."""

    data: Path
    task: Literal["classification", "detection"] = "classification"
    arch: str = "small_cnn"
    width: float = Field(1.0, gt=0, le=4, description="channel width multiplier")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "none"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    input_size: tuple[int, int] = (64, 64)
    resize: Literal["resize", "center_crop", "letterbox"] = "resize"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment: Augmentation = Field(default_factory=Augmentation)
    patience: int | None = Field(
        3,
        ge=1,
        description="epochs without improvement before stopping (None = off); an accuracy of "
        "1.0 stops at once",
    )
    min_delta: float = Field(0.0, ge=0)
    monitor: Literal["val_accuracy", "val_loss", "val_map_50_95", "val_map_50"] = "val_accuracy"
    score_threshold: float = Field(
        0.2, gt=0, lt=1, description="detection: the contract's score threshold"
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="used when there is no val split")
    seed: int | None = None
    device: str | None = None
    num_threads: int | None = Field(None, ge=0)
    amp: Amp = "none"
    num_workers: Literal[0] = Field(0, description="images are decoded once into memory")
    max_pixels: int | None = Field(None, gt=0)
    experiment: str | None = None
    run_name: str | None = None
    opset: int = Field(17, ge=13, le=23)
    parity_max_abs: float = Field(1e-3, gt=0)
    parity_min_agreement: float = Field(1.0, ge=0, le=1)
    parity_images: int = Field(64, ge=1, description="validation images used for parity")

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A detector monitors mAP, letterboxes and waits 8 epochs for an improvement (its mAP
        moves in smaller, noisier steps than an accuracy) unless told otherwise. A classifier
        whose architecture needs another learning rate with AdamW gets it (``CLASSIFIER_LR``)."""
        if isinstance(data, dict) and data.get("task") == "detection":
            defaults = {"monitor": MONITORS["detection"][0], "resize": "letterbox", "patience": 8}
            data = {**defaults, **data}
        elif isinstance(data, dict) and data.get("optimizer", "adamw") == "adamw":
            lr = CLASSIFIER_LR.get(str(data.get("arch", "small_cnn")))
            data = {**data, "lr": lr} if lr is not None and data.get("lr") is None else data
        return data

    @model_validator(mode="after")
    def _monitor_fits_task(self) -> TrainConfig:
        if self.monitor not in MONITORS[self.task]:
            allowed = " or ".join(MONITORS[self.task])
            raise ValueError(f"monitor: a {self.task} run monitors {allowed}, not {self.monitor}")
        return self

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in ARCH_NAMES:
            raise ValueError(
                f"unknown architecture {value!r}; choose one of: " + ", ".join(ARCH_NAMES)
            )
        return value

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError("input_size must be (height, width), each at least 8")
        if info.data.get("task") == "detection" and (value[0] % 16 or value[1] % 16):
            # the detector's stride-16 stage (checked here, before a tracking run starts)
            raise ValueError(
                f"a detector's input size must be a multiple of 16, got {value[0]}x{value[1]}"
            )
        return value

    def resolved(self, settings: Settings) -> TrainConfig:
        """Fill ``seed``, ``device``, ``num_threads`` and ``max_pixels`` from the settings."""
        defaults = {
            "seed": settings.train.seed,
            "device": settings.train.device,
            "num_threads": settings.train.num_threads,
            "max_pixels": settings.images.max_pixels,
        }
        update = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return self.model_copy(update=update)

    def contract(self, labels: Sequence[str]) -> VisionContract:
        """The vision contract these transforms define (what the bundle will carry), with the
        embedding output every architecture here exports."""
        if self.task == "detection":
            return VisionContract.detection(
                labels,
                input_size=self.input_size,
                resize=self.resize,
                mean=self.mean,
                std=self.std,
                decoding={"score_threshold": self.score_threshold},
            )
        return VisionContract.classification(
            labels,
            input_size=self.input_size,
            resize=self.resize,
            mean=self.mean,
            std=self.std,
            embedding_output=EMBEDDING_OUTPUT,
        )

    def params(self) -> dict[str, Any]:
        """Flat parameters for the tracking run (``augment.hflip`` style keys)."""
        flat: dict[str, Any] = {}
        for key, value in self.model_dump(mode="json").items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat


def make_config(**values: Any) -> TrainConfig:
    """Build a :class:`TrainConfig`; invalid values become ONE :class:`ConfigError` line."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"]) or "config"
            problems.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid training configuration: " + "; ".join(problems)) from exc
