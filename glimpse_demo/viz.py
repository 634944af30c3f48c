"""Pictures of a run: the VIP importance map and the kept-token grid over the image (PIL + numpy).

Draws only what the engine returned: the grid, the cell size, the mask, the probabilities and the
size the model saw all come from an :class:`ImageResult`. Every picture can be drawn at the
model's resolution or shrunk for display (``max_side``); cell borders then fall on the nearest
pixel of the shrunk image, so a cell is always one merged token.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .result import ImageResult

KEPT_LINE = (255, 255, 255)
DROP_DIM = 0.25  # dropped cells keep a quarter of their brightness
LEGEND_H = 46  # height of the colour-bar strip under an importance map, pixels
LEGEND_MIN_W = 220  # narrow images get a wider canvas so the legend stays readable
LEGEND_BG = (24, 24, 27)
LEGEND_FG = (235, 235, 235)
THRESHOLD_MARK = (80, 220, 255)

# "ember": dark -> purple -> red -> orange -> pale yellow. Monotonic in brightness, so the map
# reads the same in greyscale. Anchors (position, RGB), interpolated linearly into a 256 LUT.
_ANCHORS = [
    (0.00, (12, 8, 38)),
    (0.25, (72, 28, 118)),
    (0.50, (176, 48, 96)),
    (0.75, (238, 128, 44)),
    (1.00, (252, 242, 128)),
]


def _lut() -> np.ndarray:
    xs = np.array([a[0] for a in _ANCHORS])
    cols = np.array([a[1] for a in _ANCHORS], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(t, xs, cols[:, k]) for k in range(3)], axis=-1).round().astype(np.uint8)


COLORMAP = _lut()  # [256, 3] uint8


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> RGB uint8 (shape + (3,)); out-of-range values are clipped."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0).clip(0.0, 1.0)
    return COLORMAP[(v * 255).round().astype(np.int64)]


# ----- geometry -----------------------------------------------------------------------------------


def display_size(r: ImageResult, max_side: int | None = None) -> tuple[int, int]:
    """(width, height) to draw at: the model's view, shrunk so its longer side is <= ``max_side``."""
    w, h = r.image_size
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    return w, h


def _cell_index(pixels: int, cells: int) -> np.ndarray:
    """For each pixel along one axis, the index of the merged-token cell it falls in."""
    return np.minimum(np.arange(pixels) * cells // pixels, cells - 1)


def _cell_edges(pixels: int, cells: int) -> list[int]:
    """Pixel positions of the inner borders between cells along one axis."""
    return [round(j * pixels / cells) for j in range(1, cells)]


def upsample(grid_values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[h, w, ...]`` per-cell values -> ``[H, W, ...]`` per-pixel (nearest: one token, one block)."""
    w, h = size
    gh, gw = grid_values.shape[:2]
    return grid_values[_cell_index(h, gh)][:, _cell_index(w, gw)]


def model_view(image: Image.Image, r: ImageResult, max_side: int | None = None) -> Image.Image:
    """The image as the model saw it: resized to the processor's size (whole merged cells)."""
    return image.convert("RGB").resize(display_size(r, max_side), Image.Resampling.BICUBIC)


# ----- the kept-token grid ------------------------------------------------------------------------


def kept_grid_overlay(
    image: Image.Image, r: ImageResult, line_width: int = 1, max_side: int | None = None
) -> Image.Image:
    """Dropped cells dimmed, kept ones clear, cell lines at the merged-token size."""
    img = model_view(image, r, max_side)
    if r.keep_mask is None:
        return img
    h, w = r.grid
    keep = np.asarray(r.keep_mask, dtype=bool).reshape(h, w)
    a = np.asarray(img, dtype=np.float32).copy()
    a[~upsample(keep, img.size)] *= DROP_DIM
    out = Image.fromarray(a.clip(0, 255).astype(np.uint8))
    _grid_lines(out, r.grid, line_width)
    return out


def _grid_lines(img: Image.Image, grid: tuple[int, int], line_width: int) -> None:
    h, w = grid
    draw = ImageDraw.Draw(img)
    for y in _cell_edges(img.height, h):
        draw.line([(0, y), (img.width, y)], fill=KEPT_LINE, width=line_width)
    for x in _cell_edges(img.width, w):
        draw.line([(x, 0), (x, img.height)], fill=KEPT_LINE, width=line_width)


# ----- the importance map -------------------------------------------------------------------------


def importance_overlay(
    image: Image.Image,
    r: ImageResult,
    opacity: float = 0.6,
    legend: bool = True,
    threshold: float | None = None,
    max_side: int | None = None,
) -> Image.Image:
    """VIP keep probabilities as a colour map blended over the model's view, with a colour bar.

    ``opacity`` 0 shows the photo only, 1 the map only. ``threshold`` marks the cut on the bar.
    Baseline results carry no probabilities: the plain view comes back, without a legend.
    """
    img = model_view(image, r, max_side)
    if r.importance is None:
        return img
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    h, w = r.grid
    probs = np.asarray(r.importance, dtype=np.float32).reshape(h, w)
    colors = upsample(colorize(probs), img.size).astype(np.float32)
    a = np.asarray(img, dtype=np.float32)
    out = Image.fromarray((a * (1.0 - opacity) + colors * opacity).round().clip(0, 255).astype(np.uint8))
    if not legend:
        return out
    return with_legend(out, threshold)


def legend_bar(width: int, threshold: float | None = None) -> Image.Image:
    """A ``width`` x LEGEND_H strip: the colour bar from 0 to 1, its ticks, and the threshold mark."""
    strip = Image.new("RGB", (width, LEGEND_H), LEGEND_BG)
    x0, x1 = legend_span(width)
    bar_top, bar_bottom = 20, 32
    ramp = colorize(np.linspace(0.0, 1.0, x1 - x0))
    strip.paste(Image.fromarray(np.repeat(ramp[None], bar_bottom - bar_top, axis=0)), (x0, bar_top))
    draw = ImageDraw.Draw(strip)
    font = _font(11)
    draw.text((x0, 3), "VIP keep probability", fill=LEGEND_FG, font=font)
    for v, label in ((0.0, "0"), (0.5, "0.5"), (1.0, "1")):
        x = x0 + round(v * (x1 - x0 - 1))
        draw.line([(x, bar_bottom), (x, bar_bottom + 3)], fill=LEGEND_FG)
        tw = draw.textlength(label, font=font)
        draw.text((min(max(x - tw / 2, 0), width - tw), bar_bottom + 2), label, fill=LEGEND_FG, font=font)
    if threshold is not None:
        x = x0 + round(min(max(threshold, 0.0), 1.0) * (x1 - x0 - 1))
        draw.line([(x, bar_top - 4), (x, bar_bottom)], fill=THRESHOLD_MARK, width=2)
        label = f"threshold {threshold:.3g}"
        tw = draw.textlength(label, font=font)
        draw.text((max(x1 - tw, x0 + 120), 3), label, fill=THRESHOLD_MARK, font=font)
    return strip


def legend_span(width: int) -> tuple[int, int]:
    """Left and right (exclusive) pixel of the colour bar inside a legend of ``width``."""
    margin = 10
    return margin, width - margin


def with_legend(img: Image.Image, threshold: float | None = None) -> Image.Image:
    """``img`` with the colour bar underneath, on a canvas at least LEGEND_MIN_W wide."""
    width = max(img.width, LEGEND_MIN_W)
    canvas = Image.new("RGB", (width, img.height + LEGEND_H), LEGEND_BG)
    canvas.paste(img, ((width - img.width) // 2, 0))
    canvas.paste(legend_bar(width, threshold), (0, img.height))
    return canvas


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# ----- composition --------------------------------------------------------------------------------


def hstack(images: list[Image.Image], gap: int = 8, background=(255, 255, 255)) -> Image.Image:
    """Pictures side by side, top-aligned (one download for all the images of a prompt)."""
    if not images:
        raise ValueError("nothing to stack")
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, max(i.height for i in images)), background)
    x = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.width + gap
    return canvas
