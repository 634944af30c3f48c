"""Train GlimpsePrune modules for any Qwen2.5-VL, the base model frozen.

A dataset is any sequence of :class:`Example` (image, question, answer, boxes of the objects the
question is about, as fractions of the image). Per example, as in the paper:
  * the glimpse token is appended after the prompt, i.e. just before the answer; all layers run on
    the full sequence (no pruning while training); the glimpse position predicts the first answer
    token and the answer tokens follow it, so the language-model loss reaches the glimpse
    embeddings through every layer;
  * the VIP reads the glimpse's attention logits at ``selected_layers`` (and the vision features)
    and is trained toward the merged cells covered by the boxes (:func:`box_cells`);
  * loss = dice_weight * Dice + bce_weight * BCE on the VIP logits + lm_weight * CE on the answer.
AdamW with a linear warm-up and a cosine decay. Only the modules' parameters are updated.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache

from .engine import GlimpseEngine
from .vision import encode_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    image: object  # anything glimpse_demo.images.open_image accepts
    question: str
    answer: str
    boxes: tuple[tuple[float, float, float, float], ...]  # (x1, y1, x2, y2), fractions of width / height


@dataclass(frozen=True)
class GlimpseTrainConfig:
    steps: int = 500
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 20
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    dice_weight: float = 1.0
    bce_weight: float = 0.1
    lm_weight: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0


def box_cells(boxes: Sequence[Sequence[float]], grid: tuple[int, int]) -> torch.Tensor:
    """Union of the merged-token cells covered by ``boxes`` (fractions), raster order ``[h*w]`` bool.

    A box covers columns ``int(x1*W) .. min(int(x2*W), W-1)`` and likewise rows.
    """
    h, w = grid
    mask = torch.zeros(h, w, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes:
        c0, c1 = int(x1 * w), min(int(x2 * w), w - 1)
        r0, r1 = int(y1 * h), min(int(y2 * h), h - 1)
        mask[max(r0, 0) : r1 + 1, max(c0, 0) : c1 + 1] = True
    return mask.flatten()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    p = torch.sigmoid(logits.float())
    t = target.float()
    return 1.0 - (2.0 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def lr_at(cfg: GlimpseTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class ExampleLoss:
    total: torch.Tensor
    dice: float
    bce: float
    lm: float
    answer_correct: bool
    recall: float  # fraction of target cells with p > threshold (nan when there are none)
    kept: float  # fraction of cells with p > threshold


def example_loss(engine: GlimpseEngine, ex: Example, cfg: GlimpseTrainConfig) -> ExampleLoss:
    """Forward one example with the glimpse before its answer; differentiable in the modules."""
    gp, base = engine.gp, engine.base
    dev = engine.device
    inputs = engine.prepare([ex.image], ex.question)
    tok = base.tokenizer
    answer_ids = tok(ex.answer, add_special_tokens=False)["input_ids"]
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    if stop is not None and stop != tok.unk_token_id:
        answer_ids = answer_ids + [stop]
    answer = torch.tensor([answer_ids], device=dev)
    blocks = tuple(gp.selected_visual_layers) if gp.uses_visual_cond else ()
    with torch.no_grad():
        vision = encode_images(engine.model.model.visual, inputs.pixel_values.to(dev), inputs.image_grid_thw.to(dev), blocks)
        hidden, position_ids, next_pos = engine.embed(inputs, vision)
    le = gp.le_length
    image_pos = inputs.mm_token_type_ids[0].nonzero().squeeze(-1).to(dev)
    cache = DynamicCache(config=engine.lm.config)
    n_layers = len(engine.lm.layers)
    hidden, _, scores = engine.run_with_glimpse(hidden, position_ids, next_pos, cache, image_pos, range(n_layers))
    # the last glimpse position predicts the first answer token; the answer tokens predict the rest
    first = engine.model.lm_head(engine.lm.norm(hidden[:, -1:]))[0, -1]
    logits = [first.unsqueeze(0)]
    if answer.shape[1] > 1:
        a_pos = torch.arange(next_pos + le, next_pos + le + answer.shape[1] - 1, device=dev).view(1, 1, -1).expand(3, 1, -1)
        out = engine.lm(inputs_embeds=engine.lm.embed_tokens(answer[:, :-1]), position_ids=a_pos, past_key_values=cache, use_cache=True)
        logits.append(engine.model.lm_head(out.last_hidden_state)[0])
    logits = torch.cat(logits).float()
    lm = F.cross_entropy(logits, answer[0])

    vip = engine.vip_logits(scores, vision, inputs.grids)
    target = torch.cat([box_cells(ex.boxes, g) for g in inputs.grids]).to(dev)
    dice = dice_loss(vip, target)
    bce = F.binary_cross_entropy_with_logits(vip.float(), target.float())
    total = cfg.dice_weight * dice + cfg.bce_weight * bce + cfg.lm_weight * lm
    with torch.no_grad():
        keep = torch.sigmoid(vip.float()) > gp.reduce_threshold
        recall = float(keep[target].float().mean()) if target.any() else float("nan")
    return ExampleLoss(total, float(dice.detach()), float(bce.detach()), float(lm.detach()), int(first.argmax()) == answer_ids[0], recall,
                       float(keep.float().mean()))


def trainable(engine: GlimpseEngine) -> list[torch.nn.Parameter]:
    """Freeze the base, unfreeze the modules; return the modules' parameters."""
    engine.model.requires_grad_(False)
    engine.modules.requires_grad_(True)
    return [p for p in engine.modules.parameters() if p.requires_grad]


def make_optimizer(params: list[torch.nn.Parameter], cfg: GlimpseTrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)


def train_step(engine: GlimpseEngine, batch: Sequence[Example], opt: torch.optim.Optimizer, cfg: GlimpseTrainConfig,
               step: int) -> dict:
    """One optimiser step over ``batch`` (gradients accumulated example by example)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    for g in opt.param_groups:
        g["lr"] = lr_at(cfg, step)
    opt.zero_grad(set_to_none=True)
    stats = {"loss": 0.0, "dice": 0.0, "bce": 0.0, "lm": 0.0, "acc": 0.0, "kept": 0.0}
    recalls = []
    for ex in batch:
        r = example_loss(engine, ex, cfg)
        (r.total / len(batch)).backward()
        stats["loss"] += float(r.total.detach()) / len(batch)
        stats["dice"] += r.dice / len(batch)
        stats["bce"] += r.bce / len(batch)
        stats["lm"] += r.lm / len(batch)
        stats["acc"] += float(r.answer_correct) / len(batch)
        stats["kept"] += r.kept / len(batch)
        if not math.isnan(r.recall):
            recalls.append(r.recall)
    stats["recall"] = sum(recalls) / len(recalls) if recalls else float("nan")
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    return stats


def train_modules(
    engine: GlimpseEngine,
    batches: Callable[[int], Sequence[Example]],
    cfg: GlimpseTrainConfig,
    start_step: int = 0,
    opt: torch.optim.Optimizer | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    max_seconds: float | None = None,
) -> torch.optim.Optimizer:
    """Train ``engine.modules`` for ``cfg.steps`` steps; ``batches(step)`` gives the examples of a step.

    ``on_step(step, stats)`` is called after every step (logging, checkpoints). Returns the optimiser
    so a caller can checkpoint and resume it.
    """
    params = trainable(engine)
    engine.modules.train()
    opt = opt or make_optimizer(params, cfg)
    t0 = time.time()
    for step in range(start_step, cfg.steps):
        if max_seconds is not None and time.time() - t0 > max_seconds:
            log.info("time budget reached at step %d", step)
            break
        stats = train_step(engine, batches(step), opt, cfg, step)
        if on_step is not None:
            on_step(step + 1, stats)
    engine.modules.eval()
    return opt


def vip_probabilities(engine: GlimpseEngine, ex: Example) -> tuple[torch.Tensor, torch.Tensor]:
    """(VIP keep probabilities, target cells) of one example, all images concatenated, raster order."""
    from .settings import GenerationSettings, PruneSettings, RunSettings

    settings = RunSettings("glimpse", prune=PruneSettings(threshold=1.0), generation=GenerationSettings(max_new_tokens=1))
    r = engine.run([ex.image], ex.question, settings)
    probs = torch.cat([im.importance.flatten() for im in r.images])
    target = torch.cat([box_cells(ex.boxes, im.grid) for im in r.images])
    return probs, target


def calibrate_threshold(engine: GlimpseEngine, examples: Sequence[Example], recall: float = 0.95,
                        max_kept: float = 0.15, candidates: Sequence[float] | None = None) -> dict:
    """The highest keep threshold whose mean per-example recall of target cells reaches ``recall``
    on ``examples`` (a split of its own, never the test split), with the fraction it keeps; when no
    threshold reaches ``recall``, the one with the best recall that keeps at most ``max_kept``.

    The modules' ``reduce_threshold`` is an operating point; this picks it from data instead of
    assuming 0.5.
    """
    pairs = [vip_probabilities(engine, ex) for ex in examples]
    candidates = candidates or [1e-4, 3e-4, 1e-3, 3e-3, 0.01] + [round(0.02 * k, 2) for k in range(1, 50)]
    table = []
    for t in candidates:
        recs = [float((p[m] > t).float().mean()) for p, m in pairs if m.any()]
        kept = [float((p > t).float().mean()) for p, _ in pairs]
        table.append({"threshold": t, "recall": sum(recs) / max(1, len(recs)), "kept": sum(kept) / len(kept)})
    ok = [row for row in table if row["recall"] >= recall]
    if ok:
        best = max(ok, key=lambda row: row["threshold"])
    else:
        within = [row for row in table if row["kept"] <= max_kept] or table
        best = max(within, key=lambda row: (row["recall"], row["threshold"]))
    return {"chosen": best, "table": table}
