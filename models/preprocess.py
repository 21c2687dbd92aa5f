"""Image bytes → model input, the one code path shared by training and serving.

Why one path: a model is only as good as the agreement between the pixels it was trained on and
the pixels it is served. Training (``models.train``) and the workers both call
``decode_image`` then ``preprocess``; a parity test holds them together.

Geometry: a *direct resize* to ``size × size`` (no crop). A moderation cue can sit anywhere in the
frame, near an edge too; a centre crop would cut it away. The aspect-ratio distortion is seen
identically in training and serving, so the model learns it. Imported models (``models.importer``)
were trained with their own geometry, which they must be served with: ``resize_to`` (resize to it,
directly or by the shorter side, then centre-crop ``size``) and ``jpeg_quality`` (a JPEG round trip
after the crop, as open_nsfw's reference pipeline does). Trained stages leave them at their defaults.

Safety: ``probe_image`` reads only the header and refuses more than ``max_pixels`` *before* any
decoding (we do not rely on PIL's process-global bomb limit), and truncated files raise instead of
yielding a partially grey image (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set here).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.errors import ImageDecodeError, ImageTooLarge, UnsupportedImage

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_TEXT_PREFIXES = (b"<?xml", b"<svg", b"<!doctype", b"<html", b"%pdf", b"{", b"[")


@dataclass(frozen=True)
class PreprocessConfig:
    """What a model expects as input; it travels with the model in ``meta.json``."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize_to: int = 0  # 0: resize straight to ``size``; else resize to it, centre-crop ``size``
    resize: str = "direct"  # "direct" (to a square) or "shorter" (shorter side, aspect kept)
    jpeg_quality: int = 0  # 0: none; else a JPEG round trip at this quality after the crop

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"PreprocessConfig.size must be >= 8, got {self.size}")
        if self.resize not in ("direct", "shorter") or 0 < self.resize_to < self.size:
            raise ValueError(
                "PreprocessConfig.resize must be 'direct' or 'shorter' and resize_to 0 or >= size, "
                f"got {self.resize!r}, {self.resize_to} (size {self.size})"
            )
        if not 0 <= self.jpeg_quality <= 95:
            raise ValueError(
                f"PreprocessConfig.jpeg_quality must be 0..95, got {self.jpeg_quality}"
            )
        if self.interpolation not in _RESAMPLING:
            raise ValueError(
                f"PreprocessConfig.interpolation must be one of {sorted(_RESAMPLING)}, "
                f"got {self.interpolation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        return cls(
            size=int(data["size"]),
            mean=tuple(float(v) for v in data.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bilinear")),
            resize_to=int(data.get("resize_to", 0)),
            resize=str(data.get("resize", "direct")),
            jpeg_quality=int(data.get("jpeg_quality", 0)),
        )


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str
    frames: int = 1
    mode: str = field(default="", compare=False)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check format and pixel count; raises the typed errors."""
    if not data:
        raise ImageDecodeError("The upload is empty (0 bytes); send the image file's contents.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # PIL's own hard stop (2x its global limit) fired first; ours is the lower one.
        raise ImageTooLarge(
            f"The image has more pixels than the limit of {max_pixels:,}; "
            "downscale it and send it again."
        ) from exc
    except UnidentifiedImageError as exc:
        head = data.lstrip()[:16].lower()
        what = "text (SVG/HTML/XML/JSON?)" if head.startswith(_TEXT_PREFIXES) else "unknown data"
        raise UnsupportedImage(
            f"Not a raster image: the bytes look like {what}. "
            f"Send one of: {', '.join(sorted(ACCEPTED_FORMATS))}."
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"The image header is corrupt ({exc}); re-export the file.") from exc
    if img.format not in ACCEPTED_FORMATS:
        raise UnsupportedImage(
            f"Image format {img.format} is not accepted; send one of: "
            f"{', '.join(sorted(ACCEPTED_FORMATS))}."
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; downscale it and send it again."
        )
    return img


def probe_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Cheap check at upload time: format, dimensions, frame count, structural verify.

    No pixel data is decoded, so a decompression bomb costs nothing here.
    """
    img = _open(data, max_pixels)
    info = ImageInfo(
        width=img.size[0],
        height=img.size[1],
        format=str(img.format),
        frames=int(getattr(img, "n_frames", 1)),
        mode=img.mode,
    )
    try:
        img.verify()
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"The image data is corrupt ({exc}); re-export the file.") from exc
    return info


def decode_image(data: bytes, *, max_pixels: int, draft_to: int = 0) -> Image.Image:
    """Fully decode to an 8-bit RGB image: EXIF orientation applied, first frame of animations,
    transparency composited on white, grayscale/palette/CMYK/16-bit normalised.

    ``draft_to``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling, much cheaper) as
    long as both sides stay at least ``draft_to`` pixels; 0 decodes at full size."""
    img = _open(data, max_pixels)
    try:
        if draft_to and img.format == "JPEG":
            img.draft(None, (draft_to, draft_to))
        img.seek(0)
        img.load()
        # In place: the copy it returns otherwise, even of an image without an orientation tag
        # (most of them), cost about a tenth of a decode.
        ImageOps.exif_transpose(img, in_place=True)
        return _to_rgb(img)
    except Exception as exc:  # truncated/corrupt streams surface here as OSError & co.
        raise ImageDecodeError(
            f"The image could not be decoded ({exc}); the file may be truncated or corrupt."
        ) from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale: scale by the format's range, not by clipping at 255."""
    arr = np.asarray(img).astype(np.float64)
    top = 1.0 if img.mode == "F" and arr.max(initial=0.0) <= 1.0 else 65535.0
    if img.mode == "I" and arr.max(initial=0.0) <= 255:
        top = 255.0
    gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")


def resize_image(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """RGB image → uint8 ``[size, size, 3]`` (the cacheable half of ``preprocess``)."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    resample, target = _RESAMPLING[cfg.interpolation], cfg.resize_to or cfg.size
    if cfg.resize == "shorter":  # torchvision's Resize(int): the longer side truncated
        short = min(img.size)
        img = img.resize((target * img.width // short, target * img.height // short), resample)
    else:
        img = img.resize((target, target), resample)
    if img.size != (cfg.size, cfg.size):
        left, top = (img.width - cfg.size) // 2, (img.height - cfg.size) // 2
        img = img.crop((left, top, left + cfg.size, top + cfg.size))
    if cfg.jpeg_quality:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=cfg.jpeg_quality)
        img = Image.open(buf).convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def normalize(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 ``[..., H, W, 3]`` → float32 ``[..., 3, H, W]`` with the model's mean/std."""
    mean = np.asarray(cfg.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, dtype=np.float32) * 255.0)
    out = (pixels.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(np.moveaxis(out, -1, -3), dtype=np.float32)


def preprocess(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """One decoded image → float32 ``[3, size, size]``."""
    return normalize(resize_image(img, cfg), cfg)


def preprocess_batch(imgs: Sequence[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """Decoded images → float32 ``[N, 3, size, size]`` (N may be 0)."""
    if not imgs:
        return np.zeros((0, 3, cfg.size, cfg.size), dtype=np.float32)
    return normalize(np.stack([resize_image(img, cfg) for img in imgs]), cfg)
