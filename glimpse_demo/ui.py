"""The Gradio app: layout and short handlers that adapt widgets to ``ui_run`` / ``ui_view``.

The engine is loaded once and shared read-only; everything about one user lives in ``gr.State``.
User mistakes become ``gr.Error`` with the engine's message; nothing shows a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from . import plots
from . import ui_view as view
from .errors import GlimpseDemoError
from .ui_upload import UploadImage
from .settings import RunSettings
from .ui_run import ModelInfo, Snapshot, check_question, open_inputs, settings_from_controls, stream_pair

log = logging.getLogger(__name__)

MODEL_QUEUE = "model"  # every model run, whichever event starts it, waits in this one queue
MODEL_CONCURRENCY = 1
DRAW_CONCURRENCY = 4
MAX_QUEUE = 16
MAX_UPLOAD = "20mb"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = [  # (file, question): a small object in a large scene, text, counting, fine detail
    ("rocket.jpg", "What is standing on the launch pad between the towers?"),
    ("astronaut.png", "What flag is on the left of the picture, and what is on her sleeve patch?"),
    ("text.png", "What is written on the paper?"),
    ("coins.png", "How many coins are there?"),
    ("coffee.png", "What is lying on the saucer next to the cup?"),
    ("hubble_deep_field.jpg", "How many large spiral galaxies can you see?"),
    ("chelsea.png", "What colour are the cat's eyes?"),
]
TOY_EXAMPLES = EXAMPLES_DIR / "toy" / "examples.json"  # written by scripts/make_toy_examples.py


def toy_examples() -> list[tuple[str, str]]:
    """(file, question) of the toy-world scenes, the built-in model's own world."""
    if not TOY_EXAMPLES.is_file():
        return []
    return [(f"toy/{e['file']}", e["question"]) for e in json.loads(TOY_EXAMPLES.read_text())]


NO_MODULES = SimpleNamespace(reduce_threshold=0.5, max_remain_ratio=None, min_remain_num=1, anchor_positions=())
CSS = """
#answer-glimpse textarea { border-left: 4px solid #e8590c; }
#answer-baseline textarea { border-left: 4px solid #5c7cfa; }
"""


def gpu(fn: Callable) -> Callable:
    """``spaces.GPU`` on a Hugging Face ZeroGPU Space, unchanged elsewhere."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=120)(fn)


def user_error(e: Exception) -> gr.Error:
    """The one place where failures become what the user reads."""
    if isinstance(e, (GlimpseDemoError, ValueError)):
        return gr.Error(str(e), print_exception=False)
    if isinstance(e, MemoryError):
        return gr.Error("out of memory: try a smaller image or fewer new tokens", print_exception=False)
    log.exception("unexpected failure in a request")
    return gr.Error(f"something went wrong ({type(e).__name__}); the app is still running, please try again",
                    print_exception=False)


class DemoUI:
    """Builds the Blocks; its handlers read the shared engine and the caller's ``gr.State`` only."""

    def __init__(self, engine, info: ModelInfo) -> None:
        self.engine = engine
        self.info = info
        self.gp = engine.gp or NO_MODULES  # baseline-only engines have no GlimpsePrune config
        # Only the model runs hold the GPU; drawing stays outside. On ZeroGPU the decorated call runs
        # in a worker process, so it takes and yields plain picklable values (images, settings, Snapshots).
        self.stream = gpu(self._stream)

    def _stream(self, images: list, question: str, settings: RunSettings, with_baseline: bool) -> Iterator[Snapshot]:
        yield from stream_pair(self.engine, images, question, settings, with_baseline)

    # ----- handlers -------------------------------------------------------------------------------

    def run(self, image, extra, question: str, threshold: float, ratio: float, max_new: float, greedy: bool,
            temperature: float, top_p: float, seed: float, with_baseline: bool, opacity: float,
            compare_kind: str) -> Iterator[dict]:
        """Run GlimpsePrune, then the baseline, streaming both answers and drawing as results arrive."""
        c = self.c
        try:
            settings = settings_from_controls(threshold, ratio, max_new, greedy, temperature, top_p, seed)
            check_question(question)
            images = open_inputs(self.engine, image, extra)
        except (GlimpseDemoError, ValueError) as e:
            raise user_error(e) from None
        note_g = "" if self.engine.modules is not None else "(no GlimpsePrune modules loaded: baseline only)"
        note_b = "" if with_baseline else "(baseline run switched off)"
        yield {c["ans_g"]: note_g, c["ans_b"]: note_b, c["kept"]: "Running…", c["metrics_md"]: "",
               c["metrics_plot"]: None,
               c["dl_png"]: gr.DownloadButton(value=None, interactive=False),
               c["dl_json"]: gr.DownloadButton(value=None, interactive=False)}
        runs: dict = {}
        latest: dict = {}  # every output's newest value: the last message is complete on its own
        try:
            for snap in self.stream(images, question, settings, with_baseline):
                runs = snap.results
                update = self._render(snap, images, threshold, ratio, opacity, compare_kind)
                if update:
                    latest.update(update)
                    yield update
            png, js = view.write_downloads(images, runs, view.run_payload(question, self.info, runs), view.download_dir())
        except Exception as e:  # noqa: BLE001 - every failure is reported, the app keeps serving
            raise user_error(e) from None
        latest.update({c["dl_png"]: gr.DownloadButton(value=png, interactive=True),
                       c["dl_json"]: gr.DownloadButton(value=js, interactive=True)})
        yield latest

    def _render(self, snap, images, threshold, ratio, opacity, compare_kind) -> dict:
        c = self.c
        box = c["ans_g"] if snap.mode == "glimpse" else c["ans_b"]
        if snap.event == "token":
            return {box: snap.texts[snap.mode]}
        if snap.event == "done":
            return {box: snap.texts[snap.mode], c["metrics_md"]: view.metrics_markdown(snap.results),
                    c["metrics_plot"]: plots.metrics_figure(list(snap.results.values()))}
        if snap.mode == "glimpse" or "glimpse" not in snap.results:  # prefill: the masks are known
            last = view.last_run(images, snap.results[snap.mode], self.gp)
            out = self._pictures(last, last.images, threshold, ratio, opacity, compare_kind, 1, predicted=False)
            n = len(images)
            out[c["state"]] = last
            out[c["compare_idx"]] = gr.Slider(minimum=1, maximum=max(n, 2), value=1, visible=n > 1)
            return out
        return {}

    def redraw(self, last: view.LastRun | None, threshold: float, ratio: float, opacity: float,
               compare_kind: str, compare_idx: float) -> dict:
        """Threshold / ratio / opacity / compare moved: re-draw from the last run, no model call."""
        if last is None:
            return {}
        images = view.replan(last, threshold, ratio) if last.has_probs else last.images
        return self._pictures(last, images, threshold, ratio, opacity, compare_kind, compare_idx, predicted=True)

    def _pictures(self, last, images, threshold, ratio, opacity, compare_kind, compare_idx, predicted) -> dict:
        c = self.c
        out = {c["grid"]: view.grid_items(last, images),
               c["heat"]: view.heat_items(last, images, opacity, threshold),
               c["compare"]: view.compare_pair(last, images, compare_kind, compare_idx, opacity, threshold)}
        if last.has_probs:
            out[c["kept"]] = view.kept_summary(images, threshold, ratio, predicted)
            out[c["hist"]] = view.histogram(images, threshold)
        else:
            out[c["kept"]] = "Baseline only: every visual token is kept."
        return out

    # ----- layout ---------------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        gp = self.gp
        c: dict = {}
        self.c = c
        with gr.Blocks(title="GlimpsePrune demo", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
            c["state"] = gr.State(None, time_to_live=3600)
            gr.Markdown("# GlimpsePrune: a glimpse, then only the image tokens that matter\n"
                        "Dynamic visual-token pruning (arXiv 2508.01548) on Qwen2.5-VL, side by side with the "
                        "unpruned baseline.")
            gr.Markdown(view.banner(self.info), elem_id="model-banner")
            with gr.Row():
                with gr.Column(scale=2, min_width=320):
                    inputs = self._inputs(c, gp)
                with gr.Column(scale=3, min_width=420):
                    self._outputs(c)
            with gr.Accordion("What is on the screen? (for presenters)", open=False):
                gr.Markdown(view.explainer(self.info), elem_id="explainer")
            self._wire(c, inputs)
        return demo

    def _inputs(self, c: dict, gp) -> list:
        c["image"] = UploadImage(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 label="Image (upload, paste or drop)", elem_id="image-input", height=320)
        with gr.Accordion("More images (optional)", open=False):
            c["extra"] = gr.File(file_count="multiple", file_types=["image"], label="Further images, after the first")
        c["question"] = gr.Textbox(label="Question", lines=2, max_lines=6, elem_id="question",
                                   placeholder="Ask about something small in the picture")
        with gr.Row():
            c["run_btn"] = gr.Button("Run", variant="primary", elem_id="run")
            c["with_baseline"] = gr.Checkbox(True, label="also run the baseline")
        with gr.Accordion("Settings", open=True):
            c["threshold"] = gr.Slider(0.0, 1.0, value=float(gp.reduce_threshold), step=0.01,
                                       label="VIP threshold (keep tokens with p > threshold)", elem_id="threshold")
            c["ratio"] = gr.Slider(0.01, 1.0, value=float(gp.max_remain_ratio or 1.0), step=0.01,
                                   label="max keep ratio (1 = no cap)")
            c["opacity"] = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="importance map opacity")
            c["max_new"] = gr.Slider(1, 512, value=64, step=1, label="max new tokens")
            with gr.Row():
                c["greedy"] = gr.Checkbox(True, label="greedy (else sample)")
                c["seed"] = gr.Number(0, precision=0, label="seed", minimum=0)
            with gr.Row():
                c["temperature"] = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label="temperature")
                c["top_p"] = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="top-p")
        galleries = [
            (toy_examples(), "Toy scenes: the built-in model's synthetic world (examples/toy/)"),
            (EXAMPLES, "Real photographs (sources: examples/README.md)"),
        ]
        if self.info.kind != "toy":
            galleries.reverse()
        for items, label in galleries:
            rows = [[str(EXAMPLES_DIR / f), q] for f, q in items if (EXAMPLES_DIR / f).is_file()]
            if rows:
                gr.Examples(rows, inputs=[c["image"], c["question"]], label=label, examples_per_page=8)
        return [c[k] for k in ("image", "extra", "question", "threshold", "ratio", "max_new", "greedy",
                               "temperature", "top_p", "seed", "with_baseline", "opacity")]

    def _outputs(self, c: dict) -> None:
        with gr.Row():
            c["ans_g"] = gr.Textbox(label="GlimpsePrune (pruned)", lines=4, interactive=False, elem_id="answer-glimpse")
            c["ans_b"] = gr.Textbox(label="baseline (all visual tokens)", lines=4, interactive=False,
                                    elem_id="answer-baseline")
        c["kept"] = gr.Markdown(label="kept tokens", elem_id="kept-count")
        with gr.Row():
            c["heat"] = gr.Gallery(label="VIP importance map", columns=1, height=360, object_fit="contain",
                                   elem_id="importance", preview=False)
            c["grid"] = gr.Gallery(label="kept tokens (dropped ones dimmed)", columns=1, height=360,
                                   object_fit="contain", elem_id="kept-grid", preview=False)
        with gr.Row():
            c["compare_kind"] = gr.Radio(["kept grid", "importance map"], value="kept grid",
                                         label="slide between the original and")
            c["compare_idx"] = gr.Slider(1, 2, value=1, step=1, label="image", visible=False)
        c["compare"] = gr.ImageSlider(label="original | overlay", type="pil", elem_id="compare", max_height=420)
        c["metrics_md"] = gr.Markdown(label="numbers", elem_id="metrics")
        c["metrics_plot"] = gr.Plot(label="time and memory", elem_id="metrics-plot")
        c["hist"] = gr.Plot(label="VIP probabilities", elem_id="histogram")
        with gr.Row():
            c["dl_png"] = gr.DownloadButton("Download overlay PNG", interactive=False, elem_id="download-png")
            c["dl_json"] = gr.DownloadButton("Download run JSON", interactive=False, elem_id="download-json")

    def _wire(self, c: dict, inputs: list) -> None:
        outs = [c[k] for k in ("ans_g", "ans_b", "kept", "heat", "grid", "compare", "compare_idx", "metrics_md",
                               "metrics_plot", "hist", "dl_png", "dl_json", "state")]
        gr.on([c["run_btn"].click, c["question"].submit], self.run, inputs + [c["compare_kind"]], outs,
              api_name="run", concurrency_limit=MODEL_CONCURRENCY, concurrency_id=MODEL_QUEUE)
        # user moves only (.input): a run that updates a control must not trigger a re-draw
        draw_in = [c[k] for k in ("state", "threshold", "ratio", "opacity", "compare_kind", "compare_idx")]
        gr.on([comp.input for comp in draw_in[1:]], self.redraw, draw_in,
              [c[k] for k in ("heat", "grid", "compare", "kept", "hist")], api_name="redraw",
              concurrency_limit=DRAW_CONCURRENCY, concurrency_id="draw", show_progress="hidden",
              trigger_mode="always_last")


def build_demo(engine, info: ModelInfo) -> gr.Blocks:
    return DemoUI(engine, info).build()


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs):
    """Queue (one model queue, bounded), upload limit, then serve. Extra kwargs go to ``launch``."""
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=MODEL_CONCURRENCY)
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                       allowed_paths=[str(EXAMPLES_DIR)], ssr_mode=False, theme=theme, css=CSS, **kwargs)
