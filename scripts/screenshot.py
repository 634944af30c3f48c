"""Regenerate assets/screenshot.png: serve the app on loopback, drive it in headless Chromium
(upload an example, Run, wait for both answers and the overlays), and save the page.

    python scripts/screenshot.py [--out assets/screenshot.png] [--base-model DIR --glimpse-modules DIR]

Uses Debian's Chromium (``apt-get install chromium``) through Playwright; nothing is downloaded.
The browser test (tests/test_browser.py) drives the page with the same functions.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
EXAMPLE = ROOT / "examples" / "rocket.jpg"
QUESTION = "What is standing on the launch pad between the towers?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(engine, info):
    """Build and launch the app on 127.0.0.1 without blocking; returns (demo, url)."""
    from glimpse_demo.ui import build_demo, launch

    demo = build_demo(engine, info)
    port = free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def open_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def run_example(page, url: str, image: Path = EXAMPLE, question: str = QUESTION, timeout_ms: int = 60_000) -> dict:
    """Open the app, upload ``image``, ask ``question``, Run, and wait until the run has finished
    (the download buttons turn on). Returns what the page shows."""
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#run").wait_for(timeout=timeout_ms)
    page.locator("#image-input input[type=file]").set_input_files(str(image))
    page.locator("#image-input img").first.wait_for(timeout=timeout_ms)  # the upload is shown
    page.locator("#question textarea").fill(question)
    page.locator("#run").click()
    page.locator("#download-json:not([disabled])").wait_for(timeout=timeout_ms)
    page.locator("#kept-grid img").first.wait_for(timeout=timeout_ms)
    page.locator("#importance img").first.wait_for(timeout=timeout_ms)
    return {
        "glimpse": page.locator("#answer-glimpse textarea").input_value(),
        "baseline": page.locator("#answer-baseline textarea").input_value(),
        "kept": page.locator("#kept-count").inner_text(),
        "metrics": page.locator("#metrics").inner_text(),
        "errors": [t for t in page.locator(".toast-body").all_inner_texts() if t.strip()],
    }


def move_threshold(page, value: float, timeout_ms: int = 20_000) -> str:
    """Type a threshold into the slider's box; returns the re-drawn kept-count line."""
    box = page.locator("#threshold input[type=number]")
    box.fill(f"{value}")
    box.press("Enter")
    line = page.locator("#kept-count", has_text=f"at threshold {value:.2f}")
    line.wait_for(timeout=timeout_ms)
    return line.inner_text()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "assets" / "screenshot.png"))
    p.add_argument("--base-model")
    p.add_argument("--glimpse-modules")
    p.add_argument("--image", help="picture to upload (default: the first toy scene for the toy model, else rocket.jpg)")
    p.add_argument("--question")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from glimpse_demo.ui_run import load_engine, warm_up

    engine, info = load_engine(a.base_model, a.glimpse_modules, device="cpu")
    warm_up(engine)
    demo, url = serve(engine, info)
    try:
        with sync_playwright() as pw:
            browser = open_browser(pw)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            image, question = EXAMPLE, QUESTION
            if info.kind == "toy":
                from glimpse_demo.ui import EXAMPLES_DIR, toy_examples

                first, question = toy_examples()[0]
                image = EXAMPLES_DIR / first
            image = Path(a.image) if a.image else image
            shown = run_example(page, url, image=image, question=a.question or question)
            page.wait_for_timeout(800)  # let the plots finish their first layout
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=a.out, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"saved {a.out}")
    for k, v in shown.items():
        print(f"{k}: {v!r}" if k != "metrics" else f"{k}:\n{v}")
    return 1 if shown["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
