"""The contract's preprocessing equals a torchvision-style reference written with torch ops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.fixtures.images import encode, random_rgb, two_colour_jpeg
from visionyard.contract import (
    ImageMeta,
    VisionContract,
    decode_for_contract,
    preprocess_batch,
    preprocess_image,
)
from visionyard.contract.schema import Preprocessing

RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
}
SIZES = [(37, 23), (23, 37), (64, 48), (100, 30)]  # (width, height) of original images


def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor for RGB PIL images."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)


def reference_geometry(image: Image.Image, pre: Preprocessing) -> torch.Tensor:
    """torchvision Resize/CenterCrop (PIL backend) and YOLO letterbox, as tensors in 0..1."""
    height, width = pre.input_size.height, pre.input_size.width
    resample = RESAMPLE[pre.interpolation]
    w0, h0 = image.size
    if pre.resize == "resize":
        return to_tensor(image.resize((width, height), resample))
    if pre.resize == "center_crop":
        assert pre.resize_shorter is not None
        short, long = min(w0, h0), max(w0, h0)
        new_short, new_long = pre.resize_shorter, int(pre.resize_shorter * long / short)
        new_w, new_h = (new_short, new_long) if w0 <= h0 else (new_long, new_short)
        t = to_tensor(image.resize((new_w, new_h), resample))
        top = int(round((new_h - height) / 2.0))
        left = int(round((new_w - width) / 2.0))
        return t[:, top : top + height, left : left + width]
    r = min(height / h0, width / w0)
    new_w, new_h = int(round(w0 * r)), int(round(h0 * r))
    t = to_tensor(image.resize((new_w, new_h), resample))
    dw, dh = width - new_w, height - new_h
    top, left = int(round(dh / 2 - 0.1)), int(round(dw / 2 - 0.1))
    return F.pad(t, (left, dw - left, top, dh - top), value=pre.pad_value / 255)


def reference(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    t = reference_geometry(image, pre)
    if pre.color_order == "BGR":
        t = t.flip(0)
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    t = (t - mean) / std  # torchvision Normalize
    if pre.layout == "NHWC":
        t = t.permute(1, 2, 0)
    return t.contiguous().numpy()


def contract_for(resize: str, **pre: Any) -> VisionContract:
    factory = VisionContract.detection if resize == "letterbox" else VisionContract.classification
    return factory(["a", "b"], input_size=(32, 40), resize=resize, **pre)  # type: ignore[arg-type]


@pytest.mark.parametrize("resize", ["resize", "center_crop", "letterbox"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_matches_torch_reference(
    resize: str, layout: str, color_order: str, interpolation: str
) -> None:
    contract = contract_for(
        resize,
        layout=layout,
        color_order=color_order,
        interpolation=interpolation,
        mean=(0.4, 0.5, 0.6),
        std=(0.2, 0.25, 0.3),
    )
    for seed, (w, h) in enumerate(SIZES):
        image = random_rgb(w, h, seed)
        got, _ = preprocess_image(image, contract)
        want = reference(image, contract.preprocessing)
        assert got.dtype == np.float32
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5, (w, h)


def test_bgr_reverses_channels_and_mean_is_in_tensor_order(rgb_image: Image.Image) -> None:
    plain = {"mean": (0, 0, 0), "std": (1, 1, 1)}
    rgb, _ = preprocess_image(rgb_image, contract_for("resize", **plain))
    bgr, _ = preprocess_image(rgb_image, contract_for("resize", color_order="BGR", **plain))
    np.testing.assert_array_equal(bgr, rgb[::-1])
    assert np.abs(rgb - bgr).max() > 0.5
    shifted, _ = preprocess_image(
        rgb_image, contract_for("resize", color_order="BGR", mean=(0.5, 0, 0), std=(1, 1, 1))
    )
    np.testing.assert_allclose(shifted[0], rgb[2] - 0.5, atol=1e-7)  # blue got mean[0]


def test_center_crop_default_shorter_side_is_imagenet_convention() -> None:
    contract = VisionContract.classification(["a"], input_size=224)
    assert contract.preprocessing.resize_shorter == 256
    image = random_rgb(300, 400)
    tensor, meta = preprocess_image(image, contract)
    assert tensor.shape == (3, 224, 224)
    # 300x400 -> 256x341 (int(256 * 400 / 300)), crop offsets (16, round(58.5) = 58)
    assert meta == ImageMeta(300, 400, 256 / 300, 341 / 400, -16.0, -58.0)


def test_letterbox_meta_and_padding(rgb_image: Image.Image) -> None:
    contract = VisionContract.detection(["a"], input_size=64, pad_value=7)
    tensor, meta = preprocess_image(rgb_image, contract)  # 37x23 -> 64x40, pad 12 top
    assert meta == ImageMeta(37, 23, 64 / 37, 40 / 23, 0.0, 12.0)
    np.testing.assert_allclose(tensor[:, :12, :], 7 / 255, atol=1e-7)
    np.testing.assert_allclose(tensor[:, 52:, :], 7 / 255, atol=1e-7)
    assert np.abs(tensor[:, 12:52, :] - 7 / 255).max() > 0.5


def test_uint8_layout_gives_raw_pixels(rgb_image: Image.Image) -> None:
    contract = VisionContract.classification(
        ["a"], resize="resize", input_size=(23, 37), dtype="uint8", layout="NHWC", scale=1,
        mean=(0, 0, 0), std=(1, 1, 1), color_order="BGR",
    )  # fmt: skip
    tensor, meta = preprocess_image(rgb_image, contract)
    assert tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor, np.asarray(rgb_image)[..., ::-1])
    assert (meta.scale_x, meta.scale_y) == (1.0, 1.0)


def test_float16_is_the_rounded_float32(rgb_image: Image.Image) -> None:
    full, _ = preprocess_image(rgb_image, contract_for("letterbox"))
    half, _ = preprocess_image(rgb_image, contract_for("letterbox", dtype="float16"))
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full.astype(np.float16))


def test_batch_of_mixed_sources_equals_single_images(tmp_path: Path) -> None:
    contract = contract_for("center_crop")
    images = [random_rgb(37, 23, 1), random_rgb(50, 60, 2), random_rgb(41, 41, 3)]
    path = tmp_path / "b.png"
    path.write_bytes(encode(images[1]))
    batch = preprocess_batch([encode(images[0]), path, images[2]], contract)
    assert batch.tensor.shape == (3, 3, 32, 40)
    for i, image in enumerate(images):
        single, meta = preprocess_image(image, contract)
        np.testing.assert_array_equal(batch.tensor[i], single)
        assert batch.metas[i] == meta
    assert preprocess_batch([str(path)], contract).metas[0].width == 50


def test_batch_applies_the_contracts_exif_rule() -> None:
    data = two_colour_jpeg(orientation=6)
    applied = preprocess_batch([data], contract_for("resize", exif="apply"))
    ignored = preprocess_batch([data], contract_for("resize", exif="ignore"))
    assert (applied.metas[0].width, applied.metas[0].height) == (20, 40)
    assert (ignored.metas[0].width, ignored.metas[0].height) == (40, 20)


def test_decode_for_contract_uses_alpha_rules() -> None:
    data = encode(Image.new("RGBA", (2, 2), (200, 0, 0, 0)))
    over_green = contract_for("resize", conversion={"background": (0, 255, 0)})
    dropped = contract_for("resize", conversion={"alpha": "drop"})
    assert decode_for_contract(data, over_green).getpixel((0, 0)) == (0, 255, 0)
    assert decode_for_contract(data, dropped).getpixel((0, 0)) == (200, 0, 0)


@pytest.mark.parametrize("resize", ["resize", "center_crop", "letterbox"])
def test_meta_maps_image_content_to_its_place_in_the_tensor(resize: str) -> None:
    """A white square drawn on the original lands where ImageMeta.to_input says."""
    pixels = np.zeros((90, 120, 3), dtype=np.uint8)
    pixels[30:60, 50:80] = 255  # box x1=50, y1=30, x2=80, y2=60
    contract = contract_for(resize, interpolation="nearest", layout="NHWC", mean=(0, 0, 0),
                            std=(1, 1, 1), pad_value=0)  # fmt: skip
    tensor, meta = preprocess_image(Image.fromarray(pixels), contract)
    rows, cols = np.nonzero(tensor[..., 0] > 0.5)
    x1, y1, x2, y2 = meta.to_input(np.array([[50.0, 30.0, 80.0, 60.0]]))[0]
    assert abs(cols.min() - x1) <= 1
    assert abs(cols.max() + 1 - x2) <= 1
    assert abs(rows.min() - y1) <= 1
    assert abs(rows.max() + 1 - y2) <= 1


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_normalisation_is_bit_identical_to_the_formula(
    dtype: str, layout: str, color_order: str
) -> None:
    """The lookup table gives exactly ``(v * scale - mean) / std`` in float32, then the dtype."""
    numeric = dtype != "uint8"
    contract = VisionContract.classification(
        ["a"],
        resize="resize",
        input_size=(29, 31),
        dtype=dtype,
        layout=layout,
        color_order=color_order,
        scale=1 / 255 if numeric else 1,
        mean=(0.485, 0.456, 0.406) if numeric else (0, 0, 0),
        std=(0.229, 0.224, 0.225) if numeric else (1, 1, 1),
    )
    pre = contract.preprocessing
    image = random_rgb(31, 29, seed=5)
    got, _ = preprocess_image(image, contract)
    pixels = np.asarray(image)
    if color_order == "BGR":
        pixels = pixels[..., ::-1]
    want: np.ndarray = pixels
    if numeric:
        mean = np.asarray(pre.mean, np.float32)
        std = np.asarray(pre.std, np.float32)
        want = (pixels.astype(np.float32) * np.float32(pre.scale) - mean) / std
    if layout == "NCHW":
        want = want.transpose(2, 0, 1)
    want = want.astype(dtype)
    assert got.dtype == np.dtype(dtype)
    assert got.flags.c_contiguous
    assert np.array_equal(got, want)
