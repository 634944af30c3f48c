"""UI handlers called directly: streaming, drawing, re-drawing without the model, and every bad
input giving a clear gr.Error after which the next normal request still works.

The fake engine covers the handler logic in milliseconds; the tiny real engine runs the same
handlers on every odd image format and every error path."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import zlib

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from glimpse_demo import ui_view
from glimpse_demo.errors import OutOfMemory
from glimpse_demo.fake import FakeEngine
from glimpse_demo.ui import DemoUI, gpu
from glimpse_demo.ui_run import MAX_IMAGES, ModelInfo

CONTROLS = dict(threshold=0.5, ratio=1.0, max_new=64, greedy=True, temperature=0.7, top_p=0.9, seed=0,
                with_baseline=True, opacity=0.6, compare_kind="kept grid")
QUICK = dict(CONTROLS, max_new=1, with_baseline=False)
INFO = ModelInfo("tiny-random", "base", "modules")


def make_ui(engine):
    ui = DemoUI(engine, INFO)
    ui.build()
    return ui


def drain(ui, image, question="What is in the picture?", extra=None, **controls) -> tuple[dict, list[dict]]:
    """Run the handler to the end: (last value of every output by name, every update by name)."""
    names = {comp: name for name, comp in ui.c.items()}
    c = dict(CONTROLS, **controls)
    updates = []
    for upd in ui.run(image, extra, question, c["threshold"], c["ratio"], c["max_new"], c["greedy"],
                      c["temperature"], c["top_p"], c["seed"], c["with_baseline"], c["opacity"], c["compare_kind"]):
        updates.append({names[k]: v for k, v in upd.items()})
    final = {}
    for u in updates:
        final.update(u)
    return final, updates


def save(img: Image.Image, path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


@pytest.fixture
def photo(tmp_path, scene):
    return save(scene, tmp_path / "scene.png")


@pytest.fixture(scope="module")
def fake_ui():
    return make_ui(FakeEngine())


# ----- the normal path, fake engine ---------------------------------------------------------------


def test_run_streams_tokens_then_draws_everything(fake_ui, photo):
    final, updates = drain(fake_ui, photo)
    glimpse_steps = [u["ans_g"] for u in updates if "ans_g" in u]
    assert len(set(glimpse_steps)) > 3  # token by token, not one block at the end
    assert final["ans_g"] == "A red circle near the top left corner."
    assert final["ans_b"] == "A red circle in the top left corner of the picture."
    (heat, cap_h), = final["heat"]
    (grid, cap_g), = final["grid"]
    last = final["state"]
    assert grid.size == last.views[0].size and heat.height == grid.height + ui_view.viz.LEGEND_H
    r = last.images[0]
    assert cap_g.startswith(f"{r.kept_tokens}/{r.total_tokens} kept")
    original, overlay = final["compare"]
    assert original.size == overlay.size == grid.size
    assert "GlimpsePrune kept" in final["kept"]
    assert "| visual tokens kept |" in final["metrics_md"] and "baseline" in final["metrics_md"]
    assert {t.name for t in final["metrics_plot"].data} == {"GlimpsePrune", "baseline"}
    assert final["hist"].layout.shapes[0].x0 == 0.5


def test_downloads_hold_the_overlay_and_the_run(fake_ui, photo):
    final, _ = drain(fake_ui, photo)
    png, js = (b.value["path"] if isinstance(b.value, dict) else b.value for b in (final["dl_png"], final["dl_json"]))
    assert final["dl_png"].interactive and final["dl_json"].interactive
    r = final["state"].images[0]
    assert Image.open(png).size == r.image_size  # full model resolution, not the display copy
    data = json.loads(open(js).read())
    g = data["runs"]["glimpse"]
    assert g["keep_mask"] == r.keep_mask.int().tolist() and len(g["importance"]) == r.grid[0]
    assert set(g["timings"]) >= {"vision_s", "prefill_s", "ttft_s", "decode_tokens_per_s", "total_s"}
    assert g["settings"]["prune"]["threshold"] == 0.5 and data["runs"]["baseline"]["keep_mask"] is None


def test_baseline_is_optional(fake_ui, photo):
    final, _ = drain(fake_ui, photo, with_baseline=False)
    assert final["ans_b"] == "(baseline run switched off)"
    assert "baseline" not in final["metrics_md"]


def test_without_modules_only_the_baseline_runs(photo):
    final, _ = drain(make_ui(FakeEngine(with_modules=False)), photo)
    assert "baseline only" in final["ans_g"] and final["ans_b"]
    assert "every visual token is kept" in final["kept"]


def test_a_real_engine_without_modules_runs_the_baseline_only(engine, small_photo):
    from glimpse_demo.engine import GlimpseEngine

    final, _ = drain(make_ui(GlimpseEngine(engine.base, None)), small_photo, **QUICK)
    assert "baseline only" in final["ans_g"] and "baseline" in final["metrics_md"]
    assert final["grid"] and final["dl_json"].interactive


def test_every_image_of_the_prompt_is_drawn(fake_ui, photo, tmp_path):
    other = save(Image.new("RGB", (300, 120), "navy"), tmp_path / "b.png")
    final, _ = drain(fake_ui, photo, extra=[other])
    assert len(final["heat"]) == len(final["grid"]) == 2
    assert final["grid"][1][1].startswith("image 2:")
    assert final["compare_idx"].visible


def test_redraw_uses_the_last_probabilities_without_the_model(photo):
    engine = FakeEngine()
    ui = make_ui(engine)
    final, _ = drain(ui, photo)
    last, calls = final["state"], engine.calls
    kept_run = last.images[0].kept_tokens
    names = {comp: name for name, comp in ui.c.items()}

    def redraw(threshold, ratio):
        out = ui.redraw(last, threshold, ratio, 0.6, "kept grid", 1)
        return {names[k]: v for k, v in out.items()}

    low = redraw(0.05, 1.0)
    assert engine.calls == calls
    total = last.images[0].total_tokens
    kept_low = int(low["kept"].split("**Predicted kept visual tokens: ")[1].split(" /")[0])
    assert kept_run < kept_low <= total and "press **Run**" in low["kept"]
    capped = redraw(0.05, 0.1)
    assert f"{int(0.1 * total)} / {total}" in capped["kept"]
    assert capped["hist"].layout.shapes[0].x0 == 0.05
    assert ui.redraw(None, 0.5, 1.0, 0.6, "kept grid", 1) == {}  # nothing run yet: nothing to draw


def test_the_compare_slider_can_show_the_importance_map(fake_ui, photo):
    final, _ = drain(fake_ui, photo, compare_kind="importance map", opacity=1.0)
    original, overlay = final["compare"]
    assert original.size == overlay.size
    assert not np.array_equal(np.asarray(original), np.asarray(overlay))


def test_runs_share_one_model_queue_and_redraws_do_not_wait_for_it():
    demo = DemoUI(FakeEngine(), INFO).build()
    fns = {fn.name: fn for fn in demo.fns.values()}
    assert (fns["run"].concurrency_id, fns["run"].concurrency_limit, fns["run"].trigger_mode) == ("model", 1, "once")
    assert fns["redraw"].concurrency_id != "model" and fns["redraw"].trigger_mode == "always_last"
    assert {t[1] for t in fns["run"].targets} == {"click", "submit"}


def test_gpu_decorator_is_a_no_op_without_spaces():
    try:
        import spaces  # noqa: F401
    except ImportError:
        def f():
            return 1

        assert gpu(f) is f
    else:
        pytest.skip("the spaces package is installed here")


def test_the_gpu_part_takes_and_yields_picklable_values(real_ui, small_photo):
    """On a ZeroGPU Space the decorated call runs in another process: its arguments and every value
    it yields cross a pickle boundary."""
    import pickle

    from glimpse_demo.ui_run import open_inputs, settings_from_controls

    args = (open_inputs(real_ui.engine, small_photo), "What?", settings_from_controls(0.5, 1.0, 2, True, 1.0, 1.0, 0), True)
    pickle.dumps(args)
    snaps = [pickle.loads(pickle.dumps(s)) for s in real_ui.stream(*args)]
    assert snaps[-1].stage == "baseline-done" and snaps[-1].results["glimpse"].images[0].keep_mask is not None


def test_banner_says_when_the_model_is_not_real():
    assert "random weights" in ui_view.banner(ModelInfo("tiny-random", "b", "m"))
    assert "synthetic" in ui_view.banner(ModelInfo("toy", "b", "m"))
    for kind in ("tiny-random", "toy"):
        assert "--base-model Qwen/Qwen2.5-VL" in ui_view.banner(ModelInfo(kind, "b", "m"))
    real = ui_view.banner(ModelInfo("custom", "Qwen/Qwen2.5-VL-7B-Instruct", "ashun989/GlimpsePrune_Qwen2.5-VL-7B-Instruct"))
    assert "⚠️" not in real and "Qwen2.5-VL-7B-Instruct" in real


def test_the_explainer_gives_this_models_layer_k_and_cell_size(tiny_dir):
    from glimpse_demo.ui_run import load_engine

    engine, info = load_engine(str(tiny_dir / "base"), str(tiny_dir / "glimpse"), device="cpu")
    assert (info.kind, info.reduce_layer, info.layers, info.cell_px) == ("tiny", engine.gp.reduce_layer, 4, 28)
    text = ui_view.explainer(info)
    assert "layer K = 2 (counting from 0) of 4 decoder layers" in text and "28x28 pixels" in text
    assert "glimpse token" in text.lower() and "VIP" in text and "key/value cache" in text
    assert "This model" not in ui_view.explainer(ModelInfo("custom", "b", None))


def test_views_do_not_import_gradio():
    code = ("import sys; import glimpse_demo.engine, glimpse_demo.ui_view, glimpse_demo.ui_run, glimpse_demo.fake; "
            "assert 'gradio' not in sys.modules, 'gradio was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----- bad input, real tiny engine ----------------------------------------------------------------


def _bomb_png(w=40_000, h=40_000) -> bytes:
    """A PNG whose header claims w x h pixels, with almost no data behind it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def _truncated_jpeg(scene) -> bytes:
    buf = io.BytesIO()
    scene.save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 3]


BAD_FILES = {  # name -> (bytes maker, words the message must contain)
    "corrupt": (lambda s: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a readable image"),
    "truncated": (_truncated_jpeg, "corrupt or truncated"),
    "not-an-image": (lambda s: b"hello, world\n", "not a readable image"),
    "empty-file": (lambda s: b"", "not a readable image"),
    "decompression-bomb": (lambda s: _bomb_png(), "not a readable image"),
}


@pytest.fixture(scope="module")
def real_ui(engine):
    return make_ui(engine)


@pytest.fixture
def small_photo(tmp_path, scene):
    return save(scene.resize((84, 56)), tmp_path / "small.png")


def assert_next_request_works(ui, photo):
    final, _ = drain(ui, photo, **QUICK)
    assert final["grid"] and final["dl_json"].interactive


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_gives_a_clear_error_then_the_app_still_serves(real_ui, tmp_path, scene, small_photo, name):
    make, words = BAD_FILES[name]
    path = tmp_path / f"{name}.png"
    path.write_bytes(make(scene))
    with pytest.raises(gr.Error, match=re.escape(words)):
        drain(real_ui, str(path), **QUICK)
    assert_next_request_works(real_ui, small_photo)


BAD_REQUESTS = {  # name -> (handler arguments, words the message must contain)
    "no-image": (dict(image=None), "no image was given"),
    "empty-question": (dict(question=""), "the question is empty"),
    "blank-question": (dict(question="  \n "), "the question is empty"),
    "only-special-tokens": (dict(question="<|image_pad|><|im_end|>"), "empty once special tokens are removed"),
    "long-question": (dict(question="why? " * 1000), "the limit is 4000"),
    "too-many-images": (dict(extra="many"), f"the limit is {MAX_IMAGES}"),
    "zero-new-tokens": (dict(max_new=0), "max_new_tokens must be >= 1"),
    "fractional-new-tokens": (dict(max_new=2.5), "whole number"),
    "zero-temperature-sampling": (dict(greedy=False, temperature=0.0), "temperature must be > 0"),
    "threshold-out-of-range": (dict(threshold=1.5), "threshold must be in [0, 1]"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gives_a_clear_error_then_the_app_still_serves(real_ui, small_photo, name):
    args, words = BAD_REQUESTS[name]
    kw = dict(QUICK, image=small_photo)
    kw.update(args)
    if kw.get("extra") == "many":
        kw["extra"] = [small_photo] * MAX_IMAGES
    with pytest.raises(gr.Error, match=re.escape(words)):
        drain(real_ui, **kw)
    assert_next_request_works(real_ui, small_photo)


def _exotic(kind: str, scene: Image.Image, tmp) -> str:
    if kind == "cmyk":
        return save(scene.convert("CMYK"), tmp / "cmyk.jpg")
    if kind == "16-bit":
        a = np.asarray(scene.convert("L"), dtype=np.uint16) * 257
        img = Image.fromarray(a)
        assert img.mode == "I;16"
        return save(img, tmp / "16bit.png")
    if kind == "palette":
        return save(scene.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), tmp / "palette.png")
    if kind == "alpha":
        rgba = scene.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(scene.size))
        return save(rgba, tmp / "alpha.png")
    if kind == "grey-alpha":
        return save(scene.convert("LA"), tmp / "la.png")
    if kind == "animated":
        frames = [scene, scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
        return save(frames[0], tmp / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    if kind == "exif-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
        return save(scene, tmp / "exif.jpg", exif=exif)
    if kind == "1x1":
        return save(Image.new("RGB", (1, 1), "red"), tmp / "one.png")
    if kind == "gigantic":
        return save(scene.resize((6000, 4500), Image.Resampling.NEAREST), tmp / "big.jpg", quality=60)
    raise ValueError(kind)


EXOTIC = ["cmyk", "16-bit", "palette", "alpha", "grey-alpha", "animated", "exif-rotated", "1x1", "gigantic"]


@pytest.mark.parametrize("kind", EXOTIC)
def test_odd_but_valid_images_run(real_ui, engine, scene, tmp_path, kind):
    final, _ = drain(real_ui, _exotic(kind, scene, tmp_path), **QUICK)
    r = final["state"].images[0]
    _, max_pixels = 28, engine.base.image_processor.size["longest_edge"]
    assert r.image_size[0] * r.image_size[1] <= max_pixels
    if kind == "exif-rotated":  # the picture was turned upright: portrait now
        assert r.image_size[1] > r.image_size[0]
    assert final["dl_png"].interactive


def test_out_of_memory_is_reported_and_the_next_request_works(real_ui, engine, small_photo, monkeypatch):
    real_step = engine._decode_step
    calls = {"n": 0}

    def fail_once(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(*a, **kw)

    monkeypatch.setattr(engine, "_decode_step", fail_once)
    with pytest.raises(gr.Error, match="out of memory"):
        drain(real_ui, small_photo, **dict(QUICK, max_new=3))
    assert_next_request_works(real_ui, small_photo)


@pytest.mark.parametrize("error, words", [
    (OutOfMemory("out of memory on cuda: try a smaller image"), "out of memory on cuda"),
    (MemoryError(), "out of memory"),
    (RuntimeError("boom"), "something went wrong \\(RuntimeError\\)"),
])
def test_failures_mid_stream_become_messages(photo, error, words):
    engine = FakeEngine()
    ui = make_ui(engine)
    engine.fail_after_prefill = error
    with pytest.raises(gr.Error, match=words):
        drain(ui, photo)
    final, _ = drain(ui, photo)
    assert final["ans_b"]


def test_closing_a_run_stops_the_engine_thread(photo):
    import threading

    from glimpse_demo.settings import RunSettings
    from glimpse_demo.ui_run import stream_pair

    gen = stream_pair(FakeEngine(), [photo], "What?", RunSettings(), with_baseline=True)
    assert next(gen).stage == "glimpse-prefill"
    gen.close()  # the user left mid-answer
    assert not any(t.name == "glimpse-run" for t in threading.enumerate())


@pytest.mark.parametrize("question", ["", "x" * 4001])
def test_question_mistakes_fail_before_any_output_changes(fake_ui, photo, question):
    c = CONTROLS
    gen = fake_ui.run(photo, None, question, c["threshold"], c["ratio"], c["max_new"], c["greedy"], c["temperature"],
                      c["top_p"], c["seed"], c["with_baseline"], c["opacity"], c["compare_kind"])
    with pytest.raises(gr.Error, match="question"):
        next(gen)  # raised before the first update: the last run's pictures stay on screen
