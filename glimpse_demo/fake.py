"""A stand-in for :class:`GlimpseEngine`: scripted tokens, a fixed probability map, no model.

It has the engine's public surface that views use (``stream``, ``run``, ``modules``, ``gp``,
``base.image_processor``, ``device``) and validates input the same way (same image opening and
pixel budget, same question limits), so UI handlers and their error paths can be tested in
milliseconds. ``fail_after_prefill`` makes the next run raise mid-stream (out of memory, say).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from types import SimpleNamespace

import torch

from .engine import StreamEvent
from .errors import CheckpointError, InputError
from .images import fit_to_budget, open_image
from .policy import keep_mask
from .prompting import clean_question
from .result import ImageResult, Memory, RunResult, Timings
from .settings import RunSettings
from .tiny import SPECIAL_TOKENS

BYTES_PER_TOKEN = 1024  # fake KV cache cost of one token, all layers
QWEN_SPECIAL = SimpleNamespace(all_special_tokens=list(SPECIAL_TOKENS))  # what clean_question reads of a tokenizer


def bump(grid: tuple[int, int], center=(0.35, 0.3), sigma: float = 0.22) -> torch.Tensor:
    """A fixed smooth probability map ``[h*w]``: high around ``center`` (x, y in 0..1), low elsewhere."""
    h, w = grid
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    d2 = (xs[None, :] - center[0]) ** 2 + (ys[:, None] - center[1]) ** 2
    return torch.exp(-d2 / (2 * sigma**2)).reshape(-1)


class FakeEngine:
    def __init__(
        self,
        answer: str = "A red circle near the top left corner.",
        baseline_answer: str = "A red circle in the top left corner of the picture.",
        patch_size: int = 14,
        merge_size: int = 2,
        max_pixels: int = 448 * 448,
        with_modules: bool = True,
    ) -> None:
        self.answers = {"glimpse": answer, "baseline": baseline_answer}
        self.base = SimpleNamespace(
            image_processor=SimpleNamespace(patch_size=patch_size, merge_size=merge_size, size={"longest_edge": max_pixels}),
            source="fake",
        )
        self.gp = None
        self.modules = None
        if with_modules:
            self.gp = SimpleNamespace(reduce_threshold=0.5, max_remain_ratio=None, min_remain_num=1, anchor_positions=())
            self.modules = object()
        self.device = torch.device("cpu")
        self.fail_after_prefill: Exception | None = None
        self.calls = 0

    @property
    def cell_px(self) -> int:
        ip = self.base.image_processor
        return ip.patch_size * ip.merge_size

    def _grid(self, img) -> tuple[int, int]:
        c = self.cell_px
        return max(1, round(img.height / c)), max(1, round(img.width / c))

    def stream(self, images: list, question: str, settings: RunSettings = RunSettings(), mask_source=None) -> Iterator[StreamEvent]:
        self.calls += 1
        if settings.mode == "glimpse" and self.modules is None:
            raise CheckpointError("glimpse mode needs GlimpsePrune modules; none are loaded")
        if not images:
            raise InputError("no image was given")
        clean_question(question, QWEN_SPECIAL)  # the engine's own check
        max_pixels = self.base.image_processor.size["longest_edge"]
        pil = [fit_to_budget(open_image(im), self.cell_px, max_pixels) for im in images]
        grids = [self._grid(im) for im in pil]
        results = []
        for g in grids:
            probs = bump(g)
            mask = None
            if settings.mode == "glimpse":
                mask = self._mask(probs, g, settings).view(*g)
            results.append(ImageResult(
                grid=g,
                keep_mask=mask,
                importance=probs.view(*g) if settings.mode == "glimpse" else None,
                image_size=(g[1] * self.cell_px, g[0] * self.cell_px),
                cell_px=self.cell_px,
            ))
        kept = sum(r.kept_tokens for r in results)
        speed = 2.0 if settings.mode == "glimpse" else 1.0
        timings = Timings(preprocess_s=0.001, vision_s=0.01, prefill_s=0.02 / speed, ttft_s=0.03 / speed)
        memory = Memory(kv_bytes_after_prefill=(kept + 20) * BYTES_PER_TOKEN, kv_tokens_after_prefill=kept + 20)
        result = RunResult(settings.mode, "", [], results, timings, memory, kept + 20, 20,
                           {"mode": settings.mode, "prune": asdict(settings.prune), "generation": asdict(settings.generation)})
        yield StreamEvent("prefill", result=result)
        if self.fail_after_prefill is not None:
            e, self.fail_after_prefill = self.fail_after_prefill, None
            raise e
        words = self.answers[settings.mode].split(" ")[: settings.generation.max_new_tokens]
        text = ""
        for i, w in enumerate(words):
            delta = w if i == 0 else " " + w
            text += delta
            yield StreamEvent("token", text=delta, token_id=i)
        n = len(words)
        timings.decode_tokens = max(0, n - 1)
        timings.decode_s = 0.01 * n / speed
        timings.total_s = timings.preprocess_s + timings.ttft_s + timings.decode_s
        memory.kv_bytes_end = memory.kv_bytes_after_prefill + n * BYTES_PER_TOKEN
        memory.peak_bytes, memory.peak_kind = 2 * memory.kv_bytes_end, "fake"
        result.answer, result.generated_ids, result.stop_reason = text, list(range(n)), "eos"
        yield StreamEvent("done", result=result)

    def _mask(self, probs: torch.Tensor, grid, settings: RunSettings) -> torch.Tensor:
        p, gp = settings.prune, self.gp
        return keep_mask(
            probs,
            grid,
            gp.reduce_threshold if p.threshold is None else p.threshold,
            gp.max_remain_ratio if p.max_remain_ratio is None else p.max_remain_ratio,
            gp.min_remain_num if p.min_remain_num is None else p.min_remain_num,
            tuple(gp.anchor_positions) if p.anchors is None else p.anchors,
        )

    def run(self, images: list, question: str, settings: RunSettings = RunSettings(),
            on_token: Callable[[str], None] | None = None, mask_source=None) -> RunResult:
        result = None
        for ev in self.stream(images, question, settings):
            if ev.kind == "token" and on_token is not None:
                on_token(ev.text)
            elif ev.kind == "done":
                result = ev.result
        assert result is not None
        return result

