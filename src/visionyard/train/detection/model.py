"""A CenterNet-style detector on the classification backbones (:mod:`visionyard.train.models`).

The backbone's ``features`` run as they do in a classifier; the outputs at strides 4, 8 and 16
(those the backbone has, found by a dry run at build time) are merged top-down (1x1 laterals,
nearest upsampling, sum: an FPN without the extra levels) into one stride-4 map, and three
heads read it: a per-class centre heatmap (logits), the box size (log of width and height in
strides) and the sub-cell centre offset (0..1 after a sigmoid).

:class:`DecodedDetector` is what is exported: it turns the maps into ``boxes [N, K, 4]`` xyxy in
input pixels and per-class ``scores [N, K, C]`` (sigmoid probabilities), K = one candidate per
cell, keeping only cells that are a local maximum of their class's heatmap (a 3x3 max pool, as
in CenterNet), so the contract's NMS sees few candidates. Written by hand: torchvision's
detectors are anchor-based and far too large for this machine, and no maintained small
anchor-free detector builds on arbitrary backbones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from visionyard.errors import ConfigError
from visionyard.train.models import Classifier, build_model

STRIDE = 4  # the output map's stride
TAP_STRIDES = (4, 8, 16)
NECK_CHANNELS = 64
PRIOR = 0.01  # initial heatmap probability (focal-loss practice)


class Detector(nn.Module):
    """``forward(x)`` -> ``(heat logits [N, C, H, W], size [N, 2, H, W], offset [N, 2, H, W])``
    at stride :data:`STRIDE`."""

    def __init__(self, backbone: nn.Sequential, taps: dict[int, tuple[int, int]], classes: int):
        super().__init__()
        self.backbone = backbone
        self.taps = taps  # module index -> (stride, channels)
        self.laterals = nn.ModuleDict(
            {str(s): nn.Conv2d(c, NECK_CHANNELS, 1) for s, c in taps.values()}
        )
        self.smooth = nn.Sequential(
            nn.Conv2d(NECK_CHANNELS, NECK_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(NECK_CHANNELS),
            nn.ReLU(inplace=True),
        )
        self.heat = _head(classes)
        self.size = _head(2)
        self.offset = _head(2)
        last = self.heat[-1]
        assert isinstance(last, nn.Conv2d)
        assert last.bias is not None
        nn.init.constant_(last.bias, -math.log((1 - PRIOR) / PRIOR))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels: dict[int, torch.Tensor] = {}
        for index, module in enumerate(self.backbone):
            x = module(x)
            if index in self.taps:
                stride = self.taps[index][0]
                levels[stride] = self.laterals[str(stride)](x)
        merged: torch.Tensor | None = None
        for stride in sorted(levels, reverse=True):
            level = levels[stride]
            if merged is not None:
                merged = level + nn.functional.interpolate(merged, size=level.shape[-2:])
            else:
                merged = level
        assert merged is not None
        features = self.smooth(merged)
        return self.heat(features), self.size(features), self.offset(features)


class DecodedDetector(nn.Module):
    """The exported form: ``(boxes [N, K, 4] xyxy input pixels, scores [N, K, C])``."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heat, size, offset = self.detector(x)
        return decode(heat, size, offset)


def decode(
    heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The maps -> ``(boxes, scores)``; non-peak cells score 0 (see the module docstring)."""
    n, classes, h, w = heat.shape
    probs = torch.sigmoid(heat)
    peaks = nn.functional.max_pool2d(probs, 3, stride=1, padding=1)
    probs = probs * (peaks == probs).to(probs.dtype)
    ys = torch.arange(h, dtype=probs.dtype, device=probs.device).view(1, h, 1)
    xs = torch.arange(w, dtype=probs.dtype, device=probs.device).view(1, 1, w)
    centre = torch.sigmoid(offset)
    cx = (xs + centre[:, 0]) * STRIDE
    cy = (ys + centre[:, 1]) * STRIDE
    half_w = torch.exp(size[:, 0].clamp(max=8.0)) * (STRIDE / 2)
    half_h = torch.exp(size[:, 1].clamp(max=8.0)) * (STRIDE / 2)
    boxes = torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
    return boxes.reshape(n, h * w, 4), probs.permute(0, 2, 3, 1).reshape(n, h * w, classes)


def build_detector(arch: str, classes: int, width: float, input_size: tuple[int, int]) -> Detector:
    """The detector on ``arch``'s backbone; the input must be a multiple of 16 on each side."""
    height, wide = input_size
    if height % 16 or wide % 16:
        raise ConfigError(f"a detector's input size must be a multiple of 16, got {height}x{wide}")
    classifier = build_model(arch, max(classes, 2), width)
    assert isinstance(classifier, Classifier)
    backbone = classifier.features
    if not isinstance(backbone, nn.Sequential):
        raise ConfigError(f"{arch}'s features are not a sequence of stages")
    taps = _taps(backbone, height, wide)
    return Detector(backbone, taps, classes)


def _taps(backbone: nn.Sequential, height: int, width: int) -> dict[int, tuple[int, int]]:
    """The last module index at each stride of :data:`TAP_STRIDES`, with its channels."""
    found: dict[int, tuple[int, int]] = {}
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, height, width)
        for index, module in enumerate(backbone):
            x = module(x)
            stride = height // x.shape[-2]
            if stride in TAP_STRIDES:
                found[stride] = (index, x.shape[1])
    backbone.train(was_training)
    if STRIDE not in found:
        raise ConfigError("the backbone has no stride-4 stage to detect on")
    return {index: (stride, channels) for stride, (index, channels) in found.items()}


def _head(out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(NECK_CHANNELS, NECK_CHANNELS, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(NECK_CHANNELS, out, 1),
    )
