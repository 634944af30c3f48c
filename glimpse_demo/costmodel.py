"""Analytic cost of one Qwen2.5-VL answer, with and without GlimpsePrune: FLOPs, bytes moved, KV cache.

Pure Python (no torch), so it can price the real 3B/7B releases on any machine. It follows what
this project's engine does, term by term:

  vision encoder (patch embed, window / full-attention blocks, merger)
  -> LLM layers 0..K over text + N image tokens (+ the glimpse token in glimpse mode)
  -> glimpse row scores at ``selected_layers`` and glimpse embeddings (glimpse mode)
  -> VIP on the N image tokens (glimpse mode)
  -> layers K+1..L-1 over text + kept image tokens (fresh causal attention, as the engine runs them)
  -> final norm + lm_head on the last position.
  decode step at context C: every layer over one token attending to C + 1 keys, lm_head.

Conventions (the tests check them on hand-computed configs):
- FLOPs = 2 x multiply-accumulates of matrix products (linear layers, convolution, q.k and
  attention x value). Norms, activations, rotary, softmax, residual adds and biases are not counted:
  they are O(tokens x width) and below 1% at these widths.
- Causal self-attention of a fresh sequence of S tokens: S(S+1)/2 query-key pairs (a kernel that
  skips the masked half, like PyTorch's SDPA with ``is_causal``). Vision and VIP attention are
  bidirectional within their blocks: len^2 pairs per block.
- Bytes moved is a lower bound on memory traffic: every weight read once per pass, every matrix
  product's input read and output written once, attention reads q, k, v and writes its output,
  and the KV cache is written (prefill) or read in full plus one new entry written (decode).
- KV bytes = 2 (keys, values) x layers x kv_heads x head_dim x cached tokens x dtype bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

# ----- architecture ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TextArch:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    head_dim: int = 0  # 0: hidden // heads

    def __post_init__(self) -> None:
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @property
    def d(self) -> int:
        return self.head_dim


@dataclass(frozen=True)
class VisionArch:
    hidden: int
    depth: int
    heads: int
    intermediate: int
    out_hidden: int
    patch: int = 14
    merge: int = 2
    temporal_patch: int = 2
    in_channels: int = 3
    window: int = 112  # pixels on a side
    fullatt_blocks: tuple[int, ...] = ()

    @property
    def window_merged(self) -> int:
        """Window side in merged tokens (what ``get_vision_window_index`` uses)."""
        return self.window // self.merge // self.patch


@dataclass(frozen=True)
class GlimpseArch:
    """GlimpsePrune fields that cost something."""

    reduce_layer: int  # K
    selected_layers: tuple[int, ...]
    le_layers: tuple[int, ...]
    le_length: int = 1
    fuse: int = 256
    cond: int = 512
    fuse_heads: int = 4
    vip_layers: int = 4  # len(selected_visual_layers)
    visual_cond: bool = True  # AttnFuserV1 with selected_visual_layers
    global_attn: bool = True
    use_attention_logits: bool = True


@dataclass(frozen=True)
class Arch:
    name: str
    text: TextArch
    vision: VisionArch
    glimpse: GlimpseArch | None = None

    def with_glimpse(self, **kw) -> "Arch":
        return replace(self, glimpse=replace(self.glimpse, **kw))


def _gp_release(layers: int, reduce_layer: int) -> GlimpseArch:
    return GlimpseArch(
        reduce_layer=reduce_layer,
        selected_layers=(reduce_layer,),
        le_layers=tuple(range(layers)),
        le_length=1,
        fuse=256,
        cond=512,
        fuse_heads=4,
        vip_layers=4,
        visual_cond=True,
        global_attn=True,
    )


_VISION_RELEASE = dict(
    hidden=1280, depth=32, heads=16, intermediate=3420, patch=14, merge=2, temporal_patch=2,
    in_channels=3, window=112, fullatt_blocks=(7, 15, 23, 31),
)

# Published Qwen2.5-VL-7B-Instruct / -3B-Instruct configs, with the GlimpsePrune releases' K.
QWEN25_VL_7B = Arch(
    "Qwen2.5-VL-7B",
    TextArch(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064),
    VisionArch(out_hidden=3584, **_VISION_RELEASE),
    _gp_release(28, 18),
)
QWEN25_VL_3B = Arch(
    "Qwen2.5-VL-3B",
    TextArch(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008, vocab=151936),
    VisionArch(out_hidden=2048, **_VISION_RELEASE),
    _gp_release(36, 23),
)
PRESETS = {"7b": QWEN25_VL_7B, "3b": QWEN25_VL_3B}
PUBLISHED_7B_KEPT = 0.074  # 92.6% of visual tokens pruned on average (paper, 7B)


def _get(obj, key, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def arch_from_config(config, glimpse=None, name: str = "custom") -> Arch:
    """An :class:`Arch` from a transformers ``Qwen2_5_VLConfig`` or its dict (nested ``text_config``
    or the published flat layout), plus GlimpsePrune fields from ``glimpse`` (a dict, a
    ``GlimpseConfig``, or None) or, failing that, from ``config`` itself (a modules config.json)."""
    text = _get(config, "text_config") or config
    vision = _get(config, "vision_config")
    if vision is None:
        raise ValueError("config has no vision_config")

    def t(key, default=None):
        v = _get(text, key)
        return _get(config, key, default) if v is None else v

    heads = int(t("num_attention_heads"))
    hidden = int(t("hidden_size"))
    ta = TextArch(
        hidden=hidden,
        layers=int(t("num_hidden_layers")),
        heads=heads,
        kv_heads=int(t("num_key_value_heads") or heads),
        intermediate=int(t("intermediate_size")),
        vocab=int(t("vocab_size")),
        head_dim=int(t("head_dim") or hidden // heads),
    )
    patch = _get(vision, "patch_size", 14)
    tpatch = _get(vision, "temporal_patch_size", 2)
    va = VisionArch(
        hidden=int(_get(vision, "hidden_size")),
        depth=int(_get(vision, "depth") or _get(vision, "num_hidden_layers")),
        heads=int(_get(vision, "num_heads") or _get(vision, "num_attention_heads")),
        intermediate=int(_get(vision, "intermediate_size")),
        out_hidden=int(_get(vision, "out_hidden_size") or hidden),
        patch=int(patch[0] if isinstance(patch, (list, tuple)) else patch),
        merge=int(_get(vision, "spatial_merge_size", 2)),
        temporal_patch=int(tpatch[0] if isinstance(tpatch, (list, tuple)) else tpatch),
        in_channels=int(_get(vision, "in_channels", None) or _get(vision, "in_chans", 3)),
        window=int(_get(vision, "window_size", 112)),
        fullatt_blocks=tuple(int(i) for i in (_get(vision, "fullatt_block_indexes") or ())),
    )
    src = glimpse if glimpse is not None else (config if _get(config, "reduce_layer") is not None else None)
    ga = None
    if src is not None:
        selected_visual = tuple(_get(src, "selected_visual_layers") or ())
        fuse_type = _get(src, "attn_fuse_type", "AttnFuserV1")
        ga = GlimpseArch(
            reduce_layer=int(_get(src, "reduce_layer")),
            selected_layers=tuple(_get(src, "selected_layers") or ()),
            le_layers=tuple(_get(src, "le_layers") or ()),
            le_length=int(_get(src, "le_length", 1)),
            fuse=int(_get(src, "attn_fuse_size", 256)),
            cond=int(_get(src, "visual_cond_size", 512)),
            fuse_heads=int(_get(src, "attn_fuse_num_heads", 4)),
            vip_layers=len(selected_visual),
            visual_cond=fuse_type == "AttnFuserV1" and len(selected_visual) > 0,
            global_attn=bool(_get(src, "attn_fuse_global", True)),
            use_attention_logits=bool(_get(src, "use_attention_logits", True)),
        )
    return Arch(name, ta, va, ga)


# ----- geometry -------------------------------------------------------------------------------


def grid_for(n_tokens: int) -> tuple[int, int]:
    """The most square merged-token grid ``(h, w)`` with ``h * w == n_tokens`` and ``h <= w``."""
    if n_tokens < 1:
        raise ValueError("n_tokens must be >= 1")
    h = math.isqrt(n_tokens)
    while n_tokens % h:
        h -= 1
    return h, n_tokens // h


def window_lengths(grid: tuple[int, int], window_merged: int) -> list[int]:
    """Merged tokens in each vision window of one image (as Qwen2.5-VL tiles it: ``window_merged``
    squares from the top-left, partial ones at the right and bottom edges)."""
    h, w = grid
    rows = [min(window_merged, h - r) for r in range(0, h, window_merged)]
    cols = [min(window_merged, w - c) for c in range(0, w, window_merged)]
    return [r * c for r in rows for c in cols]


# ----- cost terms -----------------------------------------------------------------------------


@dataclass
class Cost:
    """FLOPs and bytes of one piece of work."""

    flops: int = 0
    bytes: int = 0

    def __add__(self, o: "Cost") -> "Cost":
        return Cost(self.flops + o.flops, self.bytes + o.bytes)


def _linear(tokens: int, n_in: int, n_out: int, b: int) -> Cost:
    """``tokens`` rows through an ``n_in x n_out`` weight: read weight and input, write output."""
    return Cost(2 * tokens * n_in * n_out, b * (n_in * n_out + tokens * (n_in + n_out)))


def _attention(pairs: int, heads: int, qk_dim: int, v_dim: int, q_tokens: int, kv_tokens: int, kv_heads: int, b: int) -> Cost:
    """``pairs`` query-key pairs per head: q.k over ``qk_dim`` and weights x values over ``v_dim``."""
    flops = 2 * pairs * heads * (qk_dim + v_dim)
    moved = b * (q_tokens * heads * (qk_dim + v_dim) + kv_tokens * kv_heads * (qk_dim + v_dim))
    return Cost(flops, moved)


def vision_cost(arch: Arch, grid: tuple[int, int], dtype_bytes: int = 2) -> Cost:
    """Vision encoder for one image whose merged-token grid is ``grid``."""
    v, b = arch.vision, dtype_bytes
    m2 = v.merge * v.merge
    n = grid[0] * grid[1]
    patches = n * m2
    c = _linear(patches, v.in_channels * v.temporal_patch * v.patch * v.patch, v.hidden, b)
    d = v.hidden // v.heads
    win_pairs = sum((l * m2) ** 2 for l in window_lengths(grid, v.window_merged))
    for blk in range(v.depth):
        c += _linear(patches, v.hidden, 3 * v.hidden, b) + _linear(patches, v.hidden, v.hidden, b)
        pairs = patches * patches if blk in v.fullatt_blocks else win_pairs
        c += _attention(pairs, v.heads, d, d, patches, patches, v.heads, b)
        c += _linear(patches, v.hidden, 2 * v.intermediate, b) + _linear(patches, v.intermediate, v.hidden, b)
    c += _linear(n, m2 * v.hidden, m2 * v.hidden, b) + _linear(n, m2 * v.hidden, v.out_hidden, b)
    return c


def _layer_linear(t: TextArch, tokens: int, b: int) -> Cost:
    return (
        _linear(tokens, t.hidden, t.heads * t.d, b)
        + _linear(tokens, t.hidden, 2 * t.kv_heads * t.d, b)
        + _linear(tokens, t.heads * t.d, t.hidden, b)
        + _linear(tokens, t.hidden, 2 * t.intermediate, b)
        + _linear(tokens, t.intermediate, t.hidden, b)
    )


def llm_layer_prefill(t: TextArch, seq: int, b: int) -> Cost:
    """One decoder layer over a fresh causal sequence of ``seq`` tokens, its keys and values written."""
    c = _layer_linear(t, seq, b)
    c += _attention(seq * (seq + 1) // 2, t.heads, t.d, t.d, seq, seq, t.kv_heads, b)
    return c + Cost(0, b * 2 * seq * t.kv_heads * t.d)


def head_cost(t: TextArch, b: int) -> Cost:
    """Final norm + lm_head on the last position."""
    return _linear(1, t.hidden, t.vocab, b)


def glimpse_cost(arch: Arch, n_visual: int, b: int) -> Cost:
    """What the glimpse adds besides its extra sequence position: glimpse embeddings (``le_proj``
    at each used layer of ``le_layers``) and its query against the image keys at ``selected_layers``."""
    t, g = arch.text, arch.glimpse
    used = [l for l in g.le_layers if l <= g.reduce_layer]
    c = Cost()
    for _ in used:
        c += _linear(g.le_length, t.hidden, t.hidden, b)
    for _ in g.selected_layers:
        c += _linear(1, t.hidden, t.heads * t.d, b)  # the glimpse query, recomputed
        c += Cost(2 * n_visual * t.heads * t.d, b * n_visual * t.kv_heads * t.d)  # q.k over image keys
    return c


def vip_cost(arch: Arch, grid: tuple[int, int], b: int) -> Cost:
    """AttnFuserV1/V2 on one image's ``n`` merged tokens."""
    g, t, v = arch.glimpse, arch.text, arch.vision
    n = grid[0] * grid[1]
    cond = g.cond if g.visual_cond else 0
    qk, f = g.fuse + cond, g.fuse
    c = _linear(n, len(g.selected_layers) * t.heads, f, b)
    pairs = n * n if g.global_attn else sum(l * l for l in window_lengths(grid, v.window_merged))
    for _ in range(g.vip_layers):
        if cond:
            c += _linear(n, v.hidden, cond, b)
        c += _linear(n, qk, 2 * qk, b) + _linear(n, f, f, b) + _linear(n, f, f, b)  # q,k | v | o
        c += _attention(pairs, g.fuse_heads, qk // g.fuse_heads, f // g.fuse_heads, n, n, g.fuse_heads, b)
        c += _linear(n, f, 4 * f, b) + _linear(n, 2 * f, f, b)  # gate+up | down
    return c + _linear(n, f, 1, b)


def kv_bytes(arch: Arch, tokens: int, dtype_bytes: int = 2) -> int:
    t = arch.text
    return 2 * t.layers * t.kv_heads * t.d * tokens * dtype_bytes


def kept_count(n_visual: int, kept: float | int) -> int:
    """Kept image tokens: an int is a count; a float in [0, 1] a fraction, floored like
    ``max_remain_ratio`` (top ``int(f * n)``), at least 1."""
    if isinstance(kept, int) and not isinstance(kept, bool):
        return kept
    return max(1, int(kept * n_visual)) if kept < 1.0 else n_visual


@dataclass
class PrefillCost:
    """One prefill: parts in the order the engine runs them (zero where a mode has no such part)."""

    mode: str
    n_visual: int
    kept: int
    text_tokens: int
    vision: Cost = field(default_factory=Cost)
    layers_full: Cost = field(default_factory=Cost)  # 0..K (baseline: all layers)
    glimpse: Cost = field(default_factory=Cost)
    vip: Cost = field(default_factory=Cost)
    layers_pruned: Cost = field(default_factory=Cost)  # K+1..L-1
    head: Cost = field(default_factory=Cost)
    kv_bytes: int = 0
    kv_tokens: int = 0

    @property
    def llm(self) -> Cost:
        """What the engine times as ``prefill_s``: everything after the vision encoder."""
        return self.layers_full + self.glimpse + self.vip + self.layers_pruned + self.head

    @property
    def overhead(self) -> Cost:
        """Glimpse-only work: glimpse embeddings and row scores plus the VIP."""
        return self.glimpse + self.vip

    @property
    def total(self) -> Cost:
        return self.vision + self.llm

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items()}
        for k in ("llm", "overhead", "total"):
            d[k] = asdict(getattr(self, k))
        return d


def prefill_cost(
    arch: Arch,
    grid: tuple[int, int] | int,
    text_tokens: int,
    mode: str = "glimpse",
    kept: float | int = 1.0,
    dtype_bytes: int = 2,
) -> PrefillCost:
    """Cost of one single-image prefill. ``grid`` is the merged-token grid ``(h, w)`` or a token
    count (then the most square grid); ``text_tokens`` the prompt's non-image tokens."""
    if isinstance(grid, int):
        grid = grid_for(grid)
    t, b = arch.text, dtype_bytes
    n = grid[0] * grid[1]
    s = text_tokens + n
    out = PrefillCost(mode, n, n, text_tokens, vision=vision_cost(arch, grid, b), head=head_cost(t, b))
    if mode == "baseline":
        for _ in range(t.layers):
            out.layers_full += llm_layer_prefill(t, s, b)
    elif mode == "glimpse":
        g = arch.glimpse
        if g is None:
            raise ValueError(f"{arch.name} has no GlimpsePrune fields")
        k = min(g.reduce_layer, t.layers - 1)
        out.kept = kept_count(n, kept)
        for _ in range(k + 1):
            out.layers_full += llm_layer_prefill(t, s + g.le_length, b)
        out.glimpse = glimpse_cost(arch, n, b)
        out.vip = vip_cost(arch, grid, b)
        s_pruned = text_tokens + out.kept
        for _ in range(k + 1, t.layers):
            out.layers_pruned += llm_layer_prefill(t, s_pruned, b)
        # pruning copies the kept keys and values of layers 0..K
        out.layers_pruned += Cost(0, 2 * (k + 1) * kv_bytes(replace(arch, text=replace(t, layers=1)), s_pruned, b))
    else:
        raise ValueError(f"mode must be 'glimpse' or 'baseline', got {mode!r}")
    out.kv_tokens = text_tokens + out.kept
    out.kv_bytes = kv_bytes(arch, out.kv_tokens, b)
    return out


def decode_step_cost(arch: Arch, context: int, dtype_bytes: int = 2) -> Cost:
    """One new token with ``context`` tokens already cached: weights read once, the whole cache
    read, one entry per layer written."""
    t, b = arch.text, dtype_bytes
    c = Cost()
    for _ in range(t.layers):
        c += _layer_linear(t, 1, b)
        c += _attention(context + 1, t.heads, t.d, t.d, 1, context + 1, t.kv_heads, b)
        c += Cost(0, b * 2 * t.kv_heads * t.d)
    return c + head_cost(t, b)


# ----- summaries -------------------------------------------------------------------------------


def ratios(arch: Arch, grid: tuple[int, int] | int, text_tokens: int, kept: float | int, dtype_bytes: int = 2) -> dict:
    """Glimpse / baseline ratios for one setting: LLM prefill FLOPs and bytes, prefill incl.
    vision, KV bytes, and one decode step right after prefill."""
    base = prefill_cost(arch, grid, text_tokens, "baseline", dtype_bytes=dtype_bytes)
    gl = prefill_cost(arch, grid, text_tokens, "glimpse", kept, dtype_bytes)
    d_base = decode_step_cost(arch, base.kv_tokens, dtype_bytes)
    d_gl = decode_step_cost(arch, gl.kv_tokens, dtype_bytes)
    return {
        "n_visual": base.n_visual,
        "kept": gl.kept,
        "kept_fraction": gl.kept / base.n_visual,
        "text_tokens": text_tokens,
        "prefill_flops_ratio": gl.llm.flops / base.llm.flops,
        "prefill_bytes_ratio": gl.llm.bytes / base.llm.bytes,
        "ttft_flops_ratio": gl.total.flops / base.total.flops,
        "overhead_flops_share": gl.overhead.flops / base.llm.flops,
        "kv_ratio": gl.kv_bytes / base.kv_bytes,
        "decode_flops_ratio": d_gl.flops / d_base.flops,
        "decode_bytes_ratio": d_gl.bytes / d_base.bytes,
        "baseline_prefill_flops": base.llm.flops,
        "glimpse_prefill_flops": gl.llm.flops,
        "baseline_vision_flops": base.vision.flops,
        "baseline_kv_bytes": base.kv_bytes,
        "glimpse_kv_bytes": gl.kv_bytes,
        "baseline_decode_bytes": d_base.bytes,
        "glimpse_decode_bytes": d_gl.bytes,
    }


def param_count(arch: Arch) -> dict:
    """Weights (no biases, no norms) of the LLM, the vision encoder and the VIP, for reference."""
    t, v = arch.text, arch.vision
    layer = t.hidden * t.heads * t.d * 2 + t.hidden * 2 * t.kv_heads * t.d + 3 * t.hidden * t.intermediate
    llm = t.layers * layer + 2 * t.vocab * t.hidden
    m2 = v.merge * v.merge
    vis = (
        v.in_channels * v.temporal_patch * v.patch**2 * v.hidden
        + v.depth * (4 * v.hidden**2 + 3 * v.hidden * v.intermediate)
        + (m2 * v.hidden) ** 2
        + m2 * v.hidden * v.out_hidden
    )
    out = {"llm": llm, "vision": vis}
    g = arch.glimpse
    if g is not None:
        cond = g.cond if g.visual_cond else 0
        qk, f = g.fuse + cond, g.fuse
        out["vip"] = len(g.selected_layers) * t.heads * f + g.vip_layers * (
            (v.hidden * cond) + 2 * qk * qk + 2 * f * f + 6 * f * f
        ) + f
    return out
