"""One request of the app, without any UI framework: controls -> settings, uploads -> images, and
the GlimpsePrune run followed by the baseline run, streamed as snapshots a view can draw.

Nothing here is kept between requests; the engine is shared and read-only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from PIL import Image

from .errors import InputError
from .images import fit_to_budget, open_image
from . import prompting
from .prompting import MAX_QUESTION_CHARS
from .result import RunResult
from .settings import GenerationSettings, PruneSettings, RunSettings

log = logging.getLogger(__name__)

MAX_IMAGES = 4  # images per prompt; each adds a full grid of visual tokens
MODES = ("glimpse", "baseline")


@dataclass(frozen=True)
class ModelInfo:
    """What the banner says about the loaded model. ``kind``: "tiny-random", "toy", "tiny" (a small
    model given on the command line) or "custom"."""

    kind: str
    base: str
    modules: str | None
    device: str = "cpu"
    dtype: str = "float32"
    layers: int = 0  # decoder layers of the LLM
    reduce_layer: int | None = None  # K: pruning happens after this layer (None without modules)
    cell_px: int = 0  # pixels on a side of one merged image token

    @property
    def has_modules(self) -> bool:
        return bool(self.modules)


def load_engine(
    base: str | None = None,
    modules: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    load_in_4bit: bool = False,
):
    """Load once at start: the built-in default model unless ``base`` is given. -> (engine, ModelInfo)."""
    from .engine import GlimpseEngine

    kind = "custom"
    if not base:
        from .defaults import default_model

        base, default_modules, kind = default_model()
        modules = modules or default_modules
    engine = GlimpseEngine.from_pretrained(base, modules, device=device, dtype=dtype, load_in_4bit=load_in_4bit)
    text_cfg = engine.model.config.text_config
    if kind == "custom" and text_cfg.hidden_size < 512:
        kind = "tiny"
    p = next(engine.model.parameters())
    min_side, _ = pixel_budget(engine)
    info = ModelInfo(kind, base, modules, str(p.device), str(p.dtype).removeprefix("torch."),
                     layers=text_cfg.num_hidden_layers, reduce_layer=engine.gp.reduce_layer if engine.gp else None,
                     cell_px=min_side)
    log.info("model ready: %s", info)
    return engine, info


def settings_from_controls(
    threshold: float,
    max_keep_ratio: float,
    max_new_tokens: float,
    greedy: bool,
    temperature: float,
    top_p: float,
    seed: float | None,
) -> RunSettings:
    """The control values -> RunSettings; ValueError with a readable message on a bad value.

    A max keep ratio of 1 means "no cap" (the same mask as no ratio at all).
    """
    ratio = None if max_keep_ratio is None or max_keep_ratio >= 1.0 else float(max_keep_ratio)
    if max_new_tokens is None or int(max_new_tokens) != max_new_tokens:
        raise ValueError(f"max new tokens must be a whole number, got {max_new_tokens}")
    return RunSettings(
        prune=PruneSettings(threshold=float(threshold), max_remain_ratio=ratio),
        generation=GenerationSettings(
            max_new_tokens=int(max_new_tokens),
            greedy=bool(greedy),
            temperature=float(temperature),
            top_p=float(top_p),
            seed=int(seed or 0),
        ),
    )


def check_question(question: str | None) -> str:
    """The cheap checks, before anything is drawn; the engine still checks the rest (special tokens)."""
    if question is None or not question.strip():
        raise InputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
    return question


def pixel_budget(engine) -> tuple[int, int]:
    """(smallest side, largest pixel count) the engine's image processor accepts."""
    return prompting.pixel_budget(engine.base.image_processor)


def open_inputs(engine, image, extra: list | None = None) -> list[Image.Image]:
    """The main upload plus optional further ones -> RGB images within the model's pixel budget.

    Shrinking happens here, before any heavy work; a bad file raises InputError naming it.
    """
    sources = ([image] if image is not None else []) + [f for f in (extra or []) if f is not None]
    if not sources:
        raise InputError("no image was given: upload, paste or drop a picture, or pick an example")
    if len(sources) > MAX_IMAGES:
        raise InputError(f"{len(sources)} images were given; the limit is {MAX_IMAGES} per question")
    min_side, max_pixels = pixel_budget(engine)
    out = []
    for k, src in enumerate(sources, 1):
        try:
            out.append(fit_to_budget(open_image(src), min_side, max_pixels))
        except InputError as e:
            raise InputError(f"image {k}: {e}" if len(sources) > 1 else str(e)) from e
    return out


@dataclass
class Snapshot:
    """The state of a request after one engine event. ``stage`` is "<mode>-<event kind>";
    ``results`` holds the partial result after prefill and the complete one after done."""

    stage: str
    texts: dict[str, str] = field(default_factory=dict)
    results: dict[str, RunResult] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.stage.split("-", 1)[0]

    @property
    def event(self) -> str:
        return self.stage.split("-", 1)[1]


def modes_to_run(engine, with_baseline: bool) -> list[str]:
    modes = ["glimpse"] if engine.modules is not None else []
    if with_baseline or not modes:
        modes.append("baseline")
    return modes


def stream_pair(engine, images: list, question: str, settings: RunSettings, with_baseline: bool) -> Iterator[Snapshot]:
    """GlimpsePrune first, then (optionally) the baseline, one model pass each, streamed.

    The engine runs in a worker thread and hands its events over a queue: the engine's clocks keep
    running while its stream is suspended, so drawing between events in the caller's thread would
    otherwise be counted as time to first token and decode time. Closing this generator stops the
    engine at its next event and waits for it, so two runs never overlap on the model.
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    modes = modes_to_run(engine, with_baseline)

    def produce() -> None:
        try:
            for mode in modes:
                for ev in engine.stream(images, question, replace(settings, mode=mode)):
                    if stop.is_set():
                        return
                    events.put((mode, ev))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            events.put((None, e))
        finally:
            events.put(None)

    worker = threading.Thread(target=produce, name="glimpse-run", daemon=True)
    worker.start()
    texts: dict[str, str] = {}
    results: dict[str, RunResult] = {}
    try:
        while (item := events.get()) is not None:
            mode, ev = item
            if mode is None:
                raise ev
            texts.setdefault(mode, "")
            if ev.kind == "token":
                texts[mode] += ev.text
            elif ev.result is not None:
                results[mode] = ev.result
                if ev.kind == "done":
                    texts[mode] = ev.result.answer
            yield Snapshot(f"{mode}-{ev.kind}", dict(texts), dict(results))
    finally:
        stop.set()
        worker.join()


def warm_up(engine, side: int = 448) -> None:
    """One short run per mode on a synthetic picture, so the first user's timings are not those
    of a cold start (lazy kernel loading, allocator growth). Failures are logged, not raised."""
    import numpy as np

    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    img = Image.fromarray(np.stack([ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1),
                                    np.full((side, side), 96, np.uint8)], axis=-1))
    settings = RunSettings(generation=GenerationSettings(max_new_tokens=2))
    try:
        for mode in modes_to_run(engine, True):
            engine.run([img], "What is in the image?", replace(settings, mode=mode))
    except Exception as e:  # noqa: BLE001 - a failed warm-up only costs the first user some speed
        log.warning("warm-up run failed: %s", e)
