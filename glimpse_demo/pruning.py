"""Drop tokens from a running prefill: hidden states, position ids and the cached layers.

This is mask-source agnostic: GlimpsePrune's VIP is one source of keep masks; a user-drawn box
or a training-free score can feed the same function.
"""

from __future__ import annotations

import torch


def prune_tokens(
    hidden: torch.Tensor,
    position_ids: torch.Tensor,
    cache,
    keep: torch.Tensor,
    cached_layers: range,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the sequence positions where ``keep`` is True.

    hidden ``[1, S, D]``, position_ids ``[3, 1, S]``, keep bool ``[S]``; ``cache`` is a transformers
    DynamicCache whose layers in ``cached_layers`` hold ``S`` positions. Kept tokens keep their
    original position ids. Each cached layer is replaced one at a time (never a copy of the whole
    cache), so peak memory stays at one layer's worth above the pruned cache.
    """
    idx = keep.nonzero().squeeze(-1).to(hidden.device)
    for l in cached_layers:
        layer = cache.layers[l]
        layer.keys = layer.keys.index_select(-2, idx.to(layer.keys.device))
        layer.values = layer.values.index_select(-2, idx.to(layer.values.device))
    return hidden.index_select(1, idx), position_ids.index_select(2, idx.to(position_ids.device))


def kv_bytes(cache) -> int:
    """Bytes held by the keys and values of every cached layer."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def kv_length(cache) -> int:
    lengths = {layer.keys.shape[-2] for layer in cache.layers if getattr(layer, "keys", None) is not None and layer.keys.numel()}
    if len(lengths) > 1:
        raise RuntimeError(f"cached layers disagree on length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0
