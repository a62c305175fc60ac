"""Image decoding and per-channel normalization. Uploads and predict requests go through the
same decode_image, so a model sees the same pixels at predict time as in training."""

import base64
import binascii
import io
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG")
MAX_BYTES = 16 * 1024 * 1024
DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


class ImageDecodeError(ValueError):
    """The bytes are not a usable PNG or JPEG image."""


class TooManyPixels(ImageDecodeError):
    """The images of one request have more pixels in all than its PixelBudget."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class PixelBudget:
    """Pixels that the images of one request may still decode to, taken from each image's
    header before it is decoded: what a few KB of PNG costs to decode is only known there."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, img: Image.Image) -> None:
        if img.width * img.height > self.left:
            raise TooManyPixels(
                f"the image is {img.width}x{img.height}: with the request's other images, "
                f"over {self.limit} pixels per request",
                self.limit,
            )
        self.left -= img.width * img.height


def check_shape(shape: list[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise ValueError(f"an image shape is [C, H, W] with C 1 or 3, got {shape}")
    return shape[0], shape[1], shape[2]


def decode_image(
    data: bytes, shape: list[int], max_bytes: int = MAX_BYTES, budget: PixelBudget | None = None
) -> np.ndarray:
    """PNG/JPEG bytes → uint8 (C, H, W): grayscale for C 1 else RGB, resized bilinearly."""
    c, h, w = check_shape(shape)
    if not data:
        raise ImageDecodeError("the image is empty")
    if len(data) > max_bytes:
        raise ImageDecodeError(
            f"the image is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as file:
            check_pixels(file)
            if budget is not None:
                budget.take(file)
            file.load()
            upright = ImageOps.exif_transpose(file)  # phones store the rotation in EXIF
            img = upright.convert("L" if c == 1 else "RGB").resize(
                (w, h), Image.Resampling.BILINEAR
            )
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a PNG or JPEG image") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"the image has too many pixels: {exc}") from exc
    # Pillow raises many kinds of error on malformed input (OSError, SyntaxError,
    # struct.error, ...); every one of them means the same thing to the caller.
    except Exception as exc:
        raise ImageDecodeError(f"the image cannot be decoded: {exc}") from exc
    pixels = np.asarray(img, dtype=np.uint8).reshape(h, w, c)  # (H, W, C)
    # A copy: for C 1 the transpose is a view of a read-only buffer, which torch warns about.
    return np.array(pixels.transpose(2, 0, 1), order="C")  # (C, H, W)


def check_pixels(img: Image.Image) -> None:
    """Pillow refuses beyond 2x MAX_IMAGE_PIXELS and only warns beyond 1x: refuse both."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise ImageDecodeError(
            f"the image is {img.width}x{img.height}, over the limit of {limit} pixels"
        )


def decode_base64_image(
    text: str, shape: list[int], max_bytes: int = MAX_BYTES, budget: PixelBudget | None = None
) -> np.ndarray:
    """Base64 (optionally a data:image/...;base64, URL) → decode_image."""
    body = "".join(DATA_URL.sub("", text.strip(), count=1).split())
    # 4 base64 characters carry 3 bytes: refuse an oversized image before decoding it.
    if len(body) > 4 * (max_bytes // 3 + 1):
        raise ImageDecodeError(f"the image is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ImageDecodeError(f"the image is not valid base64: {exc}") from exc
    return decode_image(data, shape, max_bytes, budget)


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std of pixels scaled to [0, 1], fitted on the training images."""

    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,), never 0

    @classmethod
    def fit(cls, x: torch.Tensor, chunk: int = 4096) -> "ChannelStats":
        """x: uint8 (N, C, H, W). Sums in float64, a chunk at a time, to bound memory."""
        total = torch.zeros(x.shape[1], dtype=torch.float64)
        squares = torch.zeros_like(total)
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk].to(torch.float64) / 255.0
            total += part.sum(dim=(0, 2, 3))
            squares += part.square().sum(dim=(0, 2, 3))
        count = max(x.shape[0] * x.shape[2] * x.shape[3], 1)
        mean = total / count
        std = (squares / count - mean.square()).clamp(min=0.0).sqrt()
        # A constant channel would divide by ~0 and blow up any other value at predict time.
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float pixels in [0, 255], (N, C, H, W) → normalized float32 (N, C, H, W)."""
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.std": self.std}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "ChannelStats":
        return cls(tensors[f"{prefix}.mean"], tensors[f"{prefix}.std"])
