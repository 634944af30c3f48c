"""``python -m glimpse_demo bench``: what pruning saves, measured beside what the cost model allows.

Baseline and GlimpsePrune run in one process on the same weights and the same picture. The kept
fraction is forced (the top ``int(f * n)`` tokens by VIP probability, via the engine's
``mask_source``), so every mode prices a known amount of work. For each visual-token count: one
warm-up round, then ``repeats`` rounds, each running every mode once in a rotated order (so slow
spells of a shared machine hit all modes alike); medians are reported with their spread.

Architectures: ``tiny`` (tests), ``mini`` (a random Qwen2.5-VL shaped like the 7B release, sized
for a CPU), ``toy`` (the trained toy model under assets/, when present). The real 3B/7B configs
are priced by :mod:`glimpse_demo.costmodel` only.

Output: one JSON file (schema ``glimpse-demo-bench/1``) and a plotly figure (HTML; PNG when kaleido
is installed). This module is the measuring layer: it calls the engine, never its internals.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .bench_report import json_default, write_json, markdown_table, write_outputs
from .cli import command
from .errors import InputError

log = logging.getLogger(__name__)

SCHEMA = "glimpse-demo-bench/1"
ARCHS = ("tiny", "mini", "toy")
QUESTION = "What is in the image? Describe the picture."


# ----- models -----------------------------------------------------------------------------------


def mini_spec():
    """The "mini" model: Qwen2.5-VL-7B's proportions at a width a 2-core CPU handles.

    28 decoder layers with K = 18 (the 7B release's depth and reduce layer); FFN / hidden = 5.28
    (18944 / 3584); head_dim 64 with grouped-query attention (4 query heads per key head).
    Vision: depth 8 with the last block full-attention (1 in 8, as 7, 15, 23, 31 of 32), one head
    of width 80 (the 7B's head width), FFN / hidden 2.67 (3420 / 1280), 112-pixel windows. The
    VIP keeps the 7B's shape (four layers conditioned on four vision blocks, global attention)
    with widths scaled like the LLM: fuse 16 and cond 32 (256 and 512 x 256 / 3584, rounded), and
    one head, so that its N^2 attention scores are a similar share of the LLM's as in the 7B
    (VIP 4 layers x 4 heads vs 28 layers x 28 heads / 2 causal: 4%; mini 4 x 1 vs 28 x 4 / 2: 7%).
    """
    from .tiny import TinySpec

    return TinySpec(
        hidden=256, layers=28, heads=4, kv_heads=1, intermediate=1352,
        vision_hidden=80, vision_depth=8, vision_heads=1,
        patch_size=14, merge_size=2,
        reduce_layer=18, selected_layers=(18,), selected_visual_layers=(7, 5, 3, 1),
        fuse_size=16, cond_size=32, fuse_heads=1, attn_fuse_global=True, use_attention_logits=True,
    )


MINI_VISION = {"intermediate_size": 214, "fullatt_block_indexes": [7]}


def _image_processor(patch: int, merge: int, max_pixels: int, like=None):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    kw = {}
    if like is not None:
        kw = {"image_mean": like.image_mean, "image_std": like.image_std}
    factor = patch * merge
    return Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=merge, temporal_patch_size=2,
        min_pixels=factor * factor * 4, max_pixels=max_pixels, **kw,
    )


def _no_stop_ids(engine) -> None:
    """Decode exactly ``decode_tokens`` in every mode: no token ends a benchmark answer early."""
    model, tok = engine.model, engine.base.tokenizer
    model.generation_config.eos_token_id = None
    model.config.text_config.eos_token_id = None
    tok.eos_token = None


def build_engine(arch: str, device: str, max_tokens: int, seed: int = 0):
    """(engine, costmodel.Arch, description) for ``arch``, on ``device``, float32, seeded; its image
    processor admits pictures of up to ``max_tokens`` merged tokens unresized."""
    import torch

    from .costmodel import arch_from_config
    from .engine import GlimpseEngine
    from .loading import BaseModel
    from .prompting import QWEN_CHAT_TEMPLATE
    from .tiny import TinySpec, build_tokenizer, tiny_config, tiny_glimpse_config
    from .vip import GlimpseModules

    if arch == "toy":
        from .defaults import TOY_BASE, TOY_GLIMPSE

        if not ((TOY_BASE / "config.json").is_file() and (TOY_GLIMPSE / "config.json").is_file()):
            raise InputError(f"the toy model is not there ({TOY_BASE}, {TOY_GLIMPSE}); train it first or pick --arch mini")
        engine = GlimpseEngine.from_pretrained(str(TOY_BASE), str(TOY_GLIMPSE), device=device, dtype="float32")
        old = engine.base.image_processor
        cell = int(old.patch_size) * int(old.merge_size)
        engine.base.image_processor = _image_processor(int(old.patch_size), int(old.merge_size), max_tokens * cell * cell, like=old)
        desc = {"arch": "toy", "source": str(TOY_BASE)}
    elif arch in ("tiny", "mini"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        spec = replace(TinySpec(), seed=seed) if arch == "tiny" else replace(mini_spec(), seed=seed)
        tokenizer = build_tokenizer()
        config = tiny_config(spec, tokenizer)
        if arch == "mini":
            for k, v in MINI_VISION.items():
                setattr(config.vision_config, k, v)
        config._attn_implementation = "sdpa"
        torch.manual_seed(spec.seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval().requires_grad_(False).to(device)
        cell = spec.patch_size * spec.merge_size
        improc = _image_processor(spec.patch_size, spec.merge_size, max_tokens * cell * cell)
        modules = GlimpseModules(tiny_glimpse_config(spec, model.config))
        modules.init_random(seed=spec.seed + 1)
        modules.requires_grad_(False)
        engine = GlimpseEngine(BaseModel(model, tokenizer, improc, QWEN_CHAT_TEMPLATE, f"{arch} (random, in memory)"), modules)
        desc = {"arch": arch, "source": "random weights built in memory", "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}}
    else:
        raise InputError(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")
    _no_stop_ids(engine)
    cost_arch = arch_from_config(engine.model.config, engine.gp, name=arch)
    desc["params"] = sum(p.numel() for p in engine.model.parameters())
    desc["vip_params"] = sum(p.numel() for p in engine.modules.attn_fuser.parameters())
    desc["cost_arch"] = asdict(cost_arch)
    return engine, cost_arch, desc


def bench_image(grid: tuple[int, int], cell: int, seed: int = 0):
    """A synthetic picture exactly ``grid`` merged tokens in size (no resize by the processor)."""
    from .tiny import calibration_image

    h, w = grid
    return calibration_image((w * cell, h * cell), seed=seed)


# ----- measuring ---------------------------------------------------------------------------------


class CpuAllocator:
    """glibc malloc settings for the two kinds of run (a no-op elsewhere).

    ``timing()``: large blocks stay in the heap between runs (mmap threshold at its 32 MiB maximum,
    no trimming below 256 MiB), so timed runs do not pay a page fault per fresh tensor.
    ``memory()``: every block above 1 MiB is mmap'd and returned on free, after trimming the heap,
    so a run's resident-set growth (what the engine's ``PeakMemory`` samples on CPU) is its own
    peak. With glibc's default dynamic threshold a run reuses memory the previous run freed and
    whichever mode runs second looks cheaper.
    """

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

    def __init__(self) -> None:
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            self.libc.mallopt  # noqa: B018
        except (OSError, AttributeError):
            self.libc = None

    @property
    def available(self) -> bool:
        return self.libc is not None

    def _set(self, mmap_threshold: int, trim_threshold: int) -> None:
        if self.libc is not None:
            self.libc.mallopt(self.M_MMAP_THRESHOLD, mmap_threshold)
            self.libc.mallopt(self.M_TRIM_THRESHOLD, trim_threshold)

    def timing(self) -> None:
        self._set(32 << 20, 256 << 20)

    def memory(self) -> None:
        self._set(1 << 20, 1 << 20)
        if self.libc is not None:
            self.libc.malloc_trim(0)


def top_k_masks(fraction: float):
    """A mask source keeping the top ``int(fraction * n)`` tokens (at least 1) of each image by VIP
    probability: the same count the cost model prices."""
    import torch

    from .costmodel import kept_count

    def source(_inputs, probs):
        masks = []
        for p in probs:
            k = kept_count(p.numel(), float(fraction))
            m = torch.zeros(p.numel(), dtype=torch.bool)
            m[torch.topk(p.float().nan_to_num(0.0), k).indices.cpu()] = True
            masks.append(m)
        return masks

    return source


@dataclass(frozen=True)
class Mode:
    name: str  # "baseline" or "glimpse@<fraction>"
    kept: float | None  # None for baseline


def modes_for(kept: tuple[float, ...]) -> list[Mode]:
    return [Mode("baseline", None)] + [Mode(f"glimpse@{f:g}", f) for f in kept]


def _cpu_clock(threads: int):
    """CPU seconds of the work: the main thread's own when torch runs on it alone (other
    processes' time slices and the engine's memory-sampling thread do not count), else the
    whole process's."""
    return time.thread_time if threads == 1 else time.process_time


def _run_once(engine, image, mode: Mode, decode_tokens: int, question: str, threads: int = 1) -> dict:
    """One run through :meth:`GlimpseEngine.stream`. Besides the engine's wall-clock timings it
    reads a CPU clock at the end of the vision tower (a forward hook), at the "prefill" event and
    at each token: on a shared machine CPU time is the steadier measure of the work done."""
    from .settings import GenerationSettings, PruneSettings, RunSettings

    clock = _cpu_clock(threads)
    gen = GenerationSettings(max_new_tokens=decode_tokens + 1, greedy=True)
    if mode.kept is None:
        settings, source = RunSettings("baseline", PruneSettings(), gen), None
    else:
        settings = RunSettings("glimpse", PruneSettings(threshold=0.0, max_remain_ratio=mode.kept), gen)
        source = top_k_masks(mode.kept)
    marks: dict[str, float] = {}
    token_marks: list[float] = []
    hook = engine.model.model.visual.register_forward_hook(lambda *_: marks.__setitem__("vision_end", clock()))
    res = None
    try:
        marks["start"] = clock()
        for ev in engine.stream([image], question, settings, source):
            if ev.kind == "prefill":
                marks["prefill_end"] = clock()
            elif ev.kind == "token" and ev.token_id >= 0:
                token_marks.append(clock())
            elif ev.kind == "done":
                res = ev.result
    finally:
        hook.remove()
    t, m = res.timings, res.memory
    steps = len(token_marks) - 1
    return {
        "vision_s": t.vision_s,
        "prefill_s": t.prefill_s,
        "vip_s": t.vip_s,
        "ttft_s": t.ttft_s,
        "decode_ms_per_token": 1e3 * t.decode_s / t.decode_tokens if t.decode_tokens else float("nan"),
        "cpu_vision_s": marks["vision_end"] - marks["start"],
        "cpu_prefill_s": marks["prefill_end"] - marks["vision_end"],
        "cpu_decode_ms_per_token": 1e3 * (token_marks[-1] - token_marks[0]) / steps if steps > 0 else float("nan"),
        "decode_tokens": t.decode_tokens,
        "kv_bytes_after_prefill": m.kv_bytes_after_prefill,
        "kv_tokens_after_prefill": m.kv_tokens_after_prefill,
        "kv_bytes_end": m.kv_bytes_end,
        "peak_bytes": m.peak_bytes,
        "peak_kind": m.peak_kind,
        "kept_tokens": res.kept_tokens,
        "total_tokens": res.total_tokens,
        "text_tokens": res.prompt_text_tokens,
    }


TIMED = ("vision_s", "prefill_s", "vip_s", "ttft_s", "decode_ms_per_token", "cpu_vision_s", "cpu_prefill_s",
         "cpu_decode_ms_per_token", "peak_bytes_timing_run")


def _summarise(runs: list[dict]) -> dict:
    out = {k: runs[0][k] for k in ("kept_tokens", "total_tokens", "text_tokens", "kv_bytes_after_prefill",
                                   "kv_tokens_after_prefill", "kv_bytes_end", "decode_tokens", "peak_kind", "peak_bytes",
                                   "peak_bytes_memory_runs")}
    for k in TIMED:
        vals = [r[k] for r in runs]
        med = statistics.median(vals)
        out[k] = med
        out[k + "_all"] = [round(v, 6) if isinstance(v, float) else v for v in vals]
        out[k + "_spread"] = (max(vals) - min(vals)) / med if med else 0.0
    return out


@dataclass
class BenchConfig:
    arch: str = "mini"
    tokens: tuple[int, ...] = (1024, 2304, 4096)
    kept: tuple[float, ...] = (1.0, 0.25, 0.10, 0.05)
    repeats: int = 3
    warmup: int = 1
    memory_runs: int = 2
    decode_tokens: int = 16
    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    clock: str = "cpu"  # what the ratios and fits use: "cpu" (thread/process CPU time) or "wall"
    question: str = QUESTION
    grids: tuple[tuple[int, int], ...] = field(default=())  # explicit (h, w) merged grids; else from tokens

    def grid_list(self) -> list[tuple[int, int]]:
        from .costmodel import grid_for

        return list(self.grids) if self.grids else [grid_for(n) for n in self.tokens]


def run_bench(cfg: BenchConfig, progress=None, partial_path: Path | None = None) -> dict:
    """Measure every (grid, mode); returns the JSON-ready result (also written to ``partial_path``
    after each grid, when given)."""
    import torch

    from .loading import pick_device

    dev = pick_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    alloc = CpuAllocator() if dev.type == "cpu" else None
    if alloc:
        alloc.timing()
    grids = cfg.grid_list()
    t0 = time.perf_counter()
    engine, arch, desc = build_engine(cfg.arch, str(dev), max(h * w for h, w in grids), seed=cfg.seed)
    improc = engine.base.image_processor
    cell = int(improc.patch_size) * int(improc.merge_size)
    dtype_bytes = next(engine.model.parameters()).element_size()
    modes = modes_for(cfg.kept)
    result = {
        "schema": SCHEMA,
        "command": None,
        "config": {**asdict(cfg), "grids": [list(g) for g in grids]},
        "model": desc,
        "environment": _environment(dev, cfg.threads, bool(alloc and alloc.available)),
        "sizes": [],
    }
    for gi, grid in enumerate(grids):
        image = bench_image(grid, cell, seed=cfg.seed + gi)
        runs: dict[str, list[dict]] = {m.name: [] for m in modes}
        for _ in range(cfg.warmup):
            for m in modes:
                _run_once(engine, image, m, cfg.decode_tokens, cfg.question, cfg.threads)
        for r in range(cfg.repeats):
            order = modes[r % len(modes):] + modes[: r % len(modes)]
            for m in order:
                runs[m.name].append(_run_once(engine, image, m, cfg.decode_tokens, cfg.question, cfg.threads))
                if progress:
                    last = runs[m.name][-1]
                    progress(f"grid {grid[0]}x{grid[1]} repeat {r + 1}/{cfg.repeats} {m.name}: prefill "
                             f"{last['cpu_prefill_s'] * 1e3:.0f} ms CPU, {last['prefill_s'] * 1e3:.0f} ms wall")
        # peak memory: extra untimed runs with the allocator set so RSS growth is each run's own; a
        # sampled reading can only miss a peak, so the largest of ``memory_runs`` readings counts
        peaks: dict[str, list[int]] = {m.name: [] for m in modes}
        for r in range(cfg.memory_runs):
            for m in (modes if r % 2 == 0 else modes[::-1]):
                if alloc:
                    alloc.memory()
                peaks[m.name].append(_run_once(engine, image, m, cfg.decode_tokens, cfg.question, cfg.threads)["peak_bytes"])
        if alloc:
            alloc.timing()
        for m in modes:
            for run in runs[m.name]:
                run["peak_bytes_timing_run"] = run["peak_bytes"]
                run["peak_bytes"] = max(peaks[m.name], default=run["peak_bytes"])
                run["peak_bytes_memory_runs"] = peaks[m.name]
        size = _size_entry(arch, grid, modes, runs, dtype_bytes, cfg.clock)
        result["sizes"].append(size)
        result["elapsed_s"] = time.perf_counter() - t0
        if partial_path is not None:
            write_json(_finish(result, arch, cfg), partial_path)
    return _finish(result, arch, cfg)


def _environment(dev, threads: int, allocator_control: bool) -> dict:
    import torch
    import transformers

    return {
        "device": str(dev),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "machine": platform.machine(),
        "cpu_allocator_control": allocator_control,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _size_entry(arch, grid, modes, runs, dtype_bytes, clock: str = "cpu") -> dict:
    from . import costmodel as cm

    n = grid[0] * grid[1]
    entry = {"n_visual": n, "grid": list(grid), "modes": []}
    base = None
    for m in modes:
        s = _summarise(runs[m.name])
        if s["total_tokens"] != n:  # the processor resized the picture: the cost model would price the wrong grid
            raise RuntimeError(f"asked for a {grid[0]}x{grid[1]} grid, the model saw {s['total_tokens']} visual tokens")
        text = s["text_tokens"]
        mode = "baseline" if m.kept is None else "glimpse"
        pc = cm.prefill_cost(arch, grid, text, mode, 1.0 if m.kept is None else m.kept, dtype_bytes)
        step = cm.decode_step_cost(arch, pc.kv_tokens, dtype_bytes)
        s.update(
            mode=m.name,
            kept_fraction_requested=m.kept if m.kept is not None else 1.0,
            kept_fraction=s["kept_tokens"] / s["total_tokens"],
            analytic={
                "prefill_flops": pc.llm.flops,
                "prefill_bytes": pc.llm.bytes,
                "overhead_flops": pc.overhead.flops,
                "vision_flops": pc.vision.flops,
                "kv_bytes": pc.kv_bytes,
                "kv_tokens": pc.kv_tokens,
                "decode_step_flops": step.flops,
                "decode_step_bytes": step.bytes,
            },
        )
        entry["modes"].append(s)
        if m.kept is None:
            base = s
    entry["text_tokens"] = base["text_tokens"]
    entry["comparisons"] = [_compare(base, s, clock) for s in entry["modes"] if s is not base]
    return entry


def _compare(base: dict, g: dict, clock: str = "cpu") -> dict:
    """Glimpse mode ``g`` against the baseline, times on ``clock`` ("cpu" or "wall")."""
    a, ab = g["analytic"], base["analytic"]
    pre, dec = ("cpu_prefill_s", "cpu_decode_ms_per_token") if clock == "cpu" else ("prefill_s", "decode_ms_per_token")
    measured = g[pre] / base[pre]
    analytic = a["prefill_flops"] / ab["prefill_flops"]
    kv_ratio = g["kv_bytes_after_prefill"] / base["kv_bytes_after_prefill"]
    return {
        "mode": g["mode"],
        "kept_fraction": g["kept_fraction"],
        "clock": clock,
        "prefill_ratio_measured": measured,
        "prefill_ratio_wall": g["prefill_s"] / base["prefill_s"],
        "prefill_ratio_cpu": g["cpu_prefill_s"] / base["cpu_prefill_s"],
        "prefill_ratio_analytic_flops": analytic,
        "prefill_ratio_analytic_bytes": a["prefill_bytes"] / ab["prefill_bytes"],
        "prefill_ratio_rel_error": measured / analytic - 1.0,
        "prefill_overhead_measured": measured - 1.0 if g["kept_tokens"] == g["total_tokens"] else None,
        "vip_share_of_baseline_prefill": g["vip_s"] / base["prefill_s"],
        "overhead_share_analytic": a["overhead_flops"] / ab["prefill_flops"],
        "ttft_ratio_measured": g["ttft_s"] / base["ttft_s"],
        "kv_ratio_measured": kv_ratio,
        "kv_image_ratio_measured": (g["kv_tokens_after_prefill"] - g["text_tokens"]) / (base["kv_tokens_after_prefill"] - base["text_tokens"]),
        "kv_bytes_equal_analytic": g["kv_bytes_after_prefill"] == a["kv_bytes"] and base["kv_bytes_after_prefill"] == ab["kv_bytes"],
        "decode_ratio_measured": g[dec] / base[dec],
        "decode_ratio_analytic_bytes": a["decode_step_bytes"] / ab["decode_step_bytes"],
        "decode_ratio_analytic_flops": a["decode_step_flops"] / ab["decode_step_flops"],
        "peak_ratio_measured": g["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] else None,
    }


def fit_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x (y ~ x^slope); None with fewer than two points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _finish(result: dict, arch, cfg: BenchConfig) -> dict:
    from . import costmodel as cm

    sizes = result["sizes"]
    names = [m["mode"] for m in sizes[0]["modes"]] if sizes else []
    xs = [s["n_visual"] for s in sizes]
    pre = "cpu_prefill_s" if cfg.clock == "cpu" else "prefill_s"
    scaling = {"clock": cfg.clock}
    for i, name in enumerate(names):
        scaling[name] = {
            "prefill_exponent_measured": fit_exponent(xs, [s["modes"][i][pre] for s in sizes]),
            "prefill_exponent_wall": fit_exponent(xs, [s["modes"][i]["prefill_s"] for s in sizes]),
            "prefill_exponent_analytic_flops": fit_exponent(xs, [s["modes"][i]["analytic"]["prefill_flops"] for s in sizes]),
        }
    result["scaling"] = scaling
    result["targets"] = _targets(sizes)
    texts = sizes[0]["text_tokens"] if sizes else 40
    result["analytic_releases"] = {
        key: {
            "name": a.name,
            "reduce_layer": a.glimpse.reduce_layer,
            "layers": a.text.layers,
            "params": cm.param_count(a),
            "dtype_bytes": 2,
            "settings": [cm.ratios(a, n, texts, k) for n in sorted(set(xs) | {1024}) for k in (cm.PUBLISHED_7B_KEPT, *cfg.kept)],
        }
        for key, a in cm.PRESETS.items()
    }
    return result


def _targets(sizes: list[dict]) -> dict:
    comps = [c for s in sizes for c in s["comparisons"]]
    ratio_rows = [c for c in comps if round(c["kept_fraction"], 3) in (0.05, 0.1, 0.25)]
    overhead = [c["prefill_overhead_measured"] for c in comps if c["prefill_overhead_measured"] is not None]
    peaks = [c["peak_ratio_measured"] for c in comps if c["peak_ratio_measured"] is not None]
    worst = max((abs(c["prefill_ratio_rel_error"]) for c in ratio_rows), default=None)
    return {
        "prefill_ratio_within_10pct": {
            "worst_abs_rel_error": worst,
            "holds": None if worst is None else worst <= 0.10,
        },
        "overhead_at_most_3pct": {
            "max_measured": max(overhead, default=None),
            "max_vip_share": max((c["vip_share_of_baseline_prefill"] for c in comps if c["prefill_overhead_measured"] is not None), default=None),
            "holds": None if not overhead else max(overhead) <= 0.03,
        },
        "kv_bytes_equal_analytic": {"holds": all(c["kv_bytes_equal_analytic"] for c in comps) if comps else None},
        "peak_glimpse_at_most_baseline": {
            "max_ratio": max(peaks, default=None),
            "holds": None if not peaks else max(peaks) <= 1.0,
        },
    }


def _floats(s: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from e
    if not vals or any(not 0.0 < v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError("kept fractions must be in (0, 1]")
    return vals


def _ints(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from e
    if not vals or any(v < 4 for v in vals):
        raise argparse.ArgumentTypeError("visual token counts must be >= 4")
    return vals


def _grids(s: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in s.split(","):
        try:
            h, w = (int(x) for x in part.lower().split("x"))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected HxW merged-token grids like 32x32, got {part!r}") from e
        if h < 2 or w < 2:
            raise argparse.ArgumentTypeError("grid sides must be >= 2")
        out.append((h, w))
    return tuple(out)


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=ARCHS, default="mini", help="tiny (seconds), mini (7B-shaped, CPU-sized) or toy (assets/toy)")
    p.add_argument("--tokens", type=_ints, default=(1024, 2304, 4096), help="visual token counts, comma-separated (most square grid each)")
    p.add_argument("--grids", type=_grids, default=(), help="merged-token grids HxW instead of --tokens (resolution = grid x 28 px)")
    p.add_argument("--kept", type=_floats, default=(1.0, 0.25, 0.10, 0.05), help="forced kept fractions; 1 measures the glimpse overhead")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--memory-runs", type=int, default=2, help="untimed runs per mode for peak memory (largest reading kept)")
    p.add_argument("--decode-tokens", type=int, default=16, help="decode steps timed after the first token")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the CPU clock is the main thread's own)")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="clock for ratios and fits (both are recorded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench", help="output folder")
    p.add_argument("--name", default=None, help="file stem (default bench-<arch>)")
    p.add_argument("--html-js", choices=["cdn", "inline"], default="cdn", help="plotly.js in the HTML: cdn link (small file) or inline")
    p.add_argument("--no-png", action="store_true", help="skip the PNG even when kaleido is installed")
    p.add_argument("--from-json", default=None, help="redraw the figure and table of an earlier result; measure nothing")
    p.add_argument("--table", action="store_true", help="print the markdown table")


def _bench(a: argparse.Namespace) -> int:
    import sys

    if a.repeats < 1 or a.warmup < 0 or a.memory_runs < 0 or a.decode_tokens < 1 or a.threads < 1:
        raise InputError("--repeats, --decode-tokens and --threads must be >= 1, --warmup and --memory-runs >= 0")
    if a.from_json:
        try:
            result = json.loads(Path(a.from_json).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {a.from_json}: {e}") from e
        if result.get("schema") != SCHEMA:
            raise InputError(f"{a.from_json} is not a {SCHEMA} result")
        paths = write_outputs(result, Path(a.out), a.name or Path(a.from_json).stem, a.html_js, png=not a.no_png)
        print(json.dumps({"files": paths}, indent=1))
        if a.table:
            print(markdown_table(result))
        return 0
    cfg = BenchConfig(arch=a.arch, tokens=a.tokens, kept=a.kept, repeats=a.repeats, warmup=a.warmup, memory_runs=a.memory_runs,
                      decode_tokens=a.decode_tokens, device=a.device, threads=a.threads, seed=a.seed, clock=a.clock, grids=a.grids)
    out = Path(a.out)
    stem = a.name or f"bench-{a.arch}"
    result = run_bench(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True), partial_path=out / f"{stem}.partial.json")
    result["command"] = "python -m glimpse_demo bench " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:])
    paths = write_outputs(result, out, stem, a.html_js, png=not a.no_png)
    partial = out / f"{stem}.partial.json"
    if partial.exists():
        partial.unlink()
    print(json.dumps({"files": paths, "targets": result["targets"], "scaling": result["scaling"]}, indent=1, default=json_default))
    if a.table:
        print(markdown_table(result))
    return 0


command("bench", "benchmark baseline vs GlimpsePrune (prefill, decode, KV, peak memory) beside the analytic cost model")((_bench_args, _bench))
