"""Published GlimpsePrune modules folders: resolve, read, check against a base model, save.

A folder holds ``config.json`` (base config + GlimpsePrune fields, ``model_type: qwen2_5_vl_gp``)
and ``new_modules_gp.pt`` (a dict of state dicts, read with ``weights_only=True`` only) or,
when written by this project on request, ``new_modules_gp.safetensors`` (flat keys).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import torch

from .errors import CheckpointError
from .gpconfig import GlimpseConfig
from .vip import GlimpseModules

log = logging.getLogger(__name__)

PT_NAME = "new_modules_gp.pt"
ST_NAME = "new_modules_gp.safetensors"
MODULE_KEYS = ("attn_fuser", "learnable_embeddings", "le_proj", "le_norm")


def resolve_folder(id_or_dir: str | os.PathLike, patterns: list[str]) -> Path:
    """A local folder as is; otherwise a hub id fetched through the hub cache (offline: a clear error)."""
    p = Path(id_or_dir).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p} is a file, not a folder")
    text = str(id_or_dir)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise CheckpointError(f"{text}: no such folder, and not a hub id of the form owner/name")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=patterns))
    except Exception as e:  # hub errors are many; the user needs one sentence
        raise CheckpointError(f"could not fetch {text} from the Hugging Face hub ({type(e).__name__}: {e})") from e


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: not a GlimpsePrune modules folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


def read_state(folder: Path) -> dict:
    """The modules' tensors as ``{"attn_fuser": {...}, "learnable_embeddings": T, ...}``."""
    st, pt = folder / ST_NAME, folder / PT_NAME
    if st.is_file():
        from safetensors.torch import load_file

        flat = load_file(str(st))
        state: dict = {}
        for key, t in flat.items():
            top, _, rest = key.partition(".")
            if rest:
                state.setdefault(top, {})[rest] = t
            else:
                state[top] = t
        return state
    if pt.is_file():
        try:
            state = torch.load(pt, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"{pt} holds objects other than tensors; refusing to unpickle it (weights_only=True): "
                f"{str(e).splitlines()[0]}"
            ) from e
        except Exception as e:
            raise CheckpointError(f"{pt} could not be read: {type(e).__name__}: {e}") from e
        if not isinstance(state, dict):
            raise CheckpointError(f"{pt} holds a {type(state).__name__}, expected a dict of state dicts")
        return state
    raise CheckpointError(f"{folder} has neither {PT_NAME} nor {ST_NAME}")


def check_against_base(cfg: GlimpseConfig, base) -> None:
    """Fail with a message naming the first mismatch between modules and base model configs."""
    text, vision = base.text_config, base.vision_config
    pairs = [
        ("hidden_size", cfg.hidden_size, text.hidden_size),
        ("num_hidden_layers", cfg.num_hidden_layers, text.num_hidden_layers),
        ("num_attention_heads", cfg.num_attention_heads, text.num_attention_heads),
        ("num_key_value_heads", cfg.num_key_value_heads, text.num_key_value_heads),
        ("vision hidden_size", cfg.vision_hidden_size, vision.hidden_size),
        ("vision depth", cfg.vision_depth, vision.depth),
        ("vision spatial_merge_size", cfg.spatial_merge_size, vision.spatial_merge_size),
    ]
    for name, mine, theirs in pairs:
        if mine and mine != theirs:
            raise CheckpointError(
                f"modules do not fit this base model: {name} is {mine} in the modules' config "
                f"but {theirs} in the base model"
            )
    n_layers, depth = text.num_hidden_layers, vision.depth
    if not 0 <= cfg.reduce_layer < n_layers:
        raise CheckpointError(f"reduce_layer {cfg.reduce_layer} is outside the base model's {n_layers} layers")
    bad = [l for l in cfg.selected_layers if not 0 <= l <= cfg.reduce_layer]
    if bad or not cfg.selected_layers:
        raise CheckpointError(f"selected_layers {list(cfg.selected_layers)} must be non-empty and within 0..reduce_layer={cfg.reduce_layer}")
    bad = [l for l in cfg.le_layers if not 0 <= l < n_layers]
    if bad or 0 not in cfg.le_layers:
        raise CheckpointError(f"le_layers {list(cfg.le_layers)} must include 0 and lie within 0..{n_layers - 1}")
    bad = [l for l in cfg.selected_visual_layers if not 0 <= l < depth]
    if bad or not cfg.selected_visual_layers:
        raise CheckpointError(f"selected_visual_layers {list(cfg.selected_visual_layers)} must be non-empty and within 0..{depth - 1}")
    if cfg.le_length < 1:
        raise CheckpointError(f"le_length must be >= 1, got {cfg.le_length}")


def build_modules(cfg: GlimpseConfig, state: dict) -> GlimpseModules:
    try:
        modules = GlimpseModules(cfg)
    except ValueError as e:
        raise CheckpointError(f"modules config is not supported: {e}") from e
    missing = [k for k in MODULE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"modules file lacks {', '.join(missing)}")
    le = state["learnable_embeddings"]
    if not isinstance(le, torch.Tensor) or tuple(le.shape) != tuple(modules.learnable_embeddings.shape):
        got = tuple(le.shape) if isinstance(le, torch.Tensor) else type(le).__name__
        raise CheckpointError(
            f"learnable_embeddings has shape {got}, expected {tuple(modules.learnable_embeddings.shape)} "
            f"([len(le_layers), le_length, hidden_size])"
        )
    with torch.no_grad():
        modules.learnable_embeddings.copy_(le)
    for name in ("attn_fuser", "le_proj", "le_norm"):
        sub = state[name]
        if not isinstance(sub, dict):
            raise CheckpointError(f"{name} is a {type(sub).__name__}, expected a state dict")
        # rotary inverse frequencies are derived, never learned; older saves may carry them
        sub = {k: v for k, v in sub.items() if not k.endswith("inv_freq")}
        try:
            getattr(modules, name).load_state_dict(sub, strict=True)
        except RuntimeError as e:
            first = " ".join(str(e).split())[:600]
            raise CheckpointError(f"{name} does not match the modules' config: {first}") from e
    return modules


def load_modules(id_or_dir: str | os.PathLike, base_config=None) -> tuple[GlimpseConfig, GlimpseModules]:
    """Read a published modules folder (local or hub id), checked against ``base_config`` if given."""
    folder = resolve_folder(id_or_dir, ["config.json", PT_NAME, ST_NAME])
    raw = read_config(folder)
    if "reduce_layer" not in raw or "selected_layers" not in raw:
        raise CheckpointError(
            f"{folder}/config.json has no GlimpsePrune fields (model_type {raw.get('model_type')!r}): "
            "this looks like a base model folder, not a modules folder"
        )
    cfg = GlimpseConfig.from_dict(raw)
    if base_config is not None:
        check_against_base(cfg, base_config)
    modules = build_modules(cfg, read_state(folder))
    modules.eval().requires_grad_(False)
    log.info("loaded GlimpsePrune modules from %s", folder)
    return cfg, modules


def modules_config_dict(cfg: GlimpseConfig, base_config) -> dict:
    """Full base config plus the GlimpsePrune fields, in the flat layout the published folders use."""
    d = base_config.to_dict()
    text = d.get("text_config") or {}
    flat = {k: v for k, v in text.items() if k not in ("model_type", "architectures")}
    out = {**d, **flat, **cfg.gp_dict()}
    out["model_type"] = "qwen2_5_vl_gp"
    out["architectures"] = ["Qwen2_5_VL_GP_ForConditionalGeneration"]
    return out


def save_modules(folder: str | os.PathLike, modules: GlimpseModules, base_config, fmt: str = "pt") -> Path:
    """Write ``config.json`` and the tensors (``pt``: the published format; ``safetensors``: flat keys)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(modules_config_dict(modules.cfg, base_config), indent=2))
    state = {
        "attn_fuser": {k: v.detach().cpu().contiguous() for k, v in modules.attn_fuser.state_dict().items()},
        "learnable_embeddings": modules.learnable_embeddings.detach().cpu().contiguous(),
        "le_proj": {k: v.detach().cpu().contiguous() for k, v in modules.le_proj.state_dict().items()},
        "le_norm": {k: v.detach().cpu().contiguous() for k, v in modules.le_norm.state_dict().items()},
    }
    if fmt == "pt":
        torch.save(state, folder / PT_NAME)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        flat = {"learnable_embeddings": state["learnable_embeddings"]}
        for top in ("attn_fuser", "le_proj", "le_norm"):
            flat.update({f"{top}.{k}": v for k, v in state[top].items()})
        save_file(flat, str(folder / ST_NAME))
    else:
        raise ValueError(f"unknown modules format {fmt!r} (pt or safetensors)")
    return folder
