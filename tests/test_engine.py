"""The engine against the baseline: equalities that must hold on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from glimpse_demo.pruning import kv_length
from glimpse_demo.settings import GenerationSettings, PruneSettings, RunSettings

Q = "What color is the sign?"
GEN = GenerationSettings(max_new_tokens=8)


def run(engine, images, mode="glimpse", q=Q, gen=GEN, **prune):
    return engine.run(images, q, RunSettings(mode, PruneSettings(**prune), gen))


def test_baseline_matches_transformers_generate(engine, scene):
    res = run(engine, [scene], "baseline")
    inp = engine.prepare([scene], Q)
    out = engine.model.generate(
        input_ids=inp.input_ids,
        attention_mask=torch.ones_like(inp.input_ids),
        pixel_values=inp.pixel_values,
        image_grid_thw=inp.image_grid_thw,
        mm_token_type_ids=inp.mm_token_type_ids,
        max_new_tokens=GEN.max_new_tokens,
        do_sample=False,
    )
    assert res.generated_ids == out[0, inp.input_ids.shape[1]:].tolist()


def test_keep_everything_gives_baseline_tokens(engine, scene):
    base = run(engine, [scene], "baseline")
    keep_all = run(engine, [scene], threshold=0.0, max_remain_ratio=1.0)
    assert keep_all.kept_tokens == keep_all.total_tokens
    assert keep_all.generated_ids == base.generated_ids
    assert keep_all.memory.kv_bytes_after_prefill == base.memory.kv_bytes_after_prefill


def test_random_modules_prune_a_meaningful_fraction(engine, scene):
    res = run(engine, [scene])
    assert 0.05 < res.kept_fraction < 0.95
    assert res.images[0].keep_mask.shape == res.images[0].grid
    assert res.images[0].importance.shape == res.images[0].grid


def _prefill_cache(engine, scene, mode, **prune):
    inputs = engine.prepare([scene], Q)
    from glimpse_demo.vision import encode_images

    gp = engine.gp
    blocks = tuple(gp.selected_visual_layers) if mode == "glimpse" else ()
    with torch.inference_mode():
        vision = encode_images(engine.model.model.visual, inputs.pixel_values, inputs.image_grid_thw, blocks)
        pre = engine._prefill(inputs, vision, mode, PruneSettings(**prune), None)
    return inputs, pre


def test_pruned_cache_equals_baseline_at_kept_positions(engine, scene):
    inputs, base = _prefill_cache(engine, scene, "baseline")
    _, glim = _prefill_cache(engine, scene, "glimpse")
    K = engine.gp.reduce_layer
    image = inputs.mm_token_type_ids[0].bool()
    keep = torch.ones_like(image)
    keep[image] = torch.cat(glim.masks)
    assert 0 < int(keep[image].sum()) < int(image.sum())
    # cache length = text tokens + kept image tokens; the glimpse is gone
    assert kv_length(glim.cache) == inputs.text_token_count + int(keep[image].sum())
    for layer in range(K + 1):
        for attr in ("keys", "values"):
            b = getattr(base.cache.layers[layer], attr)[:, :, keep]
            g = getattr(glim.cache.layers[layer], attr)
            torch.testing.assert_close(g, b, atol=1e-5, rtol=1e-5)
    # layer K+1 attends over the pruned sequence, so the answer's logits move
    assert not torch.allclose(glim.logits, base.logits, atol=1e-4)


def test_keep_all_cache_equals_baseline_in_every_layer(engine, scene):
    _, base = _prefill_cache(engine, scene, "baseline")
    _, glim = _prefill_cache(engine, scene, "glimpse", threshold=0.0, max_remain_ratio=1.0)
    for lb, lg in zip(base.cache.layers, glim.cache.layers):
        torch.testing.assert_close(lg.keys, lb.keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lg.values, lb.values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(glim.logits, base.logits, atol=1e-4, rtol=1e-4)


def test_kv_bytes_scale_with_kept_tokens(engine, scene):
    base = run(engine, [scene], "baseline")
    glim = run(engine, [scene])
    per_token = base.memory.kv_bytes_after_prefill / base.prompt_tokens
    expected = (glim.prompt_text_tokens + glim.kept_tokens) * per_token
    assert glim.memory.kv_bytes_after_prefill == pytest.approx(expected)
    assert glim.memory.kv_tokens_after_prefill == glim.prompt_text_tokens + glim.kept_tokens


def test_threshold_is_monotone(engine, scene):
    kept = [run(engine, [scene], threshold=t, gen=GenerationSettings(max_new_tokens=1)).kept_tokens for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert kept == sorted(kept, reverse=True)
    assert kept[0] > kept[-1]


def test_one_pass_gives_mask_probabilities_and_answer(engine, scene):
    events = list(engine.stream([scene], Q, RunSettings("glimpse", generation=GEN)))
    assert events[0].kind == "prefill" and events[0].result.images[0].keep_mask is not None
    assert events[-1].kind == "done"
    done = events[-1].result
    assert torch.equal(done.images[0].keep_mask, events[0].result.images[0].keep_mask)
    # the mask is exactly the policy applied to the reported probabilities
    from glimpse_demo.policy import keep_mask

    im, gp = done.images[0], engine.gp
    expected = keep_mask(im.importance.flatten(), im.grid, gp.reduce_threshold, gp.max_remain_ratio, gp.min_remain_num)
    assert torch.equal(im.keep_mask.flatten(), expected)


def test_streaming_equals_non_streaming(engine, scene):
    pieces: list[str] = []
    res = engine.run([scene], Q, RunSettings("glimpse", generation=GenerationSettings(max_new_tokens=12)), on_token=pieces.append)
    again = engine.run([scene], Q, RunSettings("glimpse", generation=GenerationSettings(max_new_tokens=12)))
    assert "".join(pieces) == res.answer == again.answer
    assert res.generated_ids == again.generated_ids


def test_same_seed_same_sample_other_seed_differs(engine, scene):
    def sample(seed):
        gen = GenerationSettings(max_new_tokens=10, greedy=False, temperature=1.5, top_p=0.95, seed=seed)
        return run(engine, [scene], gen=gen).generated_ids

    a, b = sample(1), sample(1)
    assert a == b
    assert any(sample(s) != a for s in (2, 3, 4))


def test_multi_image_gives_per_image_masks(engine, scene):
    from glimpse_demo.tiny import calibration_image

    second = calibration_image((280, 560), seed=11)
    res = run(engine, [scene, second])
    assert len(res.images) == 2
    assert res.images[0].grid != res.images[1].grid
    for im in res.images:
        assert im.keep_mask.shape == im.grid
        assert 1 <= im.kept_tokens <= im.total_tokens
    assert res.memory.kv_tokens_after_prefill == res.prompt_text_tokens + res.kept_tokens
    keep_all = run(engine, [scene, second], threshold=0.0, max_remain_ratio=1.0)
    base = run(engine, [scene, second], "baseline")
    assert keep_all.generated_ids == base.generated_ids


def test_baseline_reports_no_mask(engine, scene):
    res = run(engine, [scene], "baseline")
    assert res.images[0].keep_mask is None and res.images[0].importance is None
    assert res.kept_tokens == res.total_tokens
    d = res.to_dict()
    assert d["keep_mask"] is None and d["importance"] is None


def test_prompt_hidden_states_equal_baseline_up_to_layer_k(engine, scene):
    """Causality: no prompt token sees the glimpse, so layers 0..K give the baseline's hidden states."""
    K = engine.gp.reduce_layer
    seen: dict[str, list[torch.Tensor]] = {"baseline": [], "glimpse": []}
    key = {"now": "baseline"}
    hooks = [
        engine.lm.layers[i].register_forward_hook(lambda _m, _a, out: seen[key["now"]].append(out[0] if isinstance(out, tuple) else out))
        for i in range(K + 1)
    ]
    try:
        for mode in ("baseline", "glimpse"):
            key["now"] = mode
            _prefill_cache(engine, scene, mode)
    finally:
        for h in hooks:
            h.remove()
    base, glim = seen["baseline"][: K + 1], seen["glimpse"][: K + 1]
    S = base[0].shape[1]
    assert glim[0].shape[1] == S + engine.gp.le_length
    for b, g in zip(base, glim):
        torch.testing.assert_close(g[:, :S], b, atol=1e-5, rtol=1e-5)


def test_eager_attention_gives_the_same_tokens(tiny_dir, scene):
    from glimpse_demo.engine import GlimpseEngine

    eager = GlimpseEngine.from_pretrained(str(tiny_dir / "base"), str(tiny_dir / "glimpse"), device="cpu", attn_implementation="eager")
    sdpa = GlimpseEngine.from_pretrained(str(tiny_dir / "base"), str(tiny_dir / "glimpse"), device="cpu")
    for mode in ("baseline", "glimpse"):
        a = run(eager, [scene], mode)
        b = run(sdpa, [scene], mode)
        assert a.generated_ids == b.generated_ids
        if mode == "glimpse":
            torch.testing.assert_close(a.images[0].importance, b.images[0].importance, atol=1e-4, rtol=1e-4)
