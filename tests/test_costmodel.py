"""The analytic cost model on configs small enough to count by hand (exact integers)."""

from __future__ import annotations

import pytest

from glimpse_demo import costmodel as cm

# text: hidden 8, 2 layers, 2 query heads of width 4 sharing 1 key/value head, FFN 16, vocab 10.
# Per token and layer: q 8x8 + kv 8x(2x1x4) + o 8x8 + gate/up 8x32 + down 16x8 = 576 MACs = 1152 FLOPs.
# Causal attention over S tokens: S(S+1)/2 pairs x 2 heads x (4 + 4) x 2 = 16 S(S+1) FLOPs.
TEXT = cm.TextArch(hidden=8, layers=2, heads=2, kv_heads=1, intermediate=16, vocab=10)
# vision: width 4, 2 heads, FFN 6, patch 2, merge 2, 8-pixel windows (2x2 merged tokens), block 1 full.
VISION = cm.VisionArch(hidden=4, depth=2, heads=2, intermediate=6, out_hidden=8, patch=2, merge=2,
                       temporal_patch=2, in_channels=3, window=8, fullatt_blocks=(1,))
GLIMPSE = cm.GlimpseArch(reduce_layer=0, selected_layers=(0,), le_layers=(0, 1), le_length=1, fuse=4, cond=4,
                         fuse_heads=2, vip_layers=1, visual_cond=True, global_attn=True)
ARCH = cm.Arch("hand", TEXT, VISION, GLIMPSE)


def test_baseline_prefill_flops_by_hand():
    # 6 text + 2x2 image tokens: S = 10; per layer 1152*10 + 16*10*11 = 13280; two layers + lm_head 2*8*10
    c = cm.prefill_cost(ARCH, (2, 2), text_tokens=6, mode="baseline")
    assert c.layers_full.flops == 2 * 13280
    assert c.head.flops == 160
    assert c.llm.flops == 26720
    assert c.glimpse.flops == c.vip.flops == c.layers_pruned.flops == 0


def test_glimpse_prefill_flops_by_hand():
    c = cm.prefill_cost(ARCH, (2, 2), text_tokens=6, mode="glimpse", kept=1)
    # layer 0 over S + glimpse = 11: 1152*11 + 16*11*12
    assert c.layers_full.flops == 14784
    # le_proj on layer 0's glimpse (2*8*8), the glimpse query (2*8*8), q.k over 4 image keys (2*4*2*4)
    assert c.glimpse.flops == 128 + 128 + 64
    # VIP: in-proj 2*4*2*4; one layer: cond 2*4*4*4, q/k 2*4*8*16, v and o 2*4*4*4 each,
    # 16 pairs x 2 heads x (4 + 2) x 2, gate/up 2*4*4*16, down 2*4*8*4; out-proj 2*4*4
    assert c.vip.flops == 64 + (128 + 1024 + 128 + 128 + 384 + 512 + 256) + 32
    # layer 1 over 6 text + 1 kept: 1152*7 + 16*7*8
    assert c.layers_pruned.flops == 8960
    assert c.llm.flops == 14784 + 320 + 2656 + 8960 + 160
    assert c.overhead.flops == 320 + 2656


def test_kv_bytes_by_hand():
    base = cm.prefill_cost(ARCH, (2, 2), 6, "baseline", dtype_bytes=2)
    gl = cm.prefill_cost(ARCH, (2, 2), 6, "glimpse", kept=1, dtype_bytes=2)
    # 2 (k, v) x 2 layers x 1 kv head x 4 wide x tokens x 2 bytes
    assert base.kv_bytes == 32 * 10 == cm.kv_bytes(ARCH, 10)
    assert gl.kv_bytes == 32 * 7
    assert (gl.kv_tokens, base.kv_tokens) == (7, 10)


def test_vision_flops_by_hand():
    # grid 2x3 merged = 24 patches; windows of 2x2 merged: 4 and 2 merged tokens = 16 and 8 patches
    assert cm.window_lengths((2, 3), VISION.window_merged) == [4, 2]
    embed = 2 * 24 * 24 * 4
    linear = 2 * 24 * (4 * 12 + 4 * 4 + 4 * 12 + 6 * 4)  # qkv, proj, gate/up, down
    window_attn = 2 * (16**2 + 8**2) * 2 * (2 + 2)
    full_attn = 2 * 24**2 * 2 * (2 + 2)
    merger = 2 * 6 * 16 * 16 + 2 * 6 * 16 * 8
    assert cm.vision_cost(ARCH, (2, 3)).flops == embed + 2 * linear + window_attn + full_attn + merger == 36608


def test_decode_step_by_hand():
    # 9 cached + the new token: 10 pairs x 2 heads x 8 x 2 per layer, plus 1152 linear, two layers, lm_head
    assert cm.decode_step_cost(ARCH, 9).flops == 2 * (1152 + 320) + 160


def test_decode_bytes_read_the_whole_cache():
    a, b = cm.decode_step_cost(ARCH, 100, 2), cm.decode_step_cost(ARCH, 10, 2)
    # each extra cached token: its key and value (2 x 1 head x 4 wide x 2 bytes) read in every layer
    assert a.bytes - b.bytes == 90 * TEXT.layers * 2 * 4 * 2


@pytest.mark.parametrize("grid", [(5, 7), (8, 8), (4, 9), (1, 13), (12, 3)])
def test_window_lengths_match_transformers(grid):
    import torch
    from transformers.vision_utils import get_vision_window_index

    h, w = grid
    _, cu = get_vision_window_index(torch.tensor([[1, 2 * h, 2 * w]]), spatial_merge_size=2, window_size=112, patch_size=14)
    expected = (torch.diff(cu.long()) // 4).tolist()
    assert cm.window_lengths(grid, 112 // 2 // 14) == expected


def test_kept_count_and_grid():
    assert cm.kept_count(1000, 0.074) == 74
    assert cm.kept_count(10, 0.01) == 1  # at least one token
    assert cm.kept_count(10, 1.0) == 10
    assert cm.kept_count(10, 3) == 3
    assert cm.grid_for(4096) == (64, 64)
    assert cm.grid_for(2304) == (48, 48)
    assert cm.grid_for(30) == (5, 6)
    assert cm.grid_for(13) == (1, 13)


def _release_dicts():
    text = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                intermediate_size=18944, vocab_size=152064)
    vision = dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=3584,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=[7, 15, 23, 31])
    gp = dict(reduce_layer=18, selected_layers=[18], le_layers=list(range(28)), le_length=1, attn_fuse_size=256,
              visual_cond_size=512, attn_fuse_num_heads=4, selected_visual_layers=[31, 23, 15, 7],
              attn_fuse_type="AttnFuserV1", attn_fuse_global=True, use_attention_logits=True)
    return text, vision, gp


def test_arch_from_transformers_config_and_flat_dict_equal_the_7b_preset():
    from transformers import Qwen2_5_VLConfig

    text, vision, gp = _release_dicts()
    from_hf = cm.arch_from_config(Qwen2_5_VLConfig(text_config=text, vision_config=vision), gp, name=cm.QWEN25_VL_7B.name)
    flat = cm.arch_from_config({**text, **gp, "vision_config": vision}, name=cm.QWEN25_VL_7B.name)
    assert from_hf == cm.QWEN25_VL_7B
    assert flat == cm.QWEN25_VL_7B


def test_release_params_match_published_sizes():
    p7, p3 = cm.param_count(cm.QWEN25_VL_7B), cm.param_count(cm.QWEN25_VL_3B)
    assert 7.5e9 < p7["llm"] < 7.7e9  # Qwen2.5-7B: 7.6B with embeddings
    assert 0.66e9 < p7["vision"] < 0.69e9
    assert 3.0e9 < p3["llm"] < 3.5e9
    assert p7["vip"] < 0.02e9  # "a few million parameters"


def test_published_7b_setting_prunes_only_after_layer_k():
    r = cm.ratios(cm.QWEN25_VL_7B, 1024, 0, cm.PUBLISHED_7B_KEPT)
    assert r["kept"] == 75  # int(0.074 * 1024)
    # layers 0..18 still see every token: the ratio cannot go below 19/28
    assert 19 / 28 < r["prefill_flops_ratio"] < 0.75
    assert r["kv_ratio"] == pytest.approx(75 / 1024)
    assert r["overhead_flops_share"] < 0.01
    assert r["decode_bytes_ratio"] > 0.9  # weights dominate a decode step's traffic


def test_keep_everything_costs_only_the_overhead():
    base = cm.prefill_cost(cm.QWEN25_VL_3B, 1024, 20, "baseline")
    keep = cm.prefill_cost(cm.QWEN25_VL_3B, 1024, 20, "glimpse", kept=1.0)
    assert keep.kv_bytes == base.kv_bytes
    extra_token = cm.prefill_cost(cm.QWEN25_VL_3B, 1024, 21, "baseline").layers_full.flops - base.layers_full.flops
    assert keep.llm.flops - base.llm.flops - keep.overhead.flops <= extra_token
