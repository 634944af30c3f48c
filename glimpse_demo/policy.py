"""Pure policies: VIP keep probabilities -> keep mask. Tested on hand-made tensors."""

from __future__ import annotations

import torch


def keep_mask(
    probs: torch.Tensor,
    grid: tuple[int, int],
    threshold: float,
    max_remain_ratio: float | None = None,
    min_remain_num: int | None = 1,
    anchors: tuple[str, ...] = (),
) -> torch.Tensor:
    """Keep mask ``[h*w]`` (raster order) for one image's probabilities ``[h*w]``.

    Keep ``p > threshold``; if more than ``max_remain_ratio`` of the tokens survive, keep the top
    ``int(ratio * n)`` instead; then add the top ``min_remain_num`` if fewer survive; then the
    anchor corners (``tl``, ``tr``, ``bl``, ``br``).
    """
    h, w = grid
    n = probs.numel()
    if n != h * w:
        raise ValueError(f"{n} probabilities for a {h}x{w} grid")
    mask = probs > threshold
    if max_remain_ratio is not None and int(mask.sum()) > max_remain_ratio * n:
        mask = torch.zeros_like(mask)
        mask[torch.topk(probs, int(max_remain_ratio * n)).indices] = True
    if min_remain_num and int(mask.sum()) < min_remain_num:
        mask[torch.topk(probs, min(min_remain_num, n)).indices] = True
    corners = {"tl": 0, "tr": w - 1, "bl": (h - 1) * w, "br": h * w - 1}
    for a in anchors:
        mask[corners[a]] = True
    return mask
