"""Typed results of one engine run: what the views (Gradio, CLI JSON, files) draw from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass
class ImageResult:
    """One image of the prompt.

    ``keep_mask`` and ``importance`` are ``[h, w]`` over the merged-token grid (raster order);
    both are ``None`` in baseline mode.
    """

    grid: tuple[int, int]
    keep_mask: torch.Tensor | None = None  # bool [h, w]
    importance: torch.Tensor | None = None  # float32 [h, w], VIP keep probabilities
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the image the model saw, after resizing
    cell_px: int = 28  # pixels of one merged token on a side, in the resized image

    @property
    def total_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def kept_tokens(self) -> int:
        return self.total_tokens if self.keep_mask is None else int(self.keep_mask.sum())

    def to_dict(self) -> dict:
        return {
            "grid": list(self.grid),
            "keep_mask": None if self.keep_mask is None else self.keep_mask.int().tolist(),
            "importance": None
            if self.importance is None
            else [[round(float(v), 6) for v in row] for row in self.importance.tolist()],
            "kept_tokens": self.kept_tokens,
            "total_tokens": self.total_tokens,
            "image_size": list(self.image_size),
            "cell_px": self.cell_px,
        }


@dataclass
class Timings:
    """Seconds, from a monotonic clock (synchronised on CUDA)."""

    preprocess_s: float = 0.0
    vision_s: float = 0.0
    prefill_s: float = 0.0  # LLM prefill, glimpse and VIP included
    vip_s: float = 0.0  # part of prefill_s spent in the glimpse row scores, VIP and mask policy
    ttft_s: float = 0.0  # from the start of the run (after preprocessing) to the first token
    decode_s: float = 0.0
    total_s: float = 0.0
    decode_tokens: int = 0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decode_tokens_per_s"] = self.decode_tokens_per_s
        return d


@dataclass
class Memory:
    """Bytes. ``peak_kind`` names what ``peak_bytes`` measures on this device."""

    kv_bytes_after_prefill: int = 0
    kv_bytes_end: int = 0
    kv_tokens_after_prefill: int = 0
    peak_bytes: int = 0
    peak_kind: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    mode: str
    answer: str
    generated_ids: list[int]
    images: list[ImageResult]
    timings: Timings
    memory: Memory
    prompt_tokens: int  # text + image tokens of the prompt (glimpse not counted)
    prompt_text_tokens: int
    settings: dict = field(default_factory=dict)
    stop_reason: str = ""

    @property
    def kept_tokens(self) -> int:
        return sum(i.kept_tokens for i in self.images)

    @property
    def total_tokens(self) -> int:
        return sum(i.total_tokens for i in self.images)

    @property
    def kept_fraction(self) -> float:
        return self.kept_tokens / self.total_tokens if self.total_tokens else 1.0

    def to_dict(self) -> dict:
        """The CLI's JSON contract: first-image fields at top level, every image under ``images``."""
        first = self.images[0].to_dict() if self.images else {}
        return {
            "mode": self.mode,
            "answer": self.answer,
            "generated_ids": list(self.generated_ids),
            "grid": first.get("grid"),
            "keep_mask": first.get("keep_mask"),
            "importance": first.get("importance"),
            "kept_tokens": self.kept_tokens,
            "total_tokens": self.total_tokens,
            "kept_fraction": self.kept_fraction,
            "prompt_tokens": self.prompt_tokens,
            "prompt_text_tokens": self.prompt_text_tokens,
            "timings": self.timings.to_dict(),
            "memory": self.memory.to_dict(),
            "images": [i.to_dict() for i in self.images],
            "settings": self.settings,
            "stop_reason": self.stop_reason,
        }
