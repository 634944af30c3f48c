"""GlimpsePrune fields of a modules ``config.json``, read from the published (flat) or nested layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import CheckpointError

# Defaults of the reference configuration class, used only where a config.json leaves a field out.
GP_FIELDS = (
    "le_layers", "le_length", "le_norm_type", "selected_layers", "reduce_layer",
    "use_attention_logits", "attn_fuse_type", "attn_fuse_size", "visual_cond_size",
    "attn_fuse_num_heads", "attn_fuse_hidden_act", "attn_fuse_global", "selected_visual_layers",
    "deep_supervision", "ori_attn_supervision", "reduce_threshold", "max_remain_ratio",
    "min_remain_num", "anchor_positions",
)


@dataclass(frozen=True)
class GlimpseConfig:
    """What the engine needs from a modules folder, plus the base geometry it was made for."""

    # GlimpsePrune fields
    le_layers: tuple[int, ...] = (0,)
    le_length: int = 1
    le_norm_type: str = "rmsnorm"
    selected_layers: tuple[int, ...] = ()
    reduce_layer: int = 1000
    use_attention_logits: bool = False
    attn_fuse_type: str = "AttnFuserV1"
    attn_fuse_size: int = 256
    visual_cond_size: int = 256
    attn_fuse_num_heads: int = 4
    attn_fuse_hidden_act: str = "silu"
    attn_fuse_global: bool = False
    selected_visual_layers: tuple[int, ...] = (8,)
    deep_supervision: bool = True
    ori_attn_supervision: bool = True
    reduce_threshold: float = 0.5
    max_remain_ratio: float | None = None
    min_remain_num: int = 1
    anchor_positions: tuple[str, ...] = ()
    # geometry of the base model the modules were trained on
    hidden_size: int = 0
    num_hidden_layers: int = 0
    num_attention_heads: int = 0
    num_key_value_heads: int = 0
    rms_norm_eps: float = 1e-6
    vision_hidden_size: int = 0
    vision_depth: int = 0
    spatial_merge_size: int = 2

    @classmethod
    def from_dict(cls, d: dict) -> "GlimpseConfig":
        """Accepts the published flat layout (text fields at top level) and the nested ``text_config`` one."""
        text = d.get("text_config") or d
        vision = d.get("vision_config") or {}
        kw = {k: d[k] for k in GP_FIELDS if k in d}
        for k in ("le_layers", "selected_layers", "selected_visual_layers", "anchor_positions"):
            if k in kw:
                kw[k] = tuple(kw[k] or ())
        try:
            kw.update(
                hidden_size=int(text.get("hidden_size", d.get("hidden_size", 0))),
                num_hidden_layers=int(text.get("num_hidden_layers", d.get("num_hidden_layers", 0))),
                num_attention_heads=int(text.get("num_attention_heads", d.get("num_attention_heads", 0))),
                num_key_value_heads=int(
                    text.get("num_key_value_heads")
                    or d.get("num_key_value_heads")
                    or text.get("num_attention_heads", 0)
                ),
                rms_norm_eps=float(text.get("rms_norm_eps", d.get("rms_norm_eps", 1e-6))),
                vision_hidden_size=int(vision.get("hidden_size", 0)),
                vision_depth=int(vision.get("depth", vision.get("num_hidden_layers", 0))),
                spatial_merge_size=int(vision.get("spatial_merge_size", 2)),
            )
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"modules config.json has a malformed field: {e}") from e

    def gp_dict(self) -> dict:
        """The GlimpsePrune fields alone, as written into a config.json."""
        d = asdict(self)
        return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in GP_FIELDS}

    @property
    def vip_head_dim(self) -> int:
        cond = self.visual_cond_size if self.uses_visual_cond else 0
        return (self.attn_fuse_size + cond) // self.attn_fuse_num_heads

    @property
    def uses_visual_cond(self) -> bool:
        return self.attn_fuse_type == "AttnFuserV1" and len(self.selected_visual_layers) > 0
