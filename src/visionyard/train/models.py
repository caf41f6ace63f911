"""Small image-classification architectures in plain torch, and their registry.

torchvision does not import beside the torch installed here, and nothing may download weights,
so the three reference architectures are written out: a small CNN (fast on CPU), a
ResNet-18-style network and a MobileNetV2-style network. Every architecture takes a width
multiplier so tests can build tiny versions. All start from random weights; the global torch
RNG (seeded by the trainer) decides the initialisation. :func:`with_embedding` makes a model
also return its pooled penultimate features, exported as the ONNX output ``embedding`` so the
monitor's embedding (MMD) detector runs for trained models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from visionyard.errors import ConfigError

Builder = Callable[[int, float], nn.Module]


def _channels(base: int, width: float, divisor: int = 4) -> int:
    """``base * width`` rounded to a multiple of ``divisor`` (never below ``divisor``)."""
    value = base * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    padding = (kernel - 1) // 2
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


def _init_weights(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


class Classifier(nn.Module):
    """``features`` (N, C, H, W) -> global pool (average or max) -> dropout -> linear logits."""

    def __init__(
        self,
        features: nn.Module,
        channels: int,
        num_classes: int,
        dropout: float,
        pool: str = "avg",
    ):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        _init_weights(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate features ``(N, channels)``: what the head sees."""
        y: torch.Tensor = self.pool(self.features(x)).flatten(1)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.dropout(self.embed(x)))
        return logits


class WithEmbedding(nn.Module):
    """A :class:`Classifier` returning ``(logits, embedding)``, as the ONNX export holds them
    (``embedding`` is the contract's ``embedding_output``). Shares the classifier's weights."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.classifier.embed(x)
        logits: torch.Tensor = self.classifier.head(self.classifier.dropout(embedding))
        return logits, embedding


def with_embedding(model: nn.Module) -> nn.Module:
    """``model`` returning ``(logits, embedding)``; every architecture here is a Classifier."""
    if not isinstance(model, Classifier):
        raise ConfigError(f"{type(model).__name__} has no embedding (not a Classifier)")
    return WithEmbedding(model)


# --- small CNN -----------------------------------------------------------------------------


def small_cnn(num_classes: int, width: float = 1.0) -> nn.Module:
    """A stride-2 stem and three conv-BN-ReLU-pool stages (16, 32, 64, 128 channels at width 1),
    then a global max pool.

    The max pool answers "is this feature anywhere in the image", which suits objects of any
    size and position better than an average dominated by the background. The strided stem
    halves the resolution before any full-size activation is stored (CPU time is mostly memory).
    """
    stem = _channels(16, width)
    layers: list[nn.Module] = [_conv_bn(3, stem, 3, 2), nn.ReLU(inplace=True)]
    c_in = stem
    for base in (32, 64, 128):
        c_out = _channels(base, width)
        layers += [_conv_bn(c_in, c_out, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    return Classifier(nn.Sequential(*layers), c_in, num_classes, dropout=0.1, pool="max")


# --- ResNet-18-style -----------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(c_in, c_out, 3, stride), nn.ReLU(inplace=True), _conv_bn(c_out, c_out, 3)
        )
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = _conv_bn(c_in, c_out, 1, stride) if needs_projection else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.relu(self.body(x) + self.shortcut(x))
        return y


def resnet18(num_classes: int, width: float = 1.0) -> nn.Module:
    """ResNet-18 layout (stem, 4 stages of 2 basic blocks); 64 base channels at width 1."""
    widths = [_channels(c, width) for c in (64, 128, 256, 512)]
    stem = nn.Sequential(_conv_bn(3, widths[0], 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    blocks: list[nn.Module] = []
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        stride = 1 if stage == 0 else 2
        blocks += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
        c_in = c_out
    return Classifier(nn.Sequential(stem, *blocks), c_in, num_classes, dropout=0.0)


# --- MobileNetV2-style ---------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1, linear); residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [_conv_bn(c_in, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(inplace=True),
            _conv_bn(hidden, c_out, 1),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.body(x)
        return x + y if self.residual else y


# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper.
_MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2(num_classes: int, width: float = 1.0) -> nn.Module:
    """MobileNetV2 layout with a width multiplier (channels rounded to multiples of 8)."""
    c_in = _channels(32, width, 8)
    layers: list[nn.Module] = [_conv_bn(3, c_in, 3, 2), nn.ReLU6(inplace=True)]
    for expand, base, repeats, first_stride in _MOBILENET_V2_STAGES:
        c_out = _channels(base, width, 8)
        for i in range(repeats):
            layers.append(InvertedResidual(c_in, c_out, first_stride if i == 0 else 1, expand))
            c_in = c_out
    last = _channels(1280, max(1.0, width), 8)
    layers += [_conv_bn(c_in, last, 1), nn.ReLU6(inplace=True)]
    return Classifier(nn.Sequential(*layers), last, num_classes, dropout=0.2)


ARCHITECTURES: dict[str, Builder] = {
    "small_cnn": small_cnn,
    "resnet18": resnet18,
    "mobilenet_v2": mobilenet_v2,
}


def build_model(arch: str, num_classes: int, width: float = 1.0) -> nn.Module:
    """Build a freshly initialised architecture from the registry."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ConfigError(f"unknown architecture {arch!r}; choose one of: {known}") from None
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    return builder(num_classes, width)
