"""Tiny random Qwen2.5-VL models with an offline tokenizer, image processor and GlimpsePrune modules.

Everything is built in code (no hub): the real transformers class from a small config, a byte-level
BPE tokenizer trained on a few sentences with Qwen's special tokens and chat template, the PIL image
processor, and random modules in the published format. Tests and the app use these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .gpconfig import GlimpseConfig
from .prompting import QWEN_CHAT_TEMPLATE

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

CORPUS = [
    "system You are a helpful assistant.",
    "user What is in the image? Describe the picture. How many objects are there?",
    "assistant There is a red circle, a blue square and a green triangle in the top left corner.",
    "What color is the sign? What does the text say? Count the people. yes no one two three four five",
]


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512, chat_template: str = QWEN_CHAT_TEMPLATE):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained offline on ``corpus``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chat_template,
    )


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model; geometry (patch, merge) is free so tests can vary it."""

    hidden: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_hidden: int = 32
    vision_depth: int = 4
    vision_heads: int = 4
    patch_size: int = 14
    merge_size: int = 2
    max_pixels: int = 448 * 448
    reduce_layer: int = 2
    selected_layers: tuple[int, ...] = (2,)
    selected_visual_layers: tuple[int, ...] = (3, 1)
    fuse_size: int = 32
    cond_size: int = 32
    fuse_heads: int = 4
    attn_fuse_global: bool = True
    use_attention_logits: bool = True
    seed: int = 0


def tiny_config(spec: TinySpec, tokenizer):
    from transformers import Qwen2_5_VLConfig

    head_dim = spec.hidden // spec.heads
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]  # temporal, height, width; sums to head_dim / 2
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": section},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=spec.vision_depth,
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 2,
        num_heads=spec.vision_heads,
        patch_size=spec.patch_size,
        spatial_merge_size=spec.merge_size,
        temporal_patch_size=2,
        window_size=4 * spec.patch_size * spec.merge_size,
        out_hidden_size=spec.hidden,
        fullatt_block_indexes=[i for i in range(spec.vision_depth) if i % 2 == 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def tiny_image_processor(spec: TinySpec):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    factor = spec.patch_size * spec.merge_size
    return Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=spec.merge_size,
        temporal_patch_size=2,
        min_pixels=factor * factor * 4,
        max_pixels=spec.max_pixels,
    )


def tiny_glimpse_config(spec: TinySpec, base_config) -> GlimpseConfig:
    d = {
        "le_layers": list(range(spec.layers)),
        "le_length": 1,
        "le_norm_type": "rmsnorm",
        "selected_layers": list(spec.selected_layers),
        "reduce_layer": spec.reduce_layer,
        "use_attention_logits": spec.use_attention_logits,
        "attn_fuse_type": "AttnFuserV1",
        "attn_fuse_size": spec.fuse_size,
        "visual_cond_size": spec.cond_size,
        "attn_fuse_num_heads": spec.fuse_heads,
        "attn_fuse_hidden_act": "silu",
        "attn_fuse_global": spec.attn_fuse_global,
        "selected_visual_layers": list(spec.selected_visual_layers),
        "deep_supervision": False,
        "ori_attn_supervision": False,
        "reduce_threshold": 0.5,
        "max_remain_ratio": None,
        "min_remain_num": 1,
        "anchor_positions": [],
        "text_config": base_config.text_config.to_dict(),
        "vision_config": base_config.vision_config.to_dict(),
    }
    return GlimpseConfig.from_dict(d)


def calibration_image(size: tuple[int, int] = (448, 336), seed: int = 0):
    """A fixed synthetic picture: coloured blobs over a tinted gradient with some texture; the
    seed varies tint, brightness, gradient direction and noise so pictures differ like photos do."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    axis = np.linspace(0, 1, w if seed % 2 == 0 else h, dtype=np.float32)
    ramp = axis[None, :] if seed % 2 == 0 else axis[:, None]
    ramp = np.broadcast_to(ramp, (h, w))[..., None]
    tint = rng.uniform(0.2, 1.0, 3)
    level = rng.uniform(0.2, 1.0)
    noise = rng.normal(0, rng.uniform(0, 40), (h, w, 3))
    base = 255 * level * (0.3 + 0.7 * ramp) * tint + noise
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x, y = int(rng.integers(0, max(1, w - 60))), int(rng.integers(0, max(1, h - 60)))
        r = int(rng.integers(15, 60))
        draw.ellipse([x, y, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def build_tiny(spec: TinySpec = TinySpec()):
    """In-memory (model, tokenizer, image_processor) from ``spec``, seeded, float32."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = tiny_config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    config._attn_implementation = "sdpa"
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return model, tokenizer, tiny_image_processor(spec)


RANDOM_MAX_RATIO = 0.5
RANDOM_MIN_KEPT = 8
_QUESTIONS = ["What is in the image?", "Count the people.", "What color is the sign?", "What does the text say?", "Describe the picture."]
_SIZES = [(448, 336), (300, 600), (640, 360), (420, 420), (560, 280), (336, 448)]
CALIBRATION = [(_SIZES[i % len(_SIZES)], 100 + i, _QUESTIONS[i % len(_QUESTIONS)]) for i in range(24)]


def calibrate(engine, spread: float = 1.5) -> dict:
    """Make random modules prune a meaningful fraction (neither all nor nothing) on any picture.

    A random VIP's logits move mostly together per image, so a fixed threshold keeps all or none.
    On fixed synthetic pictures we take the VIP's last hidden states, remove from the output head
    the directions of the per-image means, scale it to a within-image logit spread of ``spread``
    and centre the bias on the median: about half the tokens pass at threshold 0.5 on pictures
    like these. On other pictures the offset comes back, so :func:`make_tiny` also bounds the kept
    fraction through the published config fields (``max_remain_ratio``, ``min_remain_num``).
    The rest of the modules stay random.
    """
    from .settings import GenerationSettings, RunSettings

    head = engine.modules.attn_fuser.attn_out_projs[-1]
    seen: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach().float()))
    try:
        for size, seed, question in CALIBRATION:
            engine.run([calibration_image(size, seed)], question, RunSettings("glimpse", generation=GenerationSettings(max_new_tokens=1)))
    finally:
        handle.remove()
    means = torch.stack([x.mean(0) for x in seen])  # [images, d]
    w = head.weight.detach().float()[0]
    q, _ = torch.linalg.qr(means.T)  # orthonormal basis of the per-image mean directions
    w = w - q @ (q.T @ w)
    w = w * (spread / torch.cat([(x - x.mean(0)) @ w for x in seen]).std())
    bias = -float(torch.cat([x @ w for x in seen]).median())
    with torch.no_grad():
        head.weight.copy_(w.unsqueeze(0).to(head.weight.dtype))
        head.bias.fill_(bias)
    return {"within_image_std": spread, "bias": bias}


def make_tiny(out_dir: str | Path, spec: TinySpec = TinySpec(), fmt: str = "pt") -> dict:
    """Write ``out_dir/base`` (from_pretrained-loadable model, tokenizer, image processor) and
    ``out_dir/glimpse`` (random, calibrated modules in the published format)."""
    from .checkpoints import save_modules
    from .engine import GlimpseEngine
    from .loading import BaseModel
    from .vip import GlimpseModules

    out = Path(out_dir)
    base_dir, gp_dir = out / "base", out / "glimpse"
    model, tokenizer, improc = build_tiny(spec)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    improc.save_pretrained(base_dir)
    (base_dir / "chat_template.jinja").write_text(QWEN_CHAT_TEMPLATE)
    gcfg = tiny_glimpse_config(spec, model.config)
    modules = GlimpseModules(gcfg)
    modules.init_random(seed=spec.seed + 1)
    engine = GlimpseEngine(BaseModel(model, tokenizer, improc, QWEN_CHAT_TEMPLATE, str(base_dir)), modules)
    calib = calibrate(engine)
    # random modules: keep between RANDOM_MIN_KEPT tokens and RANDOM_MAX_RATIO of them, whatever the picture
    modules.cfg = replace(gcfg, max_remain_ratio=RANDOM_MAX_RATIO, min_remain_num=RANDOM_MIN_KEPT)
    save_modules(gp_dir, modules, model.config, fmt=fmt)
    info = {"base": str(base_dir), "glimpse": str(gp_dir), "calibration": calib, "spec": spec.__dict__}
    (out / "tiny.json").write_text(json.dumps(info, indent=2, default=list))
    return info


def tiny_spec(**overrides) -> TinySpec:
    return replace(TinySpec(), **overrides)
