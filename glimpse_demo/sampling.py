"""Next-token choice: a pure function of the logits, the settings and an explicit generator."""

from __future__ import annotations

import torch

from .settings import GenerationSettings


def next_token(logits: torch.Tensor, gen: GenerationSettings, generator: torch.Generator | None) -> int:
    """logits ``[vocab]`` -> token id: argmax when greedy, else temperature + top-p sampling."""
    logits = logits.float()
    if gen.greedy:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / gen.temperature, dim=-1)
    if gen.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(-1) - sorted_p >= gen.top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
