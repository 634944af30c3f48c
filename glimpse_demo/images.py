"""Turn whatever a user uploads into an RGB PIL image the processor can take, or a clear InputError."""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

# Decoding is bounded separately from the model's budget: a 20000x20000 upload is opened and
# shrunk, anything beyond this is refused before it can exhaust memory.
MAX_DECODE_PIXELS = 25_000 * 25_000
MAX_ASPECT = 150  # the Qwen2-VL resize refuses aspect ratios of 200 and more
# Above this many pixels an image is shrunk by an integer factor before any mode conversion, so a
# huge upload never gets copied at full size (the model's own budget is far smaller).
SHRINK_ABOVE = 4096 * 4096


def open_image(source) -> Image.Image:
    """A path, bytes, numpy array or PIL image -> a normalised RGB image."""
    if source is None:
        raise InputError("no image was given")
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _from_array(source)
    else:
        try:
            data = source if isinstance(source, (bytes, bytearray)) else None
            fp = io.BytesIO(data) if data is not None else os.fspath(source)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_DECODE_PIXELS
            try:
                img = Image.open(fp)
                if img.format == "JPEG" and img.width * img.height > SHRINK_ABOVE:
                    img.draft(img.mode, (img.width // 8, img.height // 8))  # decode at reduced scale
                img.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old
        except FileNotFoundError as e:
            raise InputError(f"image file not found: {source}") from e
        except (UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise InputError(f"not a readable image: {e}") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"the image file is corrupt or truncated: {e}") from e
    return to_rgb(img)


def _from_array(a: np.ndarray) -> Image.Image:
    if a.ndim not in (2, 3) or a.size == 0:
        raise InputError(f"an image array must be HxW or HxWxC, got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        hi = a.max() if a.size else 1.0
        a = (a / (hi if hi > 1.0 else 1.0) * 255.0).clip(0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return Image.fromarray(a)


def to_rgb(img: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, any mode -> RGB (alpha over white, 16-bit rescaled)."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF is no reason to refuse the pixels
        pass
    if img.width < 1 or img.height < 1:
        raise InputError("the image is empty (0 pixels)")
    if img.width * img.height > SHRINK_ABOVE:
        if img.mode == "P":
            img = img.convert("RGBA")
        factor = math.ceil(math.sqrt(img.width * img.height / SHRINK_ABOVE))
        img = img.reduce(factor)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return img.convert("RGB")


def fit_to_budget(img: Image.Image, min_side: int, max_pixels: int) -> Image.Image:
    """Shrink to at most ``max_pixels`` before any heavy work; enlarge a side below ``min_side``.

    The processor would resize to its budget anyway; doing it here first keeps a 20000x20000
    upload from being copied at full size through normalisation and patching.
    """
    w, h = img.size
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InputError(f"the image is {w}x{h}: aspect ratios beyond {MAX_ASPECT}:1 are not supported")
    if w * h > max_pixels:
        s = math.sqrt(max_pixels / (w * h))
        img = img.resize((max(1, int(w * s)), max(1, int(h * s))), Image.Resampling.BICUBIC, reducing_gap=3.0)
        w, h = img.size
    if min(w, h) < min_side:
        s = min_side / min(w, h)
        img = img.resize((max(min_side, round(w * s)), max(min_side, round(h * s))), Image.Resampling.BICUBIC)
    return img
