"""Per-image statistics: image features from decoded pixels, flags from the encoded header,
prediction statistics from the outputs a session returns."""

from __future__ import annotations

import io
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.fixtures.runtime import colour_contract, detector_contract
from visionyard.contract.postprocess import Detection, ImageResult
from visionyard.contract.preprocess import ImageMeta
from visionyard.monitor import image_features, prediction_records, source_info
from visionyard.monitor.features import (
    classification_records,
    detection_record,
    pixel_statistics,
    thumbnail,
)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def one(record_values: tuple[float, ...]) -> float:
    assert len(record_values) == 1
    return record_values[0]


def test_a_flat_image_has_its_colour_as_brightness_and_no_contrast_or_edges() -> None:
    record = image_features(Image.new("RGB", (64, 32), (200, 100, 50)))
    numbers = record.numbers
    assert (one(numbers["width"]), one(numbers["height"]), one(numbers["aspect"])) == (64, 32, 2)
    assert one(numbers["brightness_r"]) == pytest.approx(200)
    assert one(numbers["brightness_g"]) == pytest.approx(100)
    assert one(numbers["brightness_b"]) == pytest.approx(50)
    assert one(numbers["contrast"]) == pytest.approx(0, abs=1e-3)
    assert one(numbers["sharpness"]) == pytest.approx(0, abs=1e-3)


def test_sharpness_falls_when_an_image_is_blurred_and_survives_the_thumbnail() -> None:
    from PIL import ImageFilter

    rng = np.random.default_rng(0)
    sharp = Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8))
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    s_sharp = one(image_features(sharp).numbers["sharpness"])
    s_blur = one(image_features(blurred).numbers["sharpness"])
    assert s_blur < s_sharp / 10


def test_a_darker_image_has_lower_brightness_and_contrast() -> None:
    rng = np.random.default_rng(1)
    pixels = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    bright = image_features(Image.fromarray(pixels)).numbers
    dark = image_features(Image.fromarray((pixels * 0.7).astype(np.uint8))).numbers
    assert one(dark["brightness_g"]) < 0.75 * one(bright["brightness_g"])
    assert one(dark["contrast"]) < one(bright["contrast"])


def test_numpy_arrays_rgb_rgba_and_grey_are_taken() -> None:
    grey = image_features(np.full((10, 20), 77, dtype=np.uint8))
    assert one(grey.numbers["brightness_r"]) == pytest.approx(77)
    assert grey.labels["grey"] == ("yes",)
    rgba = image_features(np.zeros((10, 20, 4), dtype=np.uint8))
    assert rgba.labels["alpha"] == ("yes",)
    assert image_features(np.zeros((10, 20, 3), dtype=np.uint8)).labels["grey"] == ("no",)


def test_source_info_reads_encoding_and_flags_from_the_header() -> None:
    rgb = Image.new("RGB", (8, 8), (1, 2, 3))
    assert source_info(encoded(rgb, "JPEG")).encoding == "jpeg"
    assert source_info(encoded(rgb, "WEBP")).encoding == "webp"
    assert source_info(encoded(rgb, "BMP")).encoding == "other"
    grey = source_info(encoded(Image.new("L", (8, 8)), "PNG"))
    assert (grey.encoding, grey.grey, grey.alpha) == ("png", True, False)
    assert source_info(encoded(Image.new("RGBA", (8, 8)), "PNG")).alpha
    exif = Image.Exif()
    exif[0x0112] = 6
    assert source_info(encoded(rgb, "JPEG", exif=exif.tobytes())).rotated
    assert not source_info(encoded(rgb, "JPEG")).rotated
    assert source_info(b"not an image").encoding == "other"


def test_the_header_flags_reach_the_record() -> None:
    data = encoded(Image.new("L", (8, 8), 50), "PNG")
    decoded = Image.open(io.BytesIO(data)).convert("RGB")  # what decoding gives the server
    record = image_features(decoded, source_info(data))
    assert record.labels == {"encoding": ("png",), "grey": ("yes",), "alpha": ("no",),
                             "rotated": ("no",)}  # fmt: skip


def test_classification_records_give_confidence_margin_entropy_and_class() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    first, second = classification_records(probs, ("a", "b", "c"))
    assert first.numbers["confidence"] == pytest.approx((0.7,))
    assert first.numbers["margin"] == pytest.approx((0.5,))
    expected = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert first.numbers["entropy"] == pytest.approx((expected,))
    assert first.labels["class"] == ("a",)
    assert second.numbers["entropy"] == pytest.approx((math.log(3),))
    assert second.numbers["margin"] == pytest.approx((0.0,), abs=1e-12)


def test_prediction_records_apply_softmax_to_logits_and_keep_embeddings() -> None:
    contract = colour_contract()
    logits = np.zeros((1, len(contract.labels)), dtype=np.float32)
    logits[0, 2] = 10.0
    meta = ImageMeta(8, 8, 1.0, 1.0, 0.0, 0.0)
    embedding = np.arange(4, dtype=np.float32)
    results = [ImageResult(embedding=embedding)]
    (record,) = prediction_records({"logits": logits}, results, contract, [meta])
    assert record.labels["class"] == (contract.labels[2],)
    assert one(record.numbers["confidence"]) > 0.99
    assert record.embedding is not None
    assert np.array_equal(record.embedding, embedding)


def test_detection_records_count_boxes_and_measure_relative_areas() -> None:
    found = [Detection((0.0, 0.0, 50.0, 20.0), 0.9, 0, "cat"),
             Detection((10.0, 10.0, 20.0, 20.0), 0.4, 1, "dog")]  # fmt: skip
    record = detection_record(ImageResult(detections=found), ImageMeta(100, 50, 1, 1, 0, 0))
    assert record.numbers["boxes"] == (2.0,)
    assert record.numbers["box_area"] == pytest.approx((0.2, 0.02))
    assert record.numbers["score"] == (0.9, 0.4)
    assert record.labels["class"] == ("cat", "dog")
    empty = prediction_records(
        {}, [ImageResult()], detector_contract(), [ImageMeta(9, 9, 1, 1, 0, 0)]
    )
    assert empty[0].numbers["boxes"] == (0.0,)
    assert empty[0].numbers["box_area"] == ()


def test_image_features_of_a_640x480_image_cost_well_under_a_millisecond_or_so() -> None:
    """The server computes these per request: the median over 50 calls stays small (the bound
    is loose because this machine is shared; ~0.3 ms measured)."""
    image = Image.fromarray((np.random.default_rng(2).random((480, 640, 3)) * 255).astype(np.uint8))
    times = []
    for _ in range(50):
        start = time.perf_counter()
        image_features(image)
        times.append(time.perf_counter() - start)
    assert sorted(times)[25] < 0.003


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_features_of_the_thumbnail_with_the_size_are_the_images_features(mode: str) -> None:
    """The server takes the thumbnail as it decodes and computes the statistics later."""
    from visionyard.monitor.features import thumbnail

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    info = source_info(image)
    whole = image_features(image, info)
    small = thumbnail(image)
    assert max(small.size) == 160
    assert small.mode == "RGB"
    assert image_features(small, info, image.size) == whole


def _statistics_one_at_a_time(image: Image.Image) -> dict[str, float]:
    """The pixel statistics as computed before they were batched (2026-12-07), one image at a
    time: profiles written then must stay comparable with live windows now."""
    rgb = np.asarray(thumbnail(image), dtype=np.float32)
    flat = rgb.reshape(-1, 3)
    means = flat.T @ np.full(len(flat), 1.0 / len(flat), dtype=np.float32)
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    sharpness = 0.0
    if lum.shape[0] >= 3 and lum.shape[1] >= 3:
        centre = lum[1:-1, 1:-1]
        laplacian = lum[1:-1, :-2] + lum[1:-1, 2:] + lum[:-2, 1:-1] + lum[2:, 1:-1] - 4 * centre
        sharpness = float(laplacian.var())
    return {
        "brightness_r": float(means[0]), "brightness_g": float(means[1]),
        "brightness_b": float(means[2]), "contrast": float(lum.std()), "sharpness": sharpness,
    }  # fmt: skip


def test_pixel_statistics_in_batches_are_bit_identical_to_one_image_at_a_time() -> None:
    rng = np.random.default_rng(3)
    images = []
    for index in range(60):  # several shapes, more of one shape than a stack holds
        size = (160, 120) if index % 2 else (int(rng.integers(1, 400)), int(rng.integers(1, 400)))
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        if index % 3 == 0:
            image = image.filter(ImageFilter.GaussianBlur(2))
        images.append(image.convert("L") if index % 7 == 0 else image)
    thumbs = [thumbnail(image) for image in images]
    together = pixel_statistics(thumbs)
    assert together == [pixel_statistics([t])[0] for t in thumbs]
    for image, found in zip(images, together, strict=True):
        assert {k: v[0] for k, v in found.items()} == _statistics_one_at_a_time(image)
    assert pixel_statistics([]) == []


def test_pixel_statistics_from_several_threads_at_once_match_one_thread() -> None:
    """Work arrays are kept per thread (the monitor thread and a worker may compute at once)."""
    rng = np.random.default_rng(5)
    sets = [
        [thumbnail(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
         for h, w in ((120, 160), (160, 120), (90, 160), (120, 160)) * 5]
        for _ in range(4)
    ]  # fmt: skip
    expected = [pixel_statistics(thumbs) for thumbs in sets]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(pixel_statistics, sets)) == expected


def test_work_arrays_kept_for_a_thread_stay_thumbnail_sized() -> None:
    """A caller's full-size image still gets its statistics, but its work arrays are not kept."""
    from visionyard.monitor import features

    rng = np.random.default_rng(9)
    big = Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8))
    small = thumbnail(big)

    def kept() -> int:
        return max((a.size for a in vars(features._SCRATCH).values()), default=0)  # noqa: SLF001

    found = pixel_statistics([big])[0]
    assert kept() <= features._KEEP  # noqa: SLF001
    assert found["brightness_r"][0] == pytest.approx(127.5, abs=1.0)
    assert pixel_statistics([small]) == [pixel_statistics([small])[0]]
