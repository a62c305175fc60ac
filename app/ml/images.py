"""Image decoding and per-channel normalization. Uploads and predict requests go through the
same decode_image, so a model sees the same pixels at predict time as in training."""

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

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


# A base without a processor config: ImageNet's statistics, which most vision bases were
# trained with (transformers' IMAGENET_DEFAULT_MEAN/STD), at its config's image_size or 224.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIDE = 224


@dataclass(frozen=True)
class BaseImageStats:
    """What a pretrained vision base expects its pixels to be, from its own image processor:
    each stored uint8 (N, C, S, S) batch is resized to `size`, given the base's channels,
    rescaled (x * rescale) and normalized by the base's mean and std, per batch, in training
    and at predict alike. Kept in the version's meta, so a version describes itself."""

    size: tuple[int, int]  # (H, W) the base takes
    channels: int  # the base's num_channels
    mean: tuple[float, ...]  # one per base channel (or one for all)
    std: tuple[float, ...]
    rescale: float = 1 / 255  # 1.0 for a base that takes 0..255 values (do_rescale false)
    normalize: bool = True
    # mean and std as tensors, per device: made once, not copied to the GPU every batch
    _on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def from_processor(
        cls, processor: dict[str, Any] | None, config: dict[str, Any]
    ) -> "BaseImageStats":
        """From an image processor's settings (its JSON, or the processor's to_dict()) and the
        model's config.json; processor None: the base has no processor config (see above)."""
        channels = int(config.get("num_channels") or 3)
        if processor is None:
            return cls(_config_size(config), channels, IMAGENET_MEAN, IMAGENET_STD)
        return cls(
            input_size(processor, config),
            channels,
            _floats(processor.get("image_mean"), IMAGENET_MEAN),
            _floats(processor.get("image_std"), IMAGENET_STD),
            float(processor.get("rescale_factor") or 1 / 255)
            if processor.get("do_rescale", True)
            else 1.0,
            bool(processor.get("do_normalize", True)),
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, S, S) → float32 (N, channels, H, W) as the base takes it."""
        x = x.float()
        if tuple(x.shape[-2:]) != self.size:
            # antialias: a downscale averages the pixels it merges instead of skipping some
            x = nn.functional.interpolate(
                x, size=self.size, mode="bilinear", antialias=True, align_corners=False
            )
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)  # grayscale for an RGB base: the same value thrice
        x = x * self.rescale
        if not self.normalize:
            return x
        mean, std = self._stats(x.device)
        return (x - mean) / std

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on:
            mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
            self._on[device] = mean, torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return self._on[device]

    def to_json(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "rescale": self.rescale,
            "normalize": self.normalize,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BaseImageStats":
        h, w = data["size"]
        return cls(
            (int(h), int(w)),
            int(data["channels"]),
            tuple(float(v) for v in data["mean"]),
            tuple(float(v) for v in data["std"]),
            float(data["rescale"]),
            bool(data["normalize"]),
        )


def input_size(processor: dict[str, Any], config: dict[str, Any]) -> tuple[int, int]:
    """(H, W) of what the base sees: the crop when the processor center-crops, else `size`
    ({"height", "width"}, {"shortest_edge"} or a side). A stored image is resized to it whole,
    never cropped (images-zip stores squares, so a shortest edge is both sides): fine-tuning
    learns from all of it."""
    crop = processor.get("crop_size")
    if processor.get("do_center_crop") and crop:
        return _side_pair(crop, config)
    size = processor.get("size")
    return _side_pair(size, config) if size else _config_size(config)


def _side_pair(size: Any, config: dict[str, Any]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict):
        if size.get("height") and size.get("width"):
            return int(size["height"]), int(size["width"])
        side = size.get("shortest_edge") or size.get("longest_edge")
        if side:
            return int(side), int(side)
    return _config_size(config)


def _config_size(config: dict[str, Any]) -> tuple[int, int]:
    size = config.get("image_size") or DEFAULT_SIDE
    if isinstance(size, list | tuple):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def _floats(values: Any, default: tuple[float, ...]) -> tuple[float, ...]:
    if values is None:
        return default
    if isinstance(values, int | float):
        return (float(values),)
    return tuple(float(v) for v in values)
