"""Pictures of a run: the VIP importance map and the kept-token grid over the image (PIL + numpy).

Draws only what the engine returned; geometry (cell size, grid) comes from the result.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .result import ImageResult

KEPT_LINE = (255, 255, 255)
DROP_DIM = 0.25  # dropped cells keep a quarter of their brightness


def model_view(image: Image.Image, r: ImageResult) -> Image.Image:
    """The image as the model saw it: resized to the processor's size (whole merged cells)."""
    return image.convert("RGB").resize(r.image_size, Image.Resampling.BICUBIC)


def kept_grid_overlay(image: Image.Image, r: ImageResult, line_width: int = 1) -> Image.Image:
    """Dropped cells dimmed, kept ones clear, cell lines at the merged-token size."""
    img = model_view(image, r)
    if r.keep_mask is None:
        return img
    h, w = r.grid
    c = r.cell_px
    keep = np.asarray(r.keep_mask, dtype=bool).reshape(h, w)
    cell_mask = np.kron(keep, np.ones((c, c), dtype=bool))[: img.height, : img.width]
    a = np.asarray(img, dtype=np.float32)
    a[~cell_mask] *= DROP_DIM
    out = Image.fromarray(a.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for i in range(1, h):
        draw.line([(0, i * c), (w * c, i * c)], fill=KEPT_LINE, width=line_width)
    for j in range(1, w):
        draw.line([(j * c, 0), (j * c, h * c)], fill=KEPT_LINE, width=line_width)
    return out
