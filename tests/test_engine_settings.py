"""Per-call prune settings reach the mask, and nothing per-request touches the model's config."""

import torch

from glimpse_demo.settings import GenerationSettings, PruneSettings, RunSettings

ONE = GenerationSettings(max_new_tokens=1)


def run(engine, scene, **prune):
    return engine.run([scene], "What is here?", RunSettings("glimpse", PruneSettings(**prune), ONE))


def test_max_remain_ratio_caps_kept_tokens(engine, scene):
    res = run(engine, scene, threshold=0.0, max_remain_ratio=0.1)
    assert res.kept_tokens == int(0.1 * res.total_tokens)
    # the kept ones are the most probable
    im = res.images[0]
    assert im.importance[im.keep_mask].min() >= im.importance[~im.keep_mask].max()


def test_min_remain_num_keeps_at_least_that_many(engine, scene):
    assert run(engine, scene, threshold=1.0, min_remain_num=5).kept_tokens == 5
    assert run(engine, scene, threshold=1.0, min_remain_num=0).kept_tokens == 0


def test_anchors_are_kept(engine, scene):
    res = run(engine, scene, threshold=1.0, min_remain_num=0, anchors=("tl", "br"))
    m = res.images[0].keep_mask
    assert bool(m[0, 0]) and bool(m[-1, -1]) and res.kept_tokens == 2


def test_settings_never_written_into_config(engine, scene):
    before = engine.model.config.to_json_string()
    gp_before = engine.gp
    run(engine, scene, threshold=0.9, max_remain_ratio=0.2, min_remain_num=3, anchors=("tr",))
    assert engine.model.config.to_json_string() == before
    assert engine.gp == gp_before


def test_out_of_memory_is_reported_and_next_run_works(engine, scene, monkeypatch):
    from glimpse_demo.errors import OutOfMemory

    layer = engine.lm.layers[1]
    original = layer.forward

    def boom(*a, **k):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(layer, "forward", boom)
    try:
        run(engine, scene)
        raise AssertionError("expected OutOfMemory")
    except OutOfMemory as e:
        assert "out of memory" in str(e)
    monkeypatch.setattr(layer, "forward", original)
    assert run(engine, scene).generated_ids
