"""The Visual token Importance Predictor (VIP) and the glimpse embeddings, as plain torch modules.

Parameter names match the published ``new_modules_gp.pt`` so its state dicts load unchanged.
Imports torch only.
"""

from __future__ import annotations

import torch
from torch import nn

from .gpconfig import GlimpseConfig

_ACTS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "gelu_pytorch_tanh": lambda: nn.GELU("tanh")}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def grid_rotary(grid_hw: list[tuple[int, int]], head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """2D rotary angles over merged-token grids, raster order: ``[N, head_dim]``.

    Half the rotary width encodes the row, half the column, like the vision encoder's rotary
    embedding built with dimension ``head_dim // 2``.
    """
    dim = head_dim // 2
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    pos = []
    for h, w in grid_hw:
        hh = torch.arange(h).unsqueeze(1).expand(h, w).flatten()
        ww = torch.arange(w).unsqueeze(0).expand(h, w).flatten()
        pos.append(torch.stack([hh, ww], dim=-1))
    pos = torch.cat(pos).float()  # [N, 2]
    angles = (pos[..., None] * inv_freq).flatten(1)  # [N, dim]
    return torch.cat([angles, angles], dim=-1)  # [N, head_dim]


class GatedMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=True)
        self.up_proj = nn.Linear(dim, hidden, bias=True)
        self.down_proj = nn.Linear(hidden, dim, bias=True)
        self.act_fn = _ACTS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


SCORE_ELEMENTS = 1 << 20  # scores held at once per head: bounds the VIP's memory at any token count


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, a block of queries at a time.

    Query/key heads are wider than value heads here, which sends torch's fused attention to its
    fallback that materialises the whole n x n score matrix (64 MiB per layer at 4096 tokens);
    chunking keeps the score block small and the result equal.
    """
    n = k.shape[1]
    chunk = max(16, SCORE_ELEMENTS // max(n, 1))
    kt = k.transpose(-1, -2) * q.shape[-1] ** -0.5
    return torch.cat([torch.softmax((c @ kt).float(), dim=-1).to(v.dtype) @ v for c in q.split(chunk, 1)], dim=1)


class CondAttention(nn.Module):
    """Queries and keys from ``[x, cond]``, values from ``x``; attention within each segment."""

    def __init__(self, dim: int, cond: int, heads: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim + cond, dim + cond, bias=False)
        self.k_proj = nn.Linear(dim + cond, dim + cond, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.num_heads = heads

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None, segments: list[int], rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        n = x.shape[0]
        qk = x if cond is None else torch.cat([x, cond], dim=-1)
        q = self.q_proj(qk).view(n, self.num_heads, -1)
        k = self.k_proj(qk).view(n, self.num_heads, -1)
        v = self.v_proj(x).view(n, self.num_heads, -1)
        cos, sin = (t.unsqueeze(-2).float() for t in rope)
        q = (q.float() * cos + _rotate_half(q.float()) * sin).to(v.dtype)
        k = (k.float() * cos + _rotate_half(k.float()) * sin).to(v.dtype)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [heads, n, d]
        # segments are contiguous in window order, so attention is block diagonal
        outs = [_attend(qs, ks, vs) for qs, ks, vs in zip(q.split(segments, 1), k.split(segments, 1), v.split(segments, 1))]
        out = torch.cat(outs, dim=1).transpose(0, 1).reshape(n, -1)
        return self.o_proj(out)


class FuserLayer(nn.Module):
    def __init__(self, dim: int, cond: int, heads: int, act: str) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim, eps=1e-6)
        self.norm2 = RMSNorm(dim, eps=1e-6)
        self.attn = CondAttention(dim, cond, heads)
        self.mlp = GatedMLP(dim, dim * 2, act)

    def forward(self, x, cond, segments, rope):
        x = x + self.attn(self.norm1(x), cond, segments, rope)
        return x + self.mlp(self.norm2(x))


class AttnFuser(nn.Module):
    """VIP: glimpse attention logits (+ vision features) -> one keep logit per merged image token.

    ``attn_fuse_type`` AttnFuserV1 conditions each layer on a vision-encoder block's features;
    AttnFuserV2 has no visual conditioning.
    """

    def __init__(self, cfg: GlimpseConfig) -> None:
        super().__init__()
        if cfg.attn_fuse_type not in ("AttnFuserV1", "AttnFuserV2"):
            raise ValueError(f"unsupported attn_fuse_type {cfg.attn_fuse_type!r} (AttnFuserV1 or AttnFuserV2)")
        self.cfg = cfg
        n_layers = len(cfg.selected_visual_layers)
        cond = cfg.visual_cond_size if cfg.uses_visual_cond else 0
        if (cfg.attn_fuse_size + cond) % cfg.attn_fuse_num_heads:
            raise ValueError("attn_fuse_size + visual_cond_size must be divisible by attn_fuse_num_heads")
        self.attn_in_proj = nn.Linear(len(cfg.selected_layers) * cfg.num_attention_heads, cfg.attn_fuse_size)
        if cfg.uses_visual_cond:
            self.cond_in_projs = nn.ModuleList(nn.Linear(cfg.vision_hidden_size, cond) for _ in range(n_layers))
        self.layers = nn.ModuleList(
            FuserLayer(cfg.attn_fuse_size, cond, cfg.attn_fuse_num_heads, cfg.attn_fuse_hidden_act)
            for _ in range(n_layers)
        )
        self.attn_out_projs = nn.ModuleList(
            nn.Linear(cfg.attn_fuse_size, 1) if (cfg.deep_supervision or i == n_layers - 1) else nn.Identity()
            for i in range(n_layers)
        )

    def forward(
        self,
        attn_logits: torch.Tensor,
        vision_features: list[torch.Tensor],
        grid_hw: list[tuple[int, int]],
        window_index: torch.Tensor,
        segments: list[int],
    ) -> torch.Tensor:
        """Keep logits, raster order.

        attn_logits: ``[N, len(selected_layers) * heads]``; vision_features: per selected vision block
        ``[N, vision_hidden]``; window_index: ``[N]`` raster -> window order permutation of the merged
        tokens; segments: lengths of the attention blocks in window order. Returns ``[N]``.
        """
        x = self.attn_in_proj(attn_logits)[window_index]
        conds = [f[window_index] for f in vision_features] if self.cfg.uses_visual_cond else []
        angles = grid_rotary(grid_hw, self.cfg.vip_head_dim).to(x.device)[window_index]
        rope = (angles.cos(), angles.sin())
        for i, layer in enumerate(self.layers):
            cond = self.cond_in_projs[i](conds[i]) if conds else None
            x = layer(x, cond, segments, rope)
        logits = self.attn_out_projs[-1](x).squeeze(-1)
        return logits[torch.argsort(window_index)]


class GlimpseModules(nn.Module):
    """Everything a modules folder holds: VIP plus glimpse embeddings (``learnable_embeddings``,
    ``le_proj``, ``le_norm``)."""

    def __init__(self, cfg: GlimpseConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attn_fuser = AttnFuser(cfg)
        self.learnable_embeddings = nn.Parameter(torch.zeros(len(cfg.le_layers), cfg.le_length, cfg.hidden_size))
        self.le_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        if cfg.le_norm_type == "rmsnorm":
            self.le_norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        elif cfg.le_norm_type == "layernorm":
            self.le_norm = nn.LayerNorm(cfg.hidden_size)
        else:
            raise ValueError(f"unsupported le_norm_type {cfg.le_norm_type!r} (rmsnorm or layernorm)")

    def glimpse_embedding(self, layer: int) -> torch.Tensor | None:
        """``[le_length, hidden]`` added at the input of ``layer``, or None if that layer has none."""
        if layer not in self.cfg.le_layers:
            return None
        e = self.learnable_embeddings[self.cfg.le_layers.index(layer)]
        return self.le_norm(self.le_proj(e)).to(e.dtype)

    def init_random(self, seed: int = 0, std: float = 0.02) -> None:
        """Initialise like the reference trainer: normal embeddings, Xavier projections, unit norms."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name == "learnable_embeddings":
                    p.copy_(torch.randn(p.shape, generator=g) * std)
                elif "norm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif p.dim() == 2:
                    bound = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
                else:
                    p.zero_()
