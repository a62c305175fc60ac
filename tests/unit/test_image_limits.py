"""Image predict bounds the pixels a request decodes to, summed over its images and read from
each image's header before it is decoded: a few KB of PNG can claim 81 M pixels."""

import base64
import io
import time
from functools import cache

import pytest
import torch
from PIL import Image

from app.core.config import Settings
from app.core.errors import AppError
from app.ml.bundle import ModelBundle
from app.ml.images import ChannelStats
from app.ml.preprocessing import Preprocessor
from app.ml.zoo import build_model
from app.serving.predictor import decode


def image_bundle() -> ModelBundle:
    """An mlp over flattened 1x8x8 images; decode needs only its preprocessor."""
    channels = ChannelStats(torch.zeros(1), torch.ones(1))
    pre = Preprocessor("image", [1, 8, 8], channels=channels, flatten=True)
    model = build_model("mlp", [64], 2, {"hidden": [4], "dropout": 0.0})
    return ModelBundle("mlp", {}, "classification", 2, ["a", "b"], pre, None, model)


@cache
def png(width: int, height: int) -> str:
    """One colour: compresses to ~80 KB at 9000x9000 (81 M pixels)."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 7).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_huge_images_small_on_the_wire_are_413_before_they_are_decoded() -> None:
    """The finding: 24 base64 9000x9000 PNGs in 8 MB took 20 s of CPU and 1.4 GB."""
    inputs = [png(9000, 9000)] * 3
    assert sum(map(len, inputs)) < 400_000
    started = time.perf_counter()
    with pytest.raises(AppError, match="TRAINSERVE_MAX_PREDICT_PIXELS") as caught:
        decode(image_bundle(), inputs, Settings().max_predict_pixels)
    # decoding one of them takes ~0.5 s; its header, microseconds
    assert time.perf_counter() - started < 0.2
    error = caught.value
    assert error.status_code == 413 and error.code == "too_many_pixels"
    assert error.message.startswith("inputs[0]: the image is 9000x9000")
    assert error.details == {"setting": "max_predict_pixels", "limit": 16 * 1024 * 1024}


def test_the_pixel_budget_is_summed_over_the_request() -> None:
    bundle = image_bundle()
    assert decode(bundle, [png(20, 20)] * 2, max_pixels=800).shape == (2, 1, 8, 8)
    with pytest.raises(AppError, match=r"inputs\[2\]: the image is 20x20") as caught:
        decode(bundle, [png(20, 20)] * 3, max_pixels=800)
    assert caught.value.status_code == 413


def test_flat_pixel_rows_are_bounded_by_the_body_and_not_counted() -> None:
    bundle = image_bundle()
    assert decode(bundle, [[0] * 64] * 3 + [png(8, 8)], max_pixels=64).shape == (4, 1, 8, 8)
