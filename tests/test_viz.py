"""Drawing functions on images built in code: sizes, colours at kept and dropped cells, the legend,
and the plotly figures. Cell sizes differ from the real model's 28 px to catch hard-coded geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glimpse_demo import plots, viz
from glimpse_demo.result import ImageResult, Memory, RunResult, Timings

COLOR = (200, 120, 40)


def solid(size, color=COLOR):
    return Image.new("RGB", size, color)


def result(grid=(2, 3), cell=10, keep=None, probs=None):
    h, w = grid
    return ImageResult(
        grid=grid,
        keep_mask=None if keep is None else torch.tensor(keep, dtype=torch.bool),
        importance=None if probs is None else torch.tensor(probs, dtype=torch.float32),
        image_size=(w * cell, h * cell),
        cell_px=cell,
    )


KEEP = [[True, False, False], [False, True, False]]


@pytest.mark.parametrize("cell", [10, 16, 28])
def test_kept_grid_has_model_size_and_dims_dropped_cells_only(cell):
    r = result(cell=cell, keep=KEEP)
    out = np.asarray(viz.kept_grid_overlay(solid((123, 77)), r))
    assert out.shape == (2 * cell, 3 * cell, 3)
    mid = cell // 2
    assert tuple(out[mid, mid]) == COLOR  # kept: untouched
    assert tuple(out[mid, cell + mid]) == tuple(round(c * viz.DROP_DIM) for c in COLOR)  # dropped: dimmed
    assert tuple(out[cell + mid, cell + mid]) == COLOR


def test_kept_grid_draws_lines_on_cell_borders_only():
    out = np.asarray(viz.kept_grid_overlay(solid((30, 20)), result(cell=10, keep=KEEP)))
    assert tuple(out[5, 10]) == viz.KEPT_LINE and tuple(out[10, 5]) == viz.KEPT_LINE
    assert tuple(out[5, 9]) == COLOR and tuple(out[5, 11]) != viz.KEPT_LINE


def test_kept_grid_shrinks_for_display_and_keeps_cells_whole():
    r = result(grid=(4, 8), cell=32, keep=np.eye(4, 8, dtype=bool).tolist())
    out = viz.kept_grid_overlay(solid((512, 256)), r, max_side=128)
    assert out.size == (128, 64)
    a = np.asarray(out)
    assert tuple(a[4, 4]) == COLOR  # cell (0, 0) kept, 16 display px per cell
    assert tuple(a[4, 20]) == tuple(round(c * viz.DROP_DIM) for c in COLOR)


def test_baseline_result_draws_the_plain_view():
    out = viz.kept_grid_overlay(solid((60, 40)), result())
    assert out.size == (30, 20) and tuple(np.asarray(out)[7, 7]) == COLOR
    assert viz.importance_overlay(solid((60, 40)), result()).size == (30, 20)


def test_colormap_runs_dark_to_bright_and_clips():
    lum = viz.COLORMAP.astype(float) @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(lum) > 0)
    assert np.array_equal(viz.colorize(np.array([-1.0, 0.0, 1.0, 2.0, np.nan])),
                          viz.COLORMAP[[0, 0, 255, 255, 0]])


def test_importance_colours_cells_by_probability_with_opacity():
    probs = [[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]]
    r = result(cell=10, keep=KEEP, probs=probs)
    full = np.asarray(viz.importance_overlay(solid((30, 20)), r, opacity=1.0, legend=False))
    assert tuple(full[5, 5]) == tuple(viz.COLORMAP[0])
    assert tuple(full[5, 15]) == tuple(viz.COLORMAP[255])
    assert tuple(full[15, 25]) == tuple(viz.colorize(np.array(0.25)))
    none = np.asarray(viz.importance_overlay(solid((30, 20)), r, opacity=0.0, legend=False))
    assert np.all(none == COLOR)
    half = np.asarray(viz.importance_overlay(solid((30, 20)), r, opacity=0.5, legend=False)).astype(int)
    expect = (np.array(COLOR) + viz.COLORMAP[255]) / 2
    assert np.abs(half[5, 15] - expect).max() <= 1
    with pytest.raises(ValueError):
        viz.importance_overlay(solid((30, 20)), r, opacity=1.5)


def test_legend_strip_shows_the_colour_bar_and_threshold():
    r = result(grid=(10, 20), cell=16, keep=np.ones((10, 20), bool).tolist(), probs=np.full((10, 20), 0.3).tolist())
    out = viz.importance_overlay(solid((320, 160)), r, threshold=0.5)
    assert out.size == (320, 160 + viz.LEGEND_H)
    a = np.asarray(out)
    x0, x1 = viz.legend_span(320)
    row = 160 + 26  # inside the bar
    assert np.abs(a[row, x0].astype(int) - viz.COLORMAP[0]).max() <= 2
    assert np.abs(a[row, x1 - 1].astype(int) - viz.COLORMAP[255]).max() <= 2
    mark = x0 + round(0.5 * (x1 - x0 - 1))
    assert tuple(a[160 + 18, mark]) == viz.THRESHOLD_MARK


def test_legend_widens_narrow_images():
    r = result(grid=(2, 2), cell=14, keep=[[True, False], [False, True]], probs=[[0.9, 0.1], [0.2, 0.8]])
    out = viz.importance_overlay(solid((28, 28)), r)
    assert out.size == (viz.LEGEND_MIN_W, 28 + viz.LEGEND_H)


def test_hstack_places_images_side_by_side():
    out = viz.hstack([solid((10, 5)), solid((20, 8), (0, 0, 255))], gap=4)
    assert out.size == (34, 8)
    assert tuple(np.asarray(out)[2, 30]) == (0, 0, 255)


def run_result(mode, kept, total=100):
    keep = torch.zeros(10, 10, dtype=torch.bool)
    keep.view(-1)[:kept] = True
    img = ImageResult((10, 10), keep if mode == "glimpse" else None, None, (280, 280), 28)
    t = Timings(vision_s=0.1, prefill_s=0.2, ttft_s=0.3, decode_s=1.0, total_s=1.5, decode_tokens=20)
    m = Memory(kv_bytes_after_prefill=kept * 2**14, kv_bytes_end=kept * 2**14 + 2**16, peak_bytes=2**24)
    return RunResult(mode, "x", [1], [img], t, m, 130, 30)


def test_metrics_figure_has_one_trace_per_panel_and_run():
    fig = plots.metrics_figure([run_result("glimpse", 10), run_result("baseline", 100)])
    assert len(fig.data) == 6
    names = {t.name for t in fig.data}
    assert names == {"GlimpsePrune", "baseline"}
    decode = [t for t in fig.data if list(t.x) == ["decode"]]
    assert [t.y[0] for t in decode] == [20.0, 20.0]


def test_histogram_splits_kept_and_dropped_and_draws_the_threshold():
    probs = np.array([0.1, 0.2, 0.7, 0.9])
    fig = plots.probability_histogram(probs, probs > 0.5, 0.5)
    kept, dropped = fig.data
    assert sorted(kept.x) == [0.7, 0.9] and sorted(dropped.x) == [0.1, 0.2]
    assert fig.layout.shapes[0].x0 == 0.5
    with pytest.raises(ValueError):
        plots.probability_histogram(probs, np.ones(3, bool), 0.5)
