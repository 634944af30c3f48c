"""Train the toy Qwen2.5-VL from scratch on the toy world (vision encoder and LLM together).

Binding ("the colour of the named shape") is what stalls a from-scratch model, so besides the
answer loss the trainer supervises the two hops the answer needs, with labels the world knows:
  * vision: each merged cell's image embedding predicts the shape and colour covering it, and
    the shape whose centre lies in it (dense cross-entropy, heads discarded after training);
  * hop 1: at layer ``hop_layers[0]`` some heads of the answer position attend to the question's
    keywords (the named shape / colour), one more to the word naming the kind of answer;
  * hop 2: at layer ``hop_layers[1]`` those heads attend to the centre cells of the question's objects.
The attention losses are -log(attention mass on the wanted tokens). A curriculum grows the number
of objects per scene. Checkpoints are written often and training resumes from the last one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..prompting import QWEN_CHAT_TEMPLATE
from ..tiny import TinySpec, tiny_config, tiny_image_processor
from .data import collate, encode
from .model import TOY_SPEC, build_word_tokenizer
from .world import COLOR_NAMES, QTYPES, SHAPES, sample

log = logging.getLogger(__name__)


@dataclass
class BaseTrainConfig:
    out: str = "tmp/toy-base"
    steps: int = 4000
    batch: int = 16
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    aux_weight: float = 1.0
    attn_weight: float = 0.5
    attn_heads: int = 2  # heads per hop layer that are supervised
    hop_layers: tuple[int, int] = (0, 1)
    # Schedules in absolute steps, as the shipped run used them (its plan changed twice mid-run):
    # (from step, max objects per scene)
    curriculum: tuple[tuple[int, int], ...] = ((0, 2), (180, 3), (375, 4), (680, 5))
    # (from step, cosine horizon in steps)
    lr_phases: tuple[tuple[int, int], ...] = ((0, 1500), (500, 1700), (700, 1800), (1000, 2400))
    # (from step, question types, weights or None): from step 700 the colour-referenced questions,
    # which the model can learn without recognising shapes, get half the batches
    mix: tuple = (
        (0, QTYPES[:5], None),
        (500, QTYPES, None),
        (700, QTYPES, (0.1, 0.1, 0.1, 0.1, 0.1, 0.25, 0.25)),
    )
    ckpt_every: int = 50
    log_every: int = 20
    threads: int = 1
    max_minutes: float = 60.0
    spec: dict = field(default_factory=lambda: asdict(TOY_SPEC))


def _phase(table, step: int):
    current = table[0]
    for row in table:
        if step >= row[0]:
            current = row
    return current


def max_objects(cfg: BaseTrainConfig, step: int) -> int:
    return _phase(cfg.curriculum, step)[1]


def canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    long = int(rng.integers(448, 1345))
    short = max(448, int(long / rng.uniform(1.0, 2.5)))
    return (long, short) if rng.random() < 0.6 else (short, long)


class AuxHeads(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.shape = nn.Linear(hidden, len(SHAPES) + 1)
        self.color = nn.Linear(hidden, len(COLOR_NAMES) + 1)
        self.center = nn.Linear(hidden, len(SHAPES) + 1)


def build_model(spec: TinySpec, tokenizer):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = tiny_config(spec, tokenizer)
    config._attn_implementation = "eager"  # the attention losses read the attention weights
    torch.manual_seed(spec.seed)
    return Qwen2_5_VLForConditionalGeneration(config)


def _attn_loss(attn: torch.Tensor, rows: list[int], wanted: list[list[int]], heads: int) -> torch.Tensor | None:
    """Mean over samples and the first ``heads`` heads of -log(mass on wanted keys) at ``rows``."""
    losses = []
    for b, (r, w) in enumerate(zip(rows, wanted)):
        if not w:
            continue
        mass = attn[b, :heads, r, w].sum(-1).clamp_min(1e-6)
        losses.append(-mass.log().mean())
    return torch.stack(losses).mean() if losses else None


def train_step(model, heads: AuxHeads, batch, cfg: BaseTrainConfig, captured: dict) -> tuple[torch.Tensor, dict]:
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        mm_token_type_ids=batch.mm_token_type_ids,
        pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw,
        labels=batch.labels,
        output_attentions=cfg.attn_weight > 0,
    )
    items = batch.items
    stats = {"lm": float(out.loss.detach())}
    loss = out.loss
    if cfg.aux_weight > 0:
        emb = captured["image_embeds"]  # [sum N, D], raster order per image
        shape = torch.cat([e.cell_shape for e in items])
        color = torch.cat([e.cell_color for e in items])
        center = torch.cat([e.cell_center for e in items])
        w = 1.0 + 4.0 * (shape > 0).float()  # objects are few among the cells
        aux = (
            (F.cross_entropy(heads.shape(emb), shape, reduction="none") * w).sum() / w.sum()
            + (F.cross_entropy(heads.color(emb), color, reduction="none") * w).sum() / w.sum()
            + F.cross_entropy(heads.center(emb), center, weight=_center_weights(emb))
        )
        loss = loss + cfg.aux_weight * aux
        stats["aux"] = float(aux.detach())
    if cfg.attn_weight > 0:
        l0, l1 = cfg.hop_layers
        rows = [e.answer_pos for e in items]
        a = _attn_loss(out.attentions[l0], rows, [e.keyword_pos for e in items], cfg.attn_heads)
        b = _attn_loss(out.attentions[l1], rows, [[e.image_start + c for c in e.target_cells] for e in items], cfg.attn_heads)
        # one more head of the first hop reads the word that says which kind of answer is wanted
        t = _attn_loss(out.attentions[l0][:, cfg.attn_heads:], rows, [e.type_pos for e in items], 1)
        att = sum(x for x in (a, b, t) if x is not None)
        if isinstance(att, torch.Tensor):
            loss = loss + cfg.attn_weight * att
            stats["attn"] = float(att.detach())
    logits = out.logits
    pred = torch.stack([logits[b, e.answer_pos].argmax() for b, e in enumerate(items)])
    gold = torch.stack([e.input_ids[e.answer_pos + 1] for e in items])
    stats["correct"] = (pred == gold).tolist()
    return loss, stats


_CW: dict = {}


def _center_weights(emb: torch.Tensor) -> torch.Tensor:
    if "w" not in _CW:
        w = torch.full((len(SHAPES) + 1,), 10.0)
        w[0] = 1.0
        _CW["w"] = w
    return _CW["w"].to(emb.device)


def make_batch(cfg: BaseTrainConfig, step: int, tokenizer, improc):
    rng = np.random.default_rng([cfg.seed, step])
    size = canvas_size(rng)
    n_max = max_objects(cfg, step)
    base = (cfg.seed * 1_000_003 + step) * cfg.batch  # training seeds stay far below the held-out range
    _, qtypes, weights = _phase(cfg.mix, step)
    samples = [sample(base + i, tuple(qtypes), (1, n_max), size, weights) for i in range(cfg.batch)]
    items = [encode(s, tokenizer, improc, QWEN_CHAT_TEMPLATE, fast=True) for s in samples]
    return collate(items, tokenizer.pad_token_id), [s.question.qtype for s in samples]


def lr_at(cfg: BaseTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    horizon = _phase(cfg.lr_phases, step)[1]
    t = (step - cfg.warmup) / max(1, horizon - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train_base(cfg: BaseTrainConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = TinySpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.spec.items()})
    tokenizer = build_word_tokenizer()
    improc = tiny_image_processor(spec)
    model = build_model(spec, tokenizer)
    heads = AuxHeads(spec.hidden)
    params = list(model.parameters()) + list(heads.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    ckpt = out / "ckpt.pt"
    step = 0
    curve: list[dict] = []
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        curve = json.loads((out / "curve.json").read_text()) if (out / "curve.json").is_file() else []
        log.info("resumed at step %d", step)
    captured: dict = {}

    def grab(_m, _a, o):
        captured["image_embeds"] = o.pooler_output if hasattr(o, "pooler_output") else o

    model.model.visual.register_forward_hook(grab)
    model.train()
    t0 = time.time()
    window: dict = {"loss": [], "lm": [], "aux": [], "attn": [], "correct": {q: [] for q in QTYPES}}
    elapsed0 = curve[-1]["minutes"] if curve else 0.0
    while step < cfg.steps:
        if (time.time() - t0) / 60 + elapsed0 > cfg.max_minutes:
            log.info("time budget reached at step %d", step)
            break
        batch, qtypes = make_batch(cfg, step, tokenizer, improc)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        loss, stats = train_step(model, heads, batch, cfg, captured)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        window["loss"].append(float(loss))
        for k in ("lm", "aux", "attn"):
            if k in stats:
                window[k].append(stats[k])
        for q, c in zip(qtypes, stats["correct"]):
            window["correct"][q].append(c)
        if step % cfg.log_every == 0:
            acc = {q: round(float(np.mean(v)), 3) for q, v in window["correct"].items() if v}
            allc = [c for v in window["correct"].values() for c in v]
            row = {"step": step, "samples": step * cfg.batch, "minutes": round(elapsed0 + (time.time() - t0) / 60, 2),
                   "lr": round(lr_at(cfg, step), 6), "max_objects": max_objects(cfg, step),
                   **{k: round(float(np.mean(v)), 4) for k, v in window.items() if k != "correct" and v},
                   "acc": round(float(np.mean(allc)), 3), "acc_by_type": acc}
            curve.append(row)
            print(json.dumps(row), flush=True)
            window = {"loss": [], "lm": [], "aux": [], "attn": [], "correct": {q: [] for q in QTYPES}}
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(out, model, heads, opt, step, curve)
    save_checkpoint(out, model, heads, opt, step, curve)
    return out


def save_checkpoint(out: Path, model, heads, opt, step: int, curve: list) -> None:
    tmp = out / "ckpt.pt.tmp"
    torch.save({"model": model.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
    tmp.replace(out / "ckpt.pt")
    (out / "curve.json").write_text(json.dumps(curve))


def export_base(run_dir: str | Path, dest: str | Path, spec: TinySpec = TOY_SPEC) -> Path:
    """Write the trained weights as a from_pretrained-loadable folder (model, tokenizer, processor)."""
    run_dir, dest = Path(run_dir), Path(dest)
    tokenizer = build_word_tokenizer()
    model = build_model(spec, tokenizer)
    state = torch.load(run_dir / "ckpt.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    model.config._attn_implementation = "sdpa"
    im_end, eot = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.eos_token_id = [im_end, eot]
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    tiny_image_processor(spec).save_pretrained(dest)
    (dest / "chat_template.jinja").write_text(QWEN_CHAT_TEMPLATE)
    return dest
