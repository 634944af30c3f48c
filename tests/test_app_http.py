"""End to end over real HTTP: the app served on 127.0.0.1 with the tiny model, driven by
gradio_client like any remote caller."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from glimpse_demo.ui import MAX_QUEUE, build_demo, launch
from glimpse_demo.ui_run import ModelInfo

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")

ARGS = dict(threshold=0.5, ratio=1.0, max_new=6, greedy=True, temperature=0.7, top_p=0.9, seed=0,
            with_baseline=True, opacity=0.6, compare_kind="kept grid")


@pytest.fixture(scope="module")
def server(engine, tiny_dir):
    info = ModelInfo("tiny", str(tiny_dir / "base"), str(tiny_dir / "glimpse"))
    demo = build_demo(engine, info)
    _, url, _ = launch(demo, "127.0.0.1", None, prevent_thread_lock=True, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[1], verbose=False, download_files=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory, scene):
    path = tmp_path_factory.mktemp("http") / "scene.png"
    scene.save(path)
    return str(path)


def run(client, image, question="What color is the sign?", **kw):
    a = dict(ARGS, **kw)
    return client.predict(handle_file(image) if image else None, [], question, *a.values(), api_name="/run")


def fetch_json(url_or_path: dict) -> dict:
    return json.loads(httpx.get(url_or_path["url"], timeout=30).text)


def test_both_answers_overlays_and_metrics_arrive(client, photo):
    (ans_g, ans_b, kept, heat, grid, compare, _idx, metrics, plot, hist, dl_png, dl_json) = run(client, photo)
    data = fetch_json(dl_json["value"])
    g, b = data["runs"]["glimpse"], data["runs"]["baseline"]
    assert (ans_g, ans_b) == (g["answer"], b["answer"])
    assert len(g["generated_ids"]) >= 1 and len(b["generated_ids"]) >= 1
    assert f"GlimpsePrune kept {g['kept_tokens']} / {g['total_tokens']}" in kept
    assert 0 < g["kept_tokens"] < g["total_tokens"] == b["kept_tokens"]
    for gallery in (heat, grid):
        assert len(gallery) == 1
        img = Image.open(io.BytesIO(httpx.get(gallery[0]["image"]["url"], timeout=30).raise_for_status().content))
        assert img.width == g["images"][0]["image_size"][0]
    assert len(compare) == 2 and all(compare)
    assert "| visual tokens kept |" in metrics and "baseline" in metrics
    assert plot["type"] == hist["type"] == "plotly"
    assert {t["name"] for t in json.loads(plot["plot"])["data"]} == {"GlimpsePrune", "baseline"}
    assert g["timings"]["ttft_s"] > 0 and g["memory"]["kv_bytes_after_prefill"] < b["memory"]["kv_bytes_after_prefill"]
    png = httpx.get(dl_png["value"]["url"], timeout=30)
    assert png.headers["content-type"] == "image/png"


def test_the_slider_redraw_reuses_this_sessions_last_run(client, photo):
    run(client, photo)
    heat, grid, compare, kept, hist = client.predict(0.0, 1.0, 0.6, "kept grid", 1, api_name="/redraw")
    assert "Predicted kept visual tokens" in kept
    n = kept.split("**Predicted kept visual tokens: ")[1].split(" (")[0]
    kept_n, total = (int(x) for x in n.split(" / "))
    assert kept_n == total  # threshold 0 keeps every token with a positive probability
    assert grid and heat and hist["type"] == "plotly"


def test_a_bad_request_is_a_message_and_the_server_keeps_serving(client, photo):
    with pytest.raises(AppError, match="the question is empty"):
        run(client, photo, question="   ")
    with pytest.raises(AppError, match="no image was given"):
        run(client, None)
    assert run(client, photo, max_new=1, with_baseline=False)[2].startswith("**GlimpsePrune kept")


def test_uploads_above_the_limit_are_refused(server):
    demo, url = server
    big = b"\0" * (demo.max_file_size + 1)
    r = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert r.status_code == 413
    assert demo._queue.max_size == MAX_QUEUE
