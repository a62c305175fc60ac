"""The text tokenizer and the image decoder: what predict must reproduce from training."""

import base64
import io
import json
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.ml import checkpoint
from app.ml.images import ChannelStats, ImageDecodeError, decode_base64_image, decode_image
from app.ml.text import Tokenizer, tokenize

TEXTS = ["The cat sat.", "the dog sat!", "A cat, a dog; a bird?", "Zebra"]


def test_tokenize_lowercases_and_splits_words_from_punctuation_in_any_script() -> None:
    assert tokenize("Héllo, WORLD!! naïve café 東京 x2") == [
        "héllo",
        ",",
        "world",
        "!",
        "!",
        "naïve",
        "café",
        "東京",
        "x2",
    ]
    assert tokenize("  ") == []


def test_fit_keeps_the_most_frequent_tokens_ties_by_token() -> None:
    tokenizer = Tokenizer.fit(TEXTS, vocab_size=8)
    # "a" 3 times; cat, dog, sat, the twice; then the ones sort first: "!" "," "."
    assert tokenizer.tokens == ["a", "cat", "dog", "sat", "the", "!"]
    assert tokenizer.size == 8


def test_fit_is_deterministic_whatever_the_order_of_the_texts() -> None:
    shuffled = TEXTS * 3
    random.Random(1).shuffle(shuffled)
    assert Tokenizer.fit(TEXTS * 3, 100).tokens == Tokenizer.fit(shuffled, 100).tokens
    assert Tokenizer.fit(TEXTS, 100).size == 2 + len({t for text in TEXTS for t in tokenize(text)})


def test_encode_maps_unknown_to_1_pads_with_0_and_truncates() -> None:
    tokenizer = Tokenizer.fit(TEXTS, vocab_size=8)
    ids = tokenizer.encode(["the CAT flew", "", "a a a a a a a"], max_len=5)
    assert ids.dtype == torch.long
    assert ids.tolist() == [
        [6, 3, 1, 0, 0],  # "flew" is unknown
        [0, 0, 0, 0, 0],
        [2, 2, 2, 2, 2],  # cut at max_len
    ]
    assert tokenizer.encode([], max_len=5).shape == (0, 5)


def test_tokenizer_round_trips_through_a_checkpoint_header(tmp_path: Path) -> None:
    tokenizer = Tokenizer.fit([*TEXTS, "東京 café"], vocab_size=100)
    checkpoint.save(tmp_path / "t.safetensors", {"x": torch.zeros(1)}, {"tok": tokenizer.to_json()})
    loaded = Tokenizer.from_json(checkpoint.load(tmp_path / "t.safetensors").meta["tok"])
    assert loaded.tokens == tokenizer.tokens
    texts = ["the zebra in 東京", "unknown words only"]
    assert torch.equal(loaded.encode(texts, 8), tokenizer.encode(texts, 8))
    assert json.loads(json.dumps(tokenizer.to_json())) == tokenizer.to_json()


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"tokens": ["a"]},
        {"scheme": "bpe", "tokens": ["a"]},
        {"scheme": "words-v1"},
        {"scheme": "words-v1", "tokens": ["a", 3]},
        {"scheme": "words-v1", "tokens": ["a", "a"]},
    ],
)
def test_a_bad_stored_tokenizer_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        Tokenizer.from_json(data)


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def random_image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
@pytest.mark.parametrize("size", [(1, 1), (7, 300), (64, 48)])
@pytest.mark.parametrize("shape", [[3, 16, 16], [1, 8, 12]])
def test_decode_gives_the_asked_shape(
    fmt: str, mode: str, size: tuple[int, int], shape: list[int]
) -> None:
    img = random_image("RGBA" if mode == "P" else mode, size)
    if mode == "P":
        img = img.convert("RGB").quantize(16)
    if fmt == "JPEG" and mode in ("RGBA", "P"):
        img = img.convert("RGB")
    pixels = decode_image(encoded(img, fmt), shape)
    assert pixels.shape == tuple(shape)
    assert pixels.dtype == np.uint8
    assert pixels.flags["C_CONTIGUOUS"]


def test_decode_keeps_exact_pixels_at_the_same_size_and_resizes_bilinearly() -> None:
    img = random_image("RGB", (12, 8))
    data = encoded(img, "PNG")
    assert np.array_equal(decode_image(data, [3, 8, 12]), np.asarray(img).transpose(2, 0, 1))
    gray = np.asarray(img.convert("L"))[None]
    assert np.array_equal(decode_image(data, [1, 8, 12]), gray)
    small = np.asarray(img.resize((6, 4), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(decode_image(data, [3, 4, 6]), small)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a huge image, followed by a tiny (wrong) pixel stream."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def bad_images() -> dict[str, bytes]:
    png = encoded(random_image("RGB", (32, 32)), "PNG")
    return {
        "gif": encoded(random_image("RGB", (8, 8)).convert("P"), "GIF"),
        "bmp": encoded(random_image("RGB", (8, 8)), "BMP"),
        "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
        "truncated png": png[: len(png) // 2],
        "truncated jpeg": encoded(random_image("RGB", (32, 32)), "JPEG")[:300],
        "empty": b"",
        "huge png": png_claiming(100_000, 100_000),
        "png with a corrupt body": png_claiming(64, 64),
    }


@pytest.mark.parametrize(("name", "data"), list(bad_images().items()))
def test_anything_but_a_whole_png_or_jpeg_is_refused(name: str, data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data, [3, 8, 8])


def test_the_errors_say_what_is_wrong() -> None:
    images = bad_images()
    with pytest.raises(ImageDecodeError, match="not a PNG or JPEG"):
        decode_image(images["gif"], [3, 8, 8])
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(images["huge png"], [3, 8, 8])
    with pytest.raises(ImageDecodeError, match="over the limit of 100 bytes"):
        decode_image(encoded(random_image("RGB", (32, 32)), "PNG"), [3, 8, 8], max_bytes=100)


def test_pillows_pixel_limit_is_enforced_where_it_only_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encoded(random_image("L", (20, 20)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 pixels: Pillow only warns
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(ImageDecodeError, match="over the limit of 300 pixels"),
    ):
        decode_image(data, [1, 8, 8])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # past 2x: Pillow refuses
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(data, [1, 8, 8])


def test_base64_images_with_or_without_a_data_url() -> None:
    data = encoded(random_image("RGB", (10, 10)), "PNG")
    text = base64.b64encode(data).decode()
    expected = decode_image(data, [3, 4, 4])
    for variant in (text, f"data:image/png;base64,{text}", "\n".join([text[:40], text[40:]])):
        assert np.array_equal(decode_base64_image(variant, [3, 4, 4]), expected)
    with pytest.raises(ImageDecodeError, match="not valid base64"):
        decode_base64_image("not base64!", [3, 4, 4])
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_base64_image(text, [3, 4, 4], max_bytes=len(data) // 2)


def test_a_bad_shape_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        decode_image(b"x", [2, 8, 8])


def test_channel_stats_normalize_per_channel_and_round_trip() -> None:
    x = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    x[:2, 1] = 255  # channel 1: half 0, half 1 → mean 0.5, std 0.5; channel 0 is constant
    stats = ChannelStats.fit(x, chunk=3)
    torch.testing.assert_close(stats.mean, torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(stats.std, torch.tensor([1.0, 0.5]))
    out = stats(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out[:, 1].unique(), torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(stats(x.float()), out)
    again = ChannelStats.from_tensors(stats.tensors("x_stats"), "x_stats")
    assert torch.equal(again(x), out)
