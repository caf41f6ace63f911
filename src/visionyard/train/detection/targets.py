"""CenterNet training targets and losses (Zhou et al., "Objects as Points", 2019).

Each object puts a Gaussian peak on its class's heatmap at its centre cell (elliptical, sized
by the box as in TTFNet: sigma = 0.54 * side / 6 in cells); the size and offset heads are
trained only at centre cells (L1 on the log size in strides and on the sub-cell offset). The
heatmap loss is CenterNet's penalty-reduced focal loss, normalised by the number of objects.
Targets are built in numpy per batch (the maps are small: a 64x64 input has 16x16 cells).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from visionyard.train.detection.model import STRIDE

ALPHA = 0.54
SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0
Boxes = NDArray[np.float64]  # [M, 4] xyxy in input pixels


@dataclass(frozen=True)
class Targets:
    heat: torch.Tensor  # [N, C, H, W] in 0..1
    size: torch.Tensor  # [N, 2, H, W]
    offset: torch.Tensor  # [N, 2, H, W]
    mask: torch.Tensor  # [N, 1, H, W] 1 at centre cells
    objects: int

    def to(self, device: torch.device) -> Targets:
        return Targets(
            self.heat.to(device), self.size.to(device), self.offset.to(device),
            self.mask.to(device), self.objects,
        )  # fmt: skip

    def chunk(self, start: int, stop: int) -> Targets:
        """Images ``start:stop``, normalised by the WHOLE batch's objects (so that the chunks'
        losses add up to the batch's: an out-of-memory backoff does not change the step)."""
        return Targets(
            self.heat[start:stop], self.size[start:stop], self.offset[start:stop],
            self.mask[start:stop], self.objects,
        )  # fmt: skip


def build_targets(
    boxes: Sequence[Boxes],
    labels: Sequence[NDArray[np.int64]],
    classes: int,
    shape: tuple[int, int],
) -> Targets:
    """Targets for a batch: per image, xyxy input-pixel ``boxes`` and class ``labels``;
    ``shape`` is the input's (height, width)."""
    h, w = shape[0] // STRIDE, shape[1] // STRIDE
    n = len(boxes)
    heat = np.zeros((n, classes, h, w), np.float32)
    size = np.zeros((n, 2, h, w), np.float32)
    offset = np.zeros((n, 2, h, w), np.float32)
    mask = np.zeros((n, 1, h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels, strict=True)):
        for box, label in zip(image_boxes, image_labels, strict=True):
            x0, y0, x1, y1 = (float(v) / STRIDE for v in box)
            bw, bh = x1 - x0, y1 - y0
            if bw <= 0 or bh <= 0:
                continue
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            col, row = min(int(cx), w - 1), min(int(cy), h - 1)
            sx, sy = max(ALPHA * bw / 6, 0.3), max(ALPHA * bh / 6, 0.3)
            peak = np.exp(-((xs - col) ** 2) / (2 * sx**2) - ((ys - row) ** 2) / (2 * sy**2))
            np.maximum(heat[i, label], peak, out=heat[i, label])
            size[i, :, row, col] = (np.log(bw), np.log(bh))
            offset[i, :, row, col] = (cx - col, cy - row)
            mask[i, 0, row, col] = 1.0
    return Targets(
        torch.from_numpy(heat), torch.from_numpy(size), torch.from_numpy(offset),
        torch.from_numpy(mask), int(mask.sum()),
    )  # fmt: skip


def losses(
    heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, targets: Targets
) -> dict[str, torch.Tensor]:
    """The loss parts and their weighted ``loss`` (summed over the batch, per object)."""
    objects = max(targets.objects, 1)
    probs = torch.sigmoid(heat.float()).clamp(1e-4, 1 - 1e-4)
    positive = targets.heat.eq(1.0).float()
    pos = torch.log(probs) * (1 - probs) ** 2 * positive
    neg = torch.log(1 - probs) * probs**2 * (1 - targets.heat) ** 4 * (1 - positive)
    heat_loss = -(pos.sum() + neg.sum()) / objects
    mask = targets.mask
    size_loss = (torch.abs(size.float() - targets.size) * mask).sum() / objects
    centre = torch.sigmoid(offset.float())
    offset_loss = (torch.abs(centre - targets.offset) * mask).sum() / objects
    total = heat_loss + SIZE_WEIGHT * size_loss + OFFSET_WEIGHT * offset_loss
    return {"loss": total, "loss_heatmap": heat_loss, "loss_size": size_loss,
            "loss_offset": offset_loss}  # fmt: skip
