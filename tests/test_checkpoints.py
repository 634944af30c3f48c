"""Modules folders: round trips in both formats, the published layout, clear refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from glimpse_demo.checkpoints import PT_NAME, load_modules, save_modules
from glimpse_demo.engine import GlimpseEngine
from glimpse_demo.errors import CheckpointError
from glimpse_demo.settings import GenerationSettings, RunSettings

ONE = GenerationSettings(max_new_tokens=4)


def _same_outputs(engine, modules, scene):
    other = GlimpseEngine(engine.base, modules)
    a = engine.run([scene], "What is here?", RunSettings("glimpse", generation=ONE))
    b = other.run([scene], "What is here?", RunSettings("glimpse", generation=ONE))
    assert torch.equal(a.images[0].importance, b.images[0].importance)
    assert a.generated_ids == b.generated_ids


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_round_trip(engine, scene, tmp_path, fmt):
    save_modules(tmp_path / fmt, engine.modules, engine.model.config, fmt=fmt)
    cfg = json.loads((tmp_path / fmt / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_5_vl_gp"
    assert cfg["reduce_layer"] == engine.gp.reduce_layer and cfg["hidden_size"] == engine.gp.hidden_size
    gcfg, modules = load_modules(tmp_path / fmt, engine.model.config)
    assert gcfg == engine.gp
    _same_outputs(engine, modules, scene)


def test_published_layout_loads(engine, scene, tmp_path):
    """A flat config as the reference release writes it, deep supervision heads, rotary buffers."""
    folder = tmp_path / "published"
    save_modules(folder, engine.modules, engine.model.config)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("text_config")  # the release's config is flat: text fields at top level only
    cfg["deep_supervision"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    state = torch.load(folder / PT_NAME, weights_only=True)
    fuser = state["attn_fuser"]
    last = len(engine.gp.selected_visual_layers) - 1
    for i in range(last):  # deep supervision adds an output head to every layer; only the last is used
        fuser[f"attn_out_projs.{i}.weight"] = torch.randn(1, engine.gp.attn_fuse_size)
        fuser[f"attn_out_projs.{i}.bias"] = torch.randn(1)
    fuser["rotary_pos_emb.inv_freq"] = torch.ones(4)
    torch.save(state, folder / PT_NAME)
    _, modules = load_modules(folder, engine.model.config)
    _same_outputs(engine, modules, scene)


def _copy(engine, tmp_path):
    folder = tmp_path / "mods"
    save_modules(folder, engine.modules, engine.model.config)
    return folder


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("hidden_size", 128, "hidden_size is 128"),
        ("num_hidden_layers", 6, "num_hidden_layers is 6"),
        ("num_attention_heads", 8, "num_attention_heads is 8"),
        ("reduce_layer", 9, "reduce_layer 9"),
        ("selected_layers", [3], "selected_layers [3]"),
        ("le_layers", [0, 7], "le_layers [0, 7]"),
        ("selected_visual_layers", [31], "selected_visual_layers [31]"),
    ],
)
def test_mismatch_names_the_field(engine, tmp_path, field, value, expected):
    folder = _copy(engine, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    if "text_config" in cfg and field in cfg["text_config"]:
        cfg["text_config"][field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_modules(folder, engine.model.config)


def test_vision_width_mismatch(engine, tmp_path):
    folder = _copy(engine, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["vision_config"]["hidden_size"] = 1280
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="vision hidden_size is 1280"):
        load_modules(folder, engine.model.config)


def test_wrong_tensor_shapes_are_named(engine, tmp_path):
    folder = _copy(engine, tmp_path)
    state = torch.load(folder / PT_NAME, weights_only=True)
    state["attn_fuser"]["attn_in_proj.weight"] = torch.zeros(3, 3)
    torch.save(state, folder / PT_NAME)
    with pytest.raises(CheckpointError, match="attn_fuser does not match.*attn_in_proj.weight"):
        load_modules(folder, engine.model.config)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_non_tensor_pickle_is_refused(engine, tmp_path, capsys):
    folder = _copy(engine, tmp_path)
    state = torch.load(folder / PT_NAME, weights_only=True)
    state["attn_fuser"] = Payload()
    torch.save(state, folder / PT_NAME)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_modules(folder, engine.model.config)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "breakage,expected",
    [
        ("no_config", "no config.json"),
        ("bad_json", "not valid JSON"),
        ("no_weights", "neither new_modules_gp.pt"),
        ("missing_key", "lacks le_proj"),
    ],
)
def test_broken_folders(engine, tmp_path, breakage, expected):
    folder = _copy(engine, tmp_path)
    if breakage == "no_config":
        (folder / "config.json").unlink()
    elif breakage == "bad_json":
        (folder / "config.json").write_text("{not json")
    elif breakage == "no_weights":
        (folder / PT_NAME).unlink()
    else:
        state = torch.load(folder / PT_NAME, weights_only=True)
        del state["le_proj"]
        torch.save(state, folder / PT_NAME)
    with pytest.raises(CheckpointError, match=expected):
        load_modules(folder, engine.model.config)


def test_missing_folder_and_base_model_folder(engine, tiny_dir, tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        load_modules(tmp_path / "nowhere", engine.model.config)
    # a base model folder is not a modules folder
    with pytest.raises(CheckpointError, match="looks like a base model folder"):
        load_modules(tiny_dir / "base", engine.model.config)


def test_base_loader_refuses_a_modules_folder(tiny_dir, tmp_path):
    from glimpse_demo.loading import load_base

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_base(str(empty), device="cpu")
    shutil.copytree(tiny_dir / "glimpse", tmp_path / "g")
    with pytest.raises(CheckpointError):
        load_base(str(tmp_path / "g"), device="cpu")


def test_hub_ids_fail_offline_with_a_clear_message(engine, monkeypatch):
    from glimpse_demo.loading import load_base

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not fetch ashun989/GlimpsePrune_Qwen2.5-VL-7B-Instruct"):
        load_modules("ashun989/GlimpsePrune_Qwen2.5-VL-7B-Instruct", engine.model.config)
    with pytest.raises(CheckpointError, match="could not fetch Qwen/Qwen2.5-VL-3B-Instruct"):
        load_base("Qwen/Qwen2.5-VL-3B-Instruct", device="cpu")
