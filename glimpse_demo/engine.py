"""The engine: image(s) + question -> a typed RunResult, in glimpse (GlimpsePrune) or baseline mode.

Plain torch + transformers; knows nothing of any UI. Both modes share the vision call, the layer
runner, the decode loop and the measuring code; glimpse mode only adds the glimpse token, the VIP
and one pruning step after layer K. The decoder layers are called one by one through the model's
own modules, so no model class is subclassed or copied.

Data flow of one run (batch 1):
  prompt -> vision encoder (+ selected block features) -> embeddings with image features
  -> layers 0..K over prompt + glimpse token (glimpse rows scored at ``selected_layers``)
  -> VIP -> keep mask -> prune hidden states, position ids and cached layers 0..K
  -> layers K+1..L-1 over the pruned sequence -> first token -> decode from the pruned cache.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask

from .errors import CheckpointError, OutOfMemory
from .gpconfig import GlimpseConfig
from .loading import BaseModel
from .metrics import Clock, PeakMemory
from .policy import keep_mask
from .prompting import PromptInputs, build_inputs
from .pruning import kv_bytes, kv_length, prune_tokens
from .result import ImageResult, Memory, RunResult, Timings
from .sampling import next_token
from .settings import PruneSettings, RunSettings
from .vip import GlimpseModules, _rotate_half
from .vision import VisionOutput, encode_images

log = logging.getLogger(__name__)

# A mask source maps (prompt inputs, per-image VIP probabilities or None) to per-image keep masks.
# GlimpsePrune's VIP + policy is the default; a user-drawn box can be another.
MaskSource = Callable[[PromptInputs, list[torch.Tensor]], list[torch.Tensor]]


@dataclass
class StreamEvent:
    """``kind`` is "prefill" (masks known, ``result`` partial), "token" (``text`` delta, ``token_id``)
    or "done" (``result`` complete)."""

    kind: str
    text: str = ""
    token_id: int = -1
    result: RunResult | None = None


@dataclass
class _Prefill:
    logits: torch.Tensor  # [vocab], last position
    cache: DynamicCache
    next_position: int
    probs: list[torch.Tensor] | None  # per image [h*w]
    masks: list[torch.Tensor] | None  # per image bool [h*w]
    vip_s: float


class GlimpseEngine:
    """Holds a base model and (optionally) GlimpsePrune modules; every call gets its own settings."""

    def __init__(self, base: BaseModel, modules: GlimpseModules | None = None) -> None:
        self.base = base
        self.model = base.model
        self.modules = modules
        self.gp: GlimpseConfig | None = modules.cfg if modules is not None else None
        if modules is not None:
            p = next(self.model.parameters())
            modules.to(device=p.device, dtype=self._compute_dtype())

    @classmethod
    def from_pretrained(
        cls,
        base_model: str,
        glimpse_modules: str | None,
        device: str | None = None,
        dtype: str | None = None,
        load_in_4bit: bool = False,
        load_in_8bit: bool = False,
        attn_implementation: str | None = None,
    ) -> "GlimpseEngine":
        from .checkpoints import load_modules
        from .loading import load_base

        base = load_base(base_model, device, dtype, load_in_4bit, load_in_8bit, attn_implementation)
        modules = None
        if glimpse_modules:
            _, modules = load_modules(glimpse_modules, base.model.config)
        return cls(base, modules)

    # ----- geometry and helpers -------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def lm(self):
        return self.model.model.language_model

    def _compute_dtype(self) -> torch.dtype:
        return self.lm.embed_tokens.weight.dtype

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        for src in (getattr(self.model, "generation_config", None), self.model.config.text_config, self.base.tokenizer):
            eos = getattr(src, "eos_token_id", None)
            if eos is not None:
                ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        return ids

    def prepare(self, images: list, question: str) -> PromptInputs:
        b = self.base
        return build_inputs(b.tokenizer, b.image_processor, b.chat_template, images, question)

    # ----- the shared layer runner ------------------------------------------------------------

    def run_layers(
        self,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        layers: range,
        before: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        after: Callable[[int, torch.Tensor, tuple], None] | None = None,
    ) -> torch.Tensor:
        """Prefill ``layers`` over ``hidden [1, S, D]``; their cache entries must be empty.

        The causal mask is built for a fresh sequence of length S: the layers run here have no
        past, even when earlier layers' caches were filled (and pruned) before.
        """
        lm = self.lm
        rope = lm.rotary_emb(hidden, position_ids)
        mask = create_causal_mask(config=lm.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None)
        for i in layers:
            layer = lm.layers[i]
            if before is not None:
                hidden = before(i, hidden)
            x_in = hidden
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_embeddings=rope,
                position_ids=None,
                past_key_values=cache,
                use_cache=True,
            )
            if isinstance(hidden, tuple):
                hidden = hidden[0]
            if after is not None:
                after(i, x_in, rope)
        return hidden

    # ----- glimpse pieces ----------------------------------------------------------------------

    def glimpse_row_scores(
        self, layer_idx: int, x_in: torch.Tensor, rope: tuple, keys: torch.Tensor, image_pos: torch.Tensor
    ) -> torch.Tensor:
        """Scaled glimpse-query . image-key logits of one layer, ``[N, heads]``.

        Only the last row is needed, so it is computed here from the layer's own projections and
        the keys it just cached (already rotated), whatever the attention kernel.
        """
        layer = self.lm.layers[layer_idx]
        attn = layer.self_attn
        h = layer.input_layernorm(x_in[:, -1:])
        q = attn.q_proj(h).view(1, 1, -1, attn.head_dim).transpose(1, 2)  # [1, Hq, 1, d]
        cos, sin = (t[..., -1:, :].unsqueeze(1) for t in rope)
        q = q * cos + _rotate_half(q) * sin
        # keys: [1, Hkv, S, d], the layer's cache right after it ran
        groups = q.shape[1] // keys.shape[1]
        if self.gp.use_attention_logits:
            k = keys.index_select(2, image_pos)
            k = k.repeat_interleave(groups, dim=1)
            return (q @ k.transpose(-1, -2)).float()[0, :, 0].T * attn.scaling
        full = (q @ keys.repeat_interleave(groups, dim=1).transpose(-1, -2)).float() * attn.scaling
        return torch.log_softmax(full, dim=-1)[0, :, 0].index_select(-1, image_pos).T

    def run_with_glimpse(
        self,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        next_pos: int,
        cache: DynamicCache,
        image_pos: torch.Tensor,
        layers: range,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Append the glimpse token(s) after ``hidden [1, S, D]`` and run ``layers`` from layer 0.

        The glimpse sits at positions ``next_pos ..`` on all three M-RoPE axes; its embedding for
        layer ``l`` is added at that layer's input for every ``l`` in ``le_layers``. Returns the
        hidden states and position ids with the glimpse at the end, and the glimpse-row scores of
        the ``selected_layers`` in config order. No in-place writes, so the trainer can backprop.
        """
        gp, le = self.gp, self.gp.le_length
        g0 = self.modules.glimpse_embedding(0).to(hidden.dtype)
        hidden = torch.cat([hidden, g0.unsqueeze(0)], dim=1)
        g_pos = torch.arange(next_pos, next_pos + le, device=position_ids.device).view(1, 1, le).expand(3, 1, le)
        position_ids = torch.cat([position_ids, g_pos], dim=2)
        scores: dict[int, torch.Tensor] = {}

        def add_glimpse(i: int, h: torch.Tensor) -> torch.Tensor:
            e = self.modules.glimpse_embedding(i) if i > 0 else None
            return h if e is None else torch.cat([h[:, :-le], h[:, -le:] + e.to(h.dtype)], dim=1)

        def score(i: int, x_in: torch.Tensor, rope: tuple) -> None:
            if i in gp.selected_layers:
                scores[i] = self.glimpse_row_scores(i, x_in, rope, cache.layers[i].keys, image_pos)

        hidden = self.run_layers(hidden, position_ids, cache, layers, add_glimpse, score)
        return hidden, position_ids, [scores[i] for i in gp.selected_layers]

    def vip_logits(self, scores: list[torch.Tensor], vision: VisionOutput, grids: list[tuple[int, int]]) -> torch.Tensor:
        """VIP keep logits ``[N]`` (all images, raster order) from the glimpse rows of the
        ``selected_layers`` (each ``[N, heads]``) and the vision output. Differentiable: the
        trainer calls it too."""
        gp = self.gp
        x = torch.cat(scores, dim=-1).to(self._compute_dtype())  # [N, layers*heads], layer-major
        segments = vision.image_segments if gp.attn_fuse_global else vision.window_segments
        return self.modules.attn_fuser(x, [f.to(x.dtype) for f in vision.features], grids, vision.window_index, segments)

    def effective_prune(self, prune: PruneSettings) -> PruneSettings:
        """Per-call values, with the modules' config filling what the call leaves as None."""
        gp = self.gp
        if gp is None:
            return prune
        return PruneSettings(
            threshold=gp.reduce_threshold if prune.threshold is None else prune.threshold,
            max_remain_ratio=gp.max_remain_ratio if prune.max_remain_ratio is None else prune.max_remain_ratio,
            min_remain_num=gp.min_remain_num if prune.min_remain_num is None else prune.min_remain_num,
            anchors=tuple(gp.anchor_positions) if prune.anchors is None else prune.anchors,
        )

    def _masks(self, probs: list[torch.Tensor], inputs: PromptInputs, prune: PruneSettings) -> list[torch.Tensor]:
        p = self.effective_prune(prune)
        return [
            keep_mask(pr, g, p.threshold, p.max_remain_ratio, p.min_remain_num, p.anchors)
            for pr, g in zip(probs, inputs.grids)
        ]

    # ----- prefill -----------------------------------------------------------------------------

    def embed(self, inputs: PromptInputs, vision: VisionOutput) -> tuple[torch.Tensor, torch.Tensor, int]:
        dev = self.device
        ids = inputs.input_ids.to(dev)
        embeds = self.lm.embed_tokens(ids)
        image_pos = inputs.mm_token_type_ids[0].nonzero().squeeze(-1).to(dev)
        embeds[0, image_pos] = vision.image_embeds.to(embeds.dtype)
        position_ids, _ = self.model.model.get_rope_index(
            ids, mm_token_type_ids=inputs.mm_token_type_ids.to(dev), image_grid_thw=inputs.image_grid_thw.to(dev)
        )
        return embeds, position_ids, int(position_ids.max()) + 1

    def _prefill(
        self,
        inputs: PromptInputs,
        vision: VisionOutput,
        mode: str,
        prune: PruneSettings,
        mask_source: MaskSource | None,
    ) -> _Prefill:
        hidden, position_ids, next_pos = self.embed(inputs, vision)
        cache = DynamicCache(config=self.lm.config)
        n_layers = len(self.lm.layers)
        if mode == "baseline":
            hidden = self.run_layers(hidden, position_ids, cache, range(n_layers))
            return _Prefill(self._logits(hidden), cache, next_pos, None, None, 0.0)

        gp = self.gp
        K = gp.reduce_layer
        S = hidden.shape[1]
        le = gp.le_length
        image_pos = inputs.mm_token_type_ids[0].nonzero().squeeze(-1).to(self.device)
        hidden, position_ids, scores = self.run_with_glimpse(hidden, position_ids, next_pos, cache, image_pos, range(K + 1))
        clock = Clock(self.device)
        logits = self.vip_logits(scores, vision, inputs.grids)
        probs = list(torch.sigmoid(logits.float()).split(vision.image_segments))
        masks = mask_source(inputs, probs) if mask_source is not None else self._masks(probs, inputs, prune)
        keep = torch.ones(S + le, dtype=torch.bool, device=self.device)
        keep[S:] = False  # the glimpse never stays
        keep[image_pos] = torch.cat(masks).to(self.device)
        vip_s = clock.lap()
        hidden, position_ids = prune_tokens(hidden, position_ids, cache, keep, range(K + 1))
        if K + 1 < n_layers:
            hidden = self.run_layers(hidden, position_ids, cache, range(K + 1, n_layers))
        return _Prefill(self._logits(hidden), cache, next_pos, [p.cpu() for p in probs], [m.cpu() for m in masks], vip_s)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.lm.norm(hidden[:, -1:]))[0, -1]

    # ----- decode ------------------------------------------------------------------------------

    def _decode_step(self, token: int, position: int, cache: DynamicCache) -> torch.Tensor:
        dev = self.device
        embeds = self.lm.embed_tokens(torch.tensor([[token]], device=dev))
        pos = torch.full((3, 1, 1), position, dtype=torch.long, device=dev)
        out = self.lm(inputs_embeds=embeds, position_ids=pos, past_key_values=cache, use_cache=True)
        return self.model.lm_head(out.last_hidden_state[:, -1:])[0, -1]

    # ----- public API --------------------------------------------------------------------------

    def stream(
        self,
        images: list,
        question: str,
        settings: RunSettings = RunSettings(),
        mask_source: MaskSource | None = None,
    ) -> Iterator[StreamEvent]:
        """Run once, yielding a "prefill" event, one "token" event per new token, then "done".

        The clocks run while the caller holds an event: a consumer that draws between events
        should drain the stream in another thread (as the UI does) to keep its work out of the
        timings.
        """
        if settings.mode == "glimpse" and self.modules is None:
            raise CheckpointError("glimpse mode needs GlimpsePrune modules; none are loaded")
        dev = self.device
        clock = Clock(dev)
        inputs = self.prepare(images, question)
        timings = Timings(preprocess_s=clock.lap())
        try:
            with torch.inference_mode(), PeakMemory(dev) as peak:
                yield from self._generate(inputs, settings, mask_source, timings, peak)
        except torch.OutOfMemoryError as e:
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            raise OutOfMemory(f"out of memory on {dev}: try a smaller image or fewer new tokens") from e

    def _generate(self, inputs, settings, mask_source, timings: Timings, peak: PeakMemory) -> Iterator[StreamEvent]:
        gp = self.gp
        clock = Clock(self.device)
        blocks = tuple(gp.selected_visual_layers) if settings.mode == "glimpse" and gp.uses_visual_cond else ()
        vision = encode_images(self.model.model.visual, inputs.pixel_values.to(self.device), inputs.image_grid_thw.to(self.device), blocks)
        timings.vision_s = clock.lap()
        pre = self._prefill(inputs, vision, settings.mode, settings.prune, mask_source)
        del vision
        timings.prefill_s = clock.lap()
        timings.vip_s = pre.vip_s
        memory = Memory(kv_bytes_after_prefill=kv_bytes(pre.cache), kv_tokens_after_prefill=kv_length(pre.cache))
        result = self._result(inputs, settings, pre, timings, memory, [], "")
        yield StreamEvent("prefill", result=result)

        gen = settings.generation
        generator = None
        if not gen.greedy:
            generator = torch.Generator(device=self.device).manual_seed(gen.seed)
        stop = self._stop_ids()
        ids: list[int] = []
        text = ""
        logits, position = pre.logits, pre.next_position
        reason = "length"
        decode_clock = None
        while True:
            token = next_token(logits, gen, generator)
            ids.append(token)
            if len(ids) == 1:
                timings.ttft_s = clock.since_start()
                decode_clock = Clock(self.device)
            new_text = self.base.tokenizer.decode(ids, skip_special_tokens=True)
            if not new_text.endswith("\ufffd"):  # hold back half a multi-byte character
                yield StreamEvent("token", text=new_text[len(text):], token_id=token)
                text = new_text
            else:
                yield StreamEvent("token", text="", token_id=token)
            if token in stop:
                reason = "eos"
                break
            if len(ids) >= gen.max_new_tokens:
                break
            logits = self._decode_step(token, position, pre.cache)
            position += 1
        timings.decode_s = decode_clock.since_start()
        timings.decode_tokens = len(ids) - 1
        final = self.base.tokenizer.decode(ids, skip_special_tokens=True)
        if final != text:
            yield StreamEvent("token", text=final[len(text):], token_id=-1)
        timings.total_s = timings.preprocess_s + clock.since_start()
        memory.kv_bytes_end = kv_bytes(pre.cache)
        memory.peak_bytes, memory.peak_kind = peak.peak_bytes, peak.kind
        pre.cache = None
        yield StreamEvent("done", result=self._result(inputs, settings, pre, timings, memory, ids, final, reason))

    def _result(self, inputs, settings, pre: _Prefill, timings, memory, ids, answer, reason="") -> RunResult:
        cell = inputs.patch_size * inputs.merge_size
        images = []
        for k, (g, size) in enumerate(zip(inputs.grids, inputs.image_sizes)):
            mask = pre.masks[k].view(*g) if pre.masks is not None else None
            probs = pre.probs[k].view(*g).float() if pre.probs is not None else None
            images.append(ImageResult(grid=g, keep_mask=mask, importance=probs, image_size=size, cell_px=cell))
        return RunResult(
            mode=settings.mode,
            answer=answer,
            generated_ids=list(ids),
            images=images,
            timings=timings,
            memory=memory,
            prompt_tokens=int(inputs.input_ids.shape[1]),
            prompt_text_tokens=inputs.text_token_count,
            settings=_settings_dict(settings, self.effective_prune(settings.prune)),
            stop_reason=reason,
        )

    def run(
        self,
        images: list,
        question: str,
        settings: RunSettings = RunSettings(),
        on_token: Callable[[str], None] | None = None,
        mask_source: MaskSource | None = None,
    ) -> RunResult:
        """Non-streaming: drains :meth:`stream`, so both give the same text."""
        result = None
        for ev in self.stream(images, question, settings, mask_source):
            if ev.kind == "token" and on_token is not None and ev.text:
                on_token(ev.text)
            elif ev.kind == "done":
                result = ev.result
        assert result is not None
        return result


def _settings_dict(s: RunSettings, prune: PruneSettings) -> dict:
    return {"mode": s.mode, "prune": asdict(prune), "generation": asdict(s.generation)}
