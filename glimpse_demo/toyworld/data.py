"""Samples -> model inputs: prompt ids through the same path as inference, answer labels, and the
per-cell labels the base trainer's auxiliary losses use. Batches share one canvas size, so every
image in a batch has the same grid and only the question lengths need padding."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..prompting import build_inputs, pixel_budget
from .world import COLOR_NAMES, SHAPES, Sample, render


# the word of each question type that says what kind of answer is wanted
TYPE_WORDS = {"color": "color", "shape": "shape", "exist": "there", "count": "many", "position": "where",
              "exist_color": "there", "count_color": "many"}


@dataclass
class Encoded:
    input_ids: torch.Tensor  # [S] prompt + answer + <|im_end|>
    mm_token_type_ids: torch.Tensor  # [S]
    labels: torch.Tensor  # [S], -100 except at the answer tokens (shifted by the model)
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor  # [1, 3]
    grid: tuple[int, int]
    answer_pos: int  # index of the position whose next-token prediction is the answer word
    keyword_pos: list[int]  # indices of the question's keywords
    type_pos: list[int]  # index of the word that says what kind of answer is asked
    target_cells: list[int]  # raster indices (within the image) of the target objects' centre cells
    image_start: int  # index of the first image token
    cell_shape: torch.Tensor  # [N] 0 = background, 1 + shape index of the object covering the cell
    cell_color: torch.Tensor  # [N] 0 = background, 1 + colour index
    cell_center: torch.Tensor  # [N] 0 = no object centre here, 1 + shape index otherwise


def cell_labels(sample: Sample, labels: np.ndarray, grid: tuple[int, int], sub: int = 8, min_cover: float = 0.15):
    """Per merged cell: which object covers it most (if at least ``min_cover``), and centre cells."""
    gh, gw = grid
    small = np.asarray(Image.fromarray(labels).resize((gw * sub, gh * sub), Image.Resampling.NEAREST))
    blocks = small.reshape(gh, sub, gw, sub).transpose(0, 2, 1, 3).reshape(gh * gw, sub * sub)
    objs = sample.scene.objects
    counts = np.stack([(blocks == i + 1).sum(1) for i in range(len(objs))], 1) if objs else np.zeros((gh * gw, 0))
    shape = np.zeros(gh * gw, dtype=np.int64)
    color = np.zeros(gh * gw, dtype=np.int64)
    center = np.zeros(gh * gw, dtype=np.int64)
    if objs:
        best = counts.argmax(1)
        covered = counts.max(1) >= min_cover * sub * sub
        for c in np.nonzero(covered)[0]:
            o = objs[best[c]]
            shape[c] = 1 + SHAPES.index(o.shape)
            color[c] = 1 + COLOR_NAMES.index(o.color)
    for o in objs:
        cx, cy = o.center
        center[cell_of(cx, cy, grid)] = 1 + SHAPES.index(o.shape)
    return torch.from_numpy(shape), torch.from_numpy(color), torch.from_numpy(center)


def cell_of(x: float, y: float, grid: tuple[int, int]) -> int:
    """Raster index of the merged cell holding the point (x, y), given as fractions of the picture."""
    gh, gw = grid
    return min(int(y * gh), gh - 1) * gw + min(int(x * gw), gw - 1)


def draw_size(scene, max_pixels: int, oversample: float = 2.0) -> tuple[int, int]:
    """Where the processor will shrink the canvas to, times ``oversample`` per side."""
    s = min(1.0, math.sqrt(max_pixels / (scene.width * scene.height))) * oversample
    return max(1, int(scene.width * s)), max(1, int(scene.height * s))


def encode(sample: Sample, tokenizer, image_processor, chat_template: str, fast: bool = False) -> Encoded:
    """``fast`` draws the scene at twice the model's resolution instead of the full canvas (the
    processor's downscale then does the rest); the picture is the same up to anti-aliasing."""
    size = None
    if fast:
        _, max_pixels = pixel_budget(image_processor)
        size = draw_size(sample.scene, max_pixels)
    img, lab = render(sample.scene, size)
    q = sample.question
    inp = build_inputs(tokenizer, image_processor, chat_template, [img], q.text)
    prompt = inp.input_ids[0]
    ans = tokenizer(q.answer, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    ids = torch.cat([prompt, torch.tensor(ans)])
    labels = torch.full_like(ids, -100)
    labels[len(prompt):] = ids[len(prompt):]
    mm = torch.cat([inp.mm_token_type_ids[0], torch.zeros(len(ans), dtype=torch.long)])
    grid = inp.grids[0]
    image_pos = inp.mm_token_type_ids[0].nonzero().squeeze(-1)
    image_start = int(image_pos[0])
    kw_ids = {tokenizer.convert_tokens_to_ids(w) for w in q.keywords}
    q_start = int(image_pos[-1]) + 1
    keyword_pos = [i for i in range(q_start, len(prompt)) if int(prompt[i]) in kw_ids]
    type_id = tokenizer.convert_tokens_to_ids(TYPE_WORDS[q.qtype])
    type_pos = [i for i in range(q_start, len(prompt)) if int(prompt[i]) == type_id][:1]
    targets = [cell_of(*sample.scene.objects[i].center, grid) for i in q.targets]
    shape, color, center = cell_labels(sample, lab, grid)
    return Encoded(ids, mm, labels, inp.pixel_values, inp.image_grid_thw, grid, len(prompt) - 1, keyword_pos,
                   type_pos, targets, image_start, shape, color, center)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, S]
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor  # [B, 3]
    items: list[Encoded]


def collate(items: list[Encoded], pad_id: int) -> Batch:
    S = max(len(e.input_ids) for e in items)
    B = len(items)
    ids = torch.full((B, S), pad_id, dtype=torch.long)
    att = torch.zeros((B, S), dtype=torch.long)
    mm = torch.zeros((B, S), dtype=torch.long)
    lab = torch.full((B, S), -100, dtype=torch.long)
    for b, e in enumerate(items):  # right padding: positions of real tokens are unchanged
        n = len(e.input_ids)
        ids[b, :n], att[b, :n], mm[b, :n], lab[b, :n] = e.input_ids, 1, e.mm_token_type_ids, e.labels
    return Batch(ids, att, mm, lab, torch.cat([e.pixel_values for e in items]),
                 torch.cat([e.image_grid_thw for e in items]), items)
