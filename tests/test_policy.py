"""probabilities -> keep mask, on hand-made tensors."""

import pytest
import torch

from glimpse_demo.policy import keep_mask
from glimpse_demo.settings import GenerationSettings, PruneSettings

P = torch.tensor([0.9, 0.2, 0.6, 0.51, 0.5, 0.1])  # a 2x3 grid


def test_threshold_is_strict():
    assert keep_mask(P, (2, 3), 0.5).tolist() == [True, False, True, True, False, False]


def test_threshold_monotone_on_random_probs():
    p = torch.rand(100, generator=torch.Generator().manual_seed(0))
    kept = [int(keep_mask(p, (10, 10), t, min_remain_num=0).sum()) for t in torch.linspace(0, 1, 11)]
    assert kept == sorted(kept, reverse=True)


def test_max_remain_ratio_replaces_mask_with_top_k():
    m = keep_mask(P, (2, 3), 0.0, max_remain_ratio=0.5)  # 6 survive > 3 allowed
    assert m.tolist() == [True, False, True, True, False, False]
    # under the cap nothing changes
    assert keep_mask(P, (2, 3), 0.55, max_remain_ratio=0.5).tolist() == [True, False, True, False, False, False]


def test_max_remain_ratio_floors_the_count():
    assert int(keep_mask(P, (2, 3), 0.0, max_remain_ratio=0.4).sum()) == int(0.4 * 6)


def test_min_remain_num_adds_top_k():
    m = keep_mask(P, (2, 3), 0.95, min_remain_num=2)
    assert m.tolist() == [True, False, True, False, False, False]
    assert int(keep_mask(P, (2, 3), 0.95, min_remain_num=0).sum()) == 0
    assert int(keep_mask(P, (2, 3), 0.95, min_remain_num=100).sum()) == 6


@pytest.mark.parametrize("anchor,index", [("tl", 0), ("tr", 2), ("bl", 3), ("br", 5)])
def test_anchor_corners(anchor, index):
    m = keep_mask(torch.zeros(6), (2, 3), 0.5, min_remain_num=0, anchors=(anchor,))
    assert m.nonzero().flatten().tolist() == [index]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        keep_mask(P, (2, 2), 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [dict(threshold=1.5), dict(max_remain_ratio=0.0), dict(min_remain_num=-1), dict(anchors=("middle",))],
)
def test_bad_prune_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        PruneSettings(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=0), dict(greedy=False, temperature=0), dict(top_p=0)])
def test_bad_generation_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        GenerationSettings(**kwargs)
