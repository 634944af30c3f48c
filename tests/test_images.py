"""Odd and broken images: a clear InputError or a normal answer, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from glimpse_demo.errors import InputError
from glimpse_demo.images import open_image
from glimpse_demo.settings import GenerationSettings, RunSettings

ONE = RunSettings("glimpse", generation=GenerationSettings(max_new_tokens=1))


def _png(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def rgb(w=120, h=90, seed=0):
    a = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a)


def exif_rotated() -> bytes:
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    return _png(img, format="JPEG", exif=exif.tobytes())


def animated() -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


ODD = {
    "cmyk": lambda: rgb().convert("CMYK"),
    "16bit": lambda: Image.fromarray((np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)),
    "16bit_png": lambda: _png(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))),
    "alpha": lambda: rgb().convert("RGBA"),
    "palette": lambda: rgb().convert("P"),
    "palette_transparency": lambda: _png(rgb().convert("P"), transparency=0),
    "grey_alpha": lambda: rgb().convert("LA"),
    "bilevel": lambda: rgb().convert("1"),
    "animated": animated,
    "exif_rotated": exif_rotated,
    "one_pixel": lambda: Image.new("RGB", (1, 1), (10, 200, 30)),
    "float_array": lambda: np.random.default_rng(0).random((40, 50, 3)),
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_images_open_as_rgb(name):
    img = open_image(ODD[name]())
    assert img.mode == "RGB" and img.width >= 1 and img.height >= 1


def test_exif_orientation_is_applied():
    assert open_image(exif_rotated()).size == (100, 200)


def test_animated_takes_the_first_frame():
    r, g, _ = open_image(animated()).getpixel((5, 5))
    assert r > 200 and g < 50  # red first frame, not the green second one


def test_alpha_is_composited_on_white():
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert open_image(img).getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize("name", ["cmyk", "16bit", "palette", "animated", "exif_rotated", "one_pixel"])
def test_odd_images_run_through_the_engine(engine, name):
    res = engine.run([ODD[name]()], "What is here?", ONE)
    assert res.generated_ids and res.images[0].total_tokens >= 1


def test_gigantic_image_is_shrunk_before_heavy_work(engine):
    big = Image.new("L", (20000, 20000), 128)
    res = engine.run([big], "What is here?", ONE)
    w, h = res.images[0].image_size
    assert w * h <= engine.base.image_processor.size["longest_edge"]


@pytest.mark.parametrize(
    "source,message",
    [
        (None, "no image"),
        (b"\x89PNG\r\n\x1a\nthis is not a png", "not a readable image"),
        (_png(rgb(400, 300))[:200], "corrupt or truncated"),
        ("/nonexistent/picture.jpg", "not found"),
        (np.zeros((0, 3)), "HxW"),
        (Image.new("RGB", (3000, 10)), "aspect ratio"),
    ],
)
def test_bad_images_raise_input_error(engine, source, message):
    with pytest.raises(InputError, match=message):
        engine.run([source], "What is here?", ONE)


@pytest.mark.parametrize("question,message", [("", "empty"), ("   ", "empty"), ("x" * 5000, "limit"), ("<|image_pad|>", "empty once special")])
def test_bad_questions(engine, scene, question, message):
    with pytest.raises(InputError, match=message):
        engine.run([scene], question, ONE)


def test_no_images(engine):
    with pytest.raises(InputError, match="no image"):
        engine.run([], "What?", ONE)


def test_special_tokens_in_question_cannot_break_the_prompt(engine, scene):
    res = engine.run([scene], "what <|image_pad|> is <|im_end|> here", ONE)
    assert res.images[0].total_tokens == res.prompt_tokens - res.prompt_text_tokens
