"""The general GlimpsePrune modules trainer: box -> cell targets, losses, one step on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from glimpse_demo.training import Example, GlimpseTrainConfig, box_cells, dice_loss, lr_at


def cells(mask: torch.Tensor, grid: tuple[int, int]) -> set[tuple[int, int]]:
    return {(int(i) // grid[1], int(i) % grid[1]) for i in mask.nonzero().flatten()}


@pytest.mark.parametrize(
    "box, grid, expected",
    [
        ((0.0, 0.0, 0.1, 0.1), (4, 5), {(0, 0)}),  # int(0.1*5)=0, int(0.1*4)=0
        ((0.25, 0.5, 0.5, 0.75), (4, 4), {(2, 1), (2, 2), (3, 1), (3, 2)}),  # right/bottom edges are inclusive
        ((0.9, 0.9, 1.0, 1.0), (3, 3), {(2, 2)}),  # x2 = 1.0 clamps to the last cell
        ((0.0, 0.0, 1.0, 1.0), (2, 3), {(r, c) for r in range(2) for c in range(3)}),
    ],
)
def test_box_cells_follows_the_int_and_clamp_rule(box, grid, expected):
    assert cells(box_cells([box], grid), grid) == expected


def test_box_cells_is_the_union_over_boxes_and_empty_without_boxes():
    grid = (4, 4)
    a, b = (0.0, 0.0, 0.2, 0.2), (0.8, 0.8, 0.9, 0.9)
    assert cells(box_cells([a, b], grid), grid) == cells(box_cells([a], grid), grid) | cells(box_cells([b], grid), grid)
    assert not box_cells([], grid).any()
    assert box_cells([a], grid).shape == (16,)


def test_dice_loss_is_low_for_a_confident_match_and_high_for_a_miss():
    target = torch.tensor([True, False, False, True])
    good = torch.tensor([8.0, -8.0, -8.0, 8.0])
    assert dice_loss(good, target) < 0.01
    assert dice_loss(-good, target) > 0.7


def test_schedule_warms_up_then_decays():
    cfg = GlimpseTrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 55) < lr_at(cfg, 20)
    assert lr_at(cfg, 100) == pytest.approx(0.1)


@pytest.fixture()
def fresh_engine(tiny_dir):
    """Its own engine: training must not touch the session engine other tests use."""
    from glimpse_demo.engine import GlimpseEngine

    eng = GlimpseEngine.from_pretrained(str(tiny_dir / "base"), str(tiny_dir / "glimpse"), device="cpu")
    eng.modules.init_random(seed=3)
    return eng


def test_one_step_lowers_the_loss_on_a_tiny_batch(fresh_engine, scene):
    from glimpse_demo.training import example_loss, make_optimizer, train_step, trainable

    batch = [Example(scene, "What color is the sign?", "red", ((0.1, 0.2, 0.4, 0.6),))]
    cfg = GlimpseTrainConfig(steps=10, lr=3e-4, warmup=1)
    opt = make_optimizer(trainable(fresh_engine), cfg)
    frozen = {n: p.detach().clone() for n, p in fresh_engine.model.named_parameters()}
    before = float(example_loss(fresh_engine, batch[0], cfg).total.detach())
    stats = train_step(fresh_engine, batch, opt, cfg, step=0)
    after = float(example_loss(fresh_engine, batch[0], cfg).total.detach())
    assert stats["loss"] == pytest.approx(before, rel=1e-4)
    assert after < before
    assert all(torch.equal(p, frozen[n]) for n, p in fresh_engine.model.named_parameters()), "the base must stay frozen"
    assert not math.isnan(stats["recall"])
