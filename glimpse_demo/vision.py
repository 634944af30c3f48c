"""Run the Qwen2.5-VL vision encoder once, keeping the block outputs the VIP is conditioned on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.vision_utils import get_vision_window_index


@dataclass
class VisionOutput:
    image_embeds: torch.Tensor  # [N, text_hidden], merged tokens of all images, raster order
    features: list[torch.Tensor]  # per requested block: [N, vision_hidden], raster order
    window_index: torch.Tensor  # [N] merged-token raster -> window order permutation
    window_segments: list[int]  # window lengths (merged tokens), in window order
    image_segments: list[int]  # merged tokens per image


def encode_images(visual, pixel_values: torch.Tensor, grid_thw: torch.Tensor, blocks: tuple[int, ...] = ()) -> VisionOutput:
    """``visual`` is the model's vision tower; ``blocks`` the indices whose outputs to keep.

    Block outputs live in the encoder's window order at patch level; each 2x2 (merge x merge)
    unit is averaged and put back in raster order.
    """
    cfg = visual.config
    unit = cfg.spatial_merge_size**2
    window_index, cu_window = get_vision_window_index(
        grid_thw, spatial_merge_size=cfg.spatial_merge_size, window_size=cfg.window_size, patch_size=cfg.patch_size
    )
    window_index = window_index.to(pixel_values.device)
    reverse = torch.argsort(window_index)
    captured: dict[int, torch.Tensor] = {}

    def keep(i):
        def hook(_module, _args, output):
            out = output[0] if isinstance(output, tuple) else output
            captured[i] = out.reshape(-1, unit, out.shape[-1]).mean(dim=1)[reverse]

        return hook

    handles = [visual.blocks[i].register_forward_hook(keep(i)) for i in blocks]
    try:
        out = visual(pixel_values.to(visual.dtype), grid_thw=grid_thw)
    finally:
        for h in handles:
            h.remove()
    embeds = out.pooler_output if hasattr(out, "pooler_output") else out
    if isinstance(embeds, (list, tuple)):
        embeds = torch.cat(list(embeds), dim=0)
    window_segments = (torch.diff(cu_window.to("cpu").long()) // unit).tolist()
    image_segments = (grid_thw.prod(-1) // unit).tolist()
    return VisionOutput(embeds, [captured[i] for i in blocks], window_index, window_segments, image_segments)
