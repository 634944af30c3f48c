"""What the app shows, as plain values (text, PIL images, figures, files), with no UI framework.

Every function draws what a run returned; the one thing computed here is the re-planned keep mask
when the threshold or ratio moves, through the same pure policy the engine uses.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import plots, viz
from .policy import keep_mask
from .result import ImageResult, RunResult
from .ui_run import ModelInfo

DISPLAY_MAX_SIDE = 1024  # pictures sent to the browser are at most this large; downloads are full size
DOWNLOAD_TTL_S = 3600
REAL_MODEL_HINT = (
    "`python app.py --base-model Qwen/Qwen2.5-VL-7B-Instruct "
    "--glimpse-modules ashun989/GlimpsePrune_Qwen2.5-VL-7B-Instruct` (or the 3B pair; a GPU is advised)"
)


@dataclass
class LastRun:
    """Per-session memory of the last GlimpsePrune run: enough to re-draw without the model."""

    views: list[Image.Image]  # each image as the model saw it, at display size
    images: list[ImageResult]  # the run's grids, masks and probabilities
    min_remain_num: int
    anchors: tuple[str, ...]

    @property
    def has_probs(self) -> bool:
        return bool(self.images) and all(r.importance is not None for r in self.images)


def last_run(originals: list[Image.Image], result: RunResult, gp) -> LastRun:
    views = [viz.model_view(im, r, DISPLAY_MAX_SIDE) for im, r in zip(originals, result.images)]
    return LastRun(views, list(result.images), int(gp.min_remain_num or 0), tuple(gp.anchor_positions or ()))


def replan(last: LastRun, threshold: float, max_keep_ratio: float | None) -> list[ImageResult]:
    """The run's images with the keep mask the policy gives at these settings (no model call)."""
    ratio = None if max_keep_ratio is None or max_keep_ratio >= 1.0 else max_keep_ratio
    out = []
    for r in last.images:
        if r.importance is None:
            out.append(r)
            continue
        m = keep_mask(r.importance.reshape(-1), r.grid, threshold, ratio, last.min_remain_num, last.anchors)
        out.append(replace(r, keep_mask=m.view(*r.grid)))
    return out


# ----- pictures -----------------------------------------------------------------------------------


def _caption(k: int, r: ImageResult, n_images: int) -> str:
    head = f"image {k}: " if n_images > 1 else ""
    return f"{head}{r.kept_tokens}/{r.total_tokens} kept · {r.grid[0]}x{r.grid[1]} tokens of {r.cell_px}px"


def heat_items(last: LastRun, images: list[ImageResult], opacity: float, threshold: float) -> list[tuple[Image.Image, str]]:
    return [
        (viz.importance_overlay(v, r, opacity, threshold=threshold, max_side=DISPLAY_MAX_SIDE), _caption(k, r, len(images)))
        for k, (v, r) in enumerate(zip(last.views, images), 1)
    ]


def grid_items(last: LastRun, images: list[ImageResult]) -> list[tuple[Image.Image, str]]:
    return [
        (viz.kept_grid_overlay(v, r, max_side=DISPLAY_MAX_SIDE), _caption(k, r, len(images)))
        for k, (v, r) in enumerate(zip(last.views, images), 1)
    ]


def compare_pair(last: LastRun, images: list[ImageResult], kind: str, index: int, opacity: float, threshold: float):
    """(original view, overlay) of image ``index`` (1-based) for a before/after slider."""
    k = min(max(int(index or 1), 1), len(last.views)) - 1
    v, r = last.views[k], images[k]
    if kind == "importance map":
        over = viz.importance_overlay(v, r, opacity, legend=False, max_side=DISPLAY_MAX_SIDE)
    else:
        over = viz.kept_grid_overlay(v, r, max_side=DISPLAY_MAX_SIDE)
    return v, over


def histogram(images: list[ImageResult], threshold: float):
    probs = np.concatenate([r.importance.reshape(-1).numpy() for r in images])
    keep = np.concatenate([np.asarray(r.keep_mask, dtype=bool).reshape(-1) for r in images])
    return plots.probability_histogram(probs, keep, threshold)


# ----- text ---------------------------------------------------------------------------------------


def _share(kept: int, total: int) -> str:
    return f"{kept} / {total} ({100 * kept / total:.1f}%)" if total else "0 / 0"


def kept_summary(images: list[ImageResult], threshold: float, max_keep_ratio: float | None, predicted: bool) -> str:
    kept, total = sum(r.kept_tokens for r in images), sum(r.total_tokens for r in images)
    cap = "" if max_keep_ratio is None or max_keep_ratio >= 1.0 else f", max keep ratio {max_keep_ratio:.2f}"
    if predicted:
        return (f"**Predicted kept visual tokens: {_share(kept, total)}** at threshold {threshold:.3g}{cap}. "
                "Re-drawn from the last run's probabilities; press **Run** to regenerate the answers.")
    return f"**GlimpsePrune kept {_share(kept, total)} visual tokens** at threshold {threshold:.3g}{cap}."


def _ms(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s >= 0.01 else f"{s * 1e3:.1f} ms"


def _mib(b: int) -> str:
    return f"{b / 2**20:.2f} MiB" if b < 100 * 2**20 else f"{b / 2**20:.0f} MiB"


def metrics_markdown(runs: dict[str, RunResult]) -> str:
    """A table: one row per number, one column per finished run."""
    if not runs:
        return ""
    names = {"glimpse": "GlimpsePrune", "baseline": "baseline"}
    order = [m for m in ("glimpse", "baseline") if m in runs]
    rows = {
        "visual tokens kept": lambda r: _share(r.kept_tokens, r.total_tokens),
        "vision encoder": lambda r: _ms(r.timings.vision_s),
        "LLM prefill": lambda r: _ms(r.timings.prefill_s),
        "time to first token": lambda r: _ms(r.timings.ttft_s),
        "decode": lambda r: f"{r.timings.decode_tokens_per_s:.1f} tokens/s ({r.timings.decode_tokens} tokens)",
        "total": lambda r: _ms(r.timings.total_s),
        "KV cache after prefill": lambda r: f"{_mib(r.memory.kv_bytes_after_prefill)} ({r.memory.kv_tokens_after_prefill} tokens)",
        "KV cache at end": lambda r: _mib(r.memory.kv_bytes_end),
        "peak memory": lambda r: _mib(r.memory.peak_bytes),
    }
    lines = ["| | " + " | ".join(names[m] for m in order) + " |", "|---|" + "---|" * len(order)]
    lines += [f"| {label} | " + " | ".join(f(runs[m]) for m in order) + " |" for label, f in rows.items()]
    kinds = sorted({runs[m].memory.peak_kind for m in order if runs[m].memory.peak_kind})
    if kinds:
        lines.append("\nPeak memory is measured as: " + ", ".join(f"`{k}`" for k in kinds) + ".")
    return "\n".join(lines)


def banner(info: ModelInfo) -> str:
    where = f"on `{info.device}` ({info.dtype})"
    mods = f" + GlimpsePrune modules `{info.modules}`" if info.modules else " (no GlimpsePrune modules: baseline only)"
    loaded = f"Model: `{info.base}`{mods} {where}."
    if info.kind == "tiny-random":
        return (f"### ⚠️ Not a real model: tiny random weights\n{loaded}\n\nThe built-in model is a tiny Qwen2.5-VL "
                "with **random weights**, generated offline so the app runs anywhere: its answers are nonsense and "
                "its importance map is random. Everything else (pruning, masks, timings, memory) is real. "
                f"For real answers start {REAL_MODEL_HINT}.")
    if info.kind == "toy":
        return (f"### ⚠️ Not a pretrained model: a small toy model\n{loaded}\n\nThe built-in model is a "
                "Qwen2.5-VL of about 1.5M parameters trained from scratch on this machine, only on synthetic pictures "
                "of coloured shapes (try the toy scenes). It answers colour questions (\"is there a red object ?\", "
                "\"how many are blue ?\", \"what color is the triangle ?\") and its importance map finds the objects "
                "asked about; it cannot answer \"what shape\" or \"where\", and knows nothing about photographs "
                f"(held-out accuracy in assets/toy/EVAL.md). For real answers start {REAL_MODEL_HINT}.")
    if info.kind == "tiny":
        return (f"### ⚠️ A tiny model\n{loaded}\n\nThis model is very small; unless it was trained for this, its "
                f"answers are not meaningful. For real answers start {REAL_MODEL_HINT}.")
    return loaded


def explainer(info: ModelInfo) -> str:
    """The presenter's notes, with this model's own numbers appended."""
    facts = []
    if info.reduce_layer is not None and info.layers:
        facts.append(f"layer K = {info.reduce_layer} (counting from 0) of {info.layers} decoder layers")
    if info.cell_px:
        facts.append(f"one grid cell = one merged token = {info.cell_px}x{info.cell_px} pixels of the resized image")
    return EXPLAINER + ("\n**This model:** " + "; ".join(facts) + "." if facts else "")


EXPLAINER = """
**What the two panes are.** The same model answers the same question twice. *GlimpsePrune* drops most
image tokens after a quick look; *baseline* keeps all of them. Compare the answers and the numbers.

**Glimpse token.** A learned extra token is appended after the question. The model reads the prompt as
usual up to one layer, called **layer K**; there, the glimpse token's attention over the image tokens
shows which parts of the picture matter for *this* question.

**VIP (visual token importance predictor).** A small network turns those attention scores, plus features
of the vision encoder, into one keep probability per image token: the **importance map** (bright = likely
kept). A token is kept when its probability is above the **threshold**; the **max keep ratio** caps the
share that may stay. Each grid cell is one merged image token (here the cell size comes from the model's
patch size times its merge size).

**Kept-token grid.** Dimmed cells were dropped: after layer K their hidden states and their entries in the
key/value cache are removed, and the remaining layers and every decoding step work on the shorter sequence.
Text tokens are never dropped.

**Why it saves memory and time.** Each new answer token reads the whole key/value cache. With 90% of the
image tokens gone, the cache holds a fraction of them, so decoding reads less memory and the cache takes
less room; prefill after layer K is shorter too. The vision encoder itself costs the same.

**Moving the sliders.** Threshold and max keep ratio re-draw the grid and the predicted kept count at once,
from the probabilities of the last run, without running the model. **Run** regenerates the answers.
"""


# ----- downloads ----------------------------------------------------------------------------------


def download_dir(root: Path | None = None, ttl_s: float = DOWNLOAD_TTL_S) -> Path:
    """A fresh folder for one request's files; folders older than ``ttl_s`` are removed on the way."""
    root = root or Path(tempfile.gettempdir()) / "glimpse-demo-downloads"
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > ttl_s:
            shutil.rmtree(old, ignore_errors=True)
    out = root / uuid.uuid4().hex
    out.mkdir()
    return out


def run_payload(question: str, info: ModelInfo, runs: dict[str, RunResult]) -> dict:
    """The run JSON: masks, probabilities, timings, memory and settings of each run."""
    return {
        "question": question,
        "model": {"base": info.base, "modules": info.modules, "kind": info.kind, "device": info.device, "dtype": info.dtype},
        "runs": {mode: r.to_dict() for mode, r in runs.items()},
    }


def write_downloads(originals: list[Image.Image], runs: dict[str, RunResult], payload: dict, folder: Path) -> tuple[str, str]:
    """(overlay PNG, run JSON) paths: the kept-token grid over every image at the model's resolution."""
    shown = runs.get("glimpse") or next(iter(runs.values()))
    png = folder / "glimpse_overlay.png"
    viz.hstack([viz.kept_grid_overlay(im, r) for im, r in zip(originals, shown.images)]).save(png)
    js = folder / "glimpse_run.json"
    js.write_text(json.dumps(payload))
    return str(png), str(js)
