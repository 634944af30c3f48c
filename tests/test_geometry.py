"""Geometry and VIP variants come from config: other patch/merge sizes, windowed VIP, log-softmax scores."""

from __future__ import annotations

import pytest
import torch

from glimpse_demo.engine import GlimpseEngine
from glimpse_demo.loading import BaseModel
from glimpse_demo.prompting import QWEN_CHAT_TEMPLATE
from glimpse_demo.settings import GenerationSettings, PruneSettings, RunSettings
from glimpse_demo.tiny import build_tiny, calibration_image, tiny_glimpse_config, tiny_spec
from glimpse_demo.vip import GlimpseModules

GEN = GenerationSettings(max_new_tokens=5)


def make_engine(**spec_overrides) -> GlimpseEngine:
    spec = tiny_spec(**spec_overrides)
    model, tok, improc = build_tiny(spec)
    modules = GlimpseModules(tiny_glimpse_config(spec, model.config))
    modules.init_random(seed=3)
    return GlimpseEngine(BaseModel(model, tok, improc, QWEN_CHAT_TEMPLATE, "in-memory"), modules)


def check(engine: GlimpseEngine, images):
    q = "Where is the ball?"
    base = engine.run(images, q, RunSettings("baseline", generation=GEN))
    keep_all = engine.run(images, q, RunSettings("glimpse", PruneSettings(threshold=0.0), GEN))
    assert keep_all.generated_ids == base.generated_ids
    some = engine.run(images, q, RunSettings("glimpse", PruneSettings(threshold=0.0, max_remain_ratio=0.3), GEN))
    cell = engine.base.image_processor.patch_size * engine.base.image_processor.merge_size
    for im, img in zip(some.images, images):
        h, w = im.grid
        assert im.cell_px == cell
        assert im.image_size == (w * cell, h * cell)
        assert im.keep_mask.shape == (h, w) and im.kept_tokens == int(0.3 * h * w)
    assert some.memory.kv_tokens_after_prefill == some.prompt_text_tokens + some.kept_tokens
    return some


@pytest.mark.parametrize("patch,merge", [(8, 2), (14, 1), (6, 3)])
def test_other_patch_and_merge_sizes(patch, merge):
    engine = make_engine(patch_size=patch, merge_size=merge, max_pixels=(patch * merge * 12) ** 2)
    res = check(engine, [calibration_image((300, 220), seed=1)])
    g = res.images[0].grid
    inp = engine.prepare([calibration_image((300, 220), seed=1)], "x?")
    assert inp.image_token_count == g[0] * g[1]


def test_windowed_vip_and_multi_image():
    engine = make_engine(attn_fuse_global=False)
    assert engine.gp.attn_fuse_global is False
    check(engine, [calibration_image((448, 448), seed=2), calibration_image((224, 448), seed=4)])


def test_windowed_vip_attends_within_windows_only():
    """Changing one window's inputs moves only that window's logits."""
    engine = make_engine(attn_fuse_global=False)
    from glimpse_demo.vision import encode_images

    inp = engine.prepare([calibration_image((448, 448), seed=2)], "x?")
    with torch.no_grad():
        vision = encode_images(engine.model.model.visual, inp.pixel_values, inp.image_grid_thw, engine.gp.selected_visual_layers)
        n = vision.image_embeds.shape[0]
        heads = engine.gp.num_attention_heads * len(engine.gp.selected_layers)
        scores = torch.randn(n, heads, generator=torch.Generator().manual_seed(0))
        a = engine.vip_logits([scores], vision, inp.grids)
        first_window = vision.window_index[: vision.window_segments[0]]
        bumped = scores.clone()
        bumped[first_window] += 5.0
        b = engine.vip_logits([bumped], vision, inp.grids)
    changed = (a - b).abs() > 1e-6
    assert changed[first_window].all()
    outside = torch.ones(n, dtype=torch.bool)
    outside[first_window] = False
    assert not changed[outside].any()
    assert len(vision.window_segments) > 1


def test_log_softmax_scores_and_several_selected_layers():
    engine = make_engine(use_attention_logits=False, selected_layers=(1, 2), layers=4, reduce_layer=2)
    check(engine, [calibration_image((320, 240), seed=5)])


def test_reduce_at_last_layer():
    engine = make_engine(reduce_layer=3, selected_layers=(3,))
    check(engine, [calibration_image((320, 240), seed=6)])
