"""A real browser: Playwright drives Debian's Chromium (headless, no sandbox, background networking
off) through the app served on 127.0.0.1 with the tiny model: upload an example photo, Run, wait
for both answers and the overlays, check that no error toast appeared, move the threshold (the grid
is re-drawn without the model), save a screenshot."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "screenshot.py"

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


def _driver():
    spec = importlib.util.spec_from_file_location("glimpse_screenshot", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def driver():
    mod = _driver()
    if not os.access(mod.CHROMIUM, os.X_OK):
        pytest.skip(f"{mod.CHROMIUM} is not installed (apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    return mod


def test_upload_run_and_see_both_answers_and_the_overlay(driver, engine, tiny_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    from glimpse_demo.ui_run import ModelInfo

    info = ModelInfo("tiny", str(tiny_dir / "base"), str(tiny_dir / "glimpse"))
    demo, url = driver.serve(engine, info)
    try:
        with sync_playwright() as pw:
            browser = driver.open_browser(pw)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console_errors = []
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            shown = driver.run_example(page, url, ROOT / "examples" / "coffee.png", "What is on the saucer?")
            redrawn = driver.move_threshold(page, 0.05)  # no model run: from the last probabilities
            shot = tmp_path / "browser.png"
            page.screenshot(path=str(shot), full_page=True)
            banner = page.locator("#model-banner").inner_text()
            browser.close()
    finally:
        demo.close()
    assert shown["errors"] == [] and console_errors == []
    assert shown["glimpse"] and shown["baseline"]
    assert "GlimpsePrune kept" in shown["kept"]
    assert "visual tokens kept" in shown["metrics"]
    assert "tiny model" in banner.lower()
    kept = int(shown["kept"].split("kept ")[1].split(" /")[0])
    assert redrawn.startswith("Predicted kept visual tokens") and int(redrawn.split(": ")[1].split(" /")[0]) > kept
    assert shot.stat().st_size > 20_000
