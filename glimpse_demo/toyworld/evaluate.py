"""Held-out evaluation of the toy model through the engine: accuracy per question type in baseline
and glimpse mode, fraction of visual tokens pruned, VIP recall of the target cells, latency."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import torch

from ..engine import GlimpseEngine
from ..settings import GenerationSettings, RunSettings
from ..training import box_cells
from .world import QTYPES, Sample, heldout


def evaluate(engine: GlimpseEngine, samples: list[Sample], max_new_tokens: int = 3) -> dict:
    gen = GenerationSettings(max_new_tokens=max_new_tokens)
    rows = []
    for s in samples:
        img = s.scene.render()
        q = s.question
        row = {"qtype": q.qtype, "answer": q.answer, "objects": len(s.scene.objects)}
        for mode in ("baseline", "glimpse"):
            r = engine.run([img], q.text, RunSettings(mode, generation=gen))
            row[f"{mode}_pred"] = r.answer.strip()
            row[f"{mode}_ok"] = r.answer.strip() == q.answer
            row[f"{mode}_s"] = r.timings.total_s
            if mode == "glimpse":
                im = r.images[0]
                mask = im.keep_mask.flatten()
                row["kept"] = float(mask.float().mean())
                target = box_cells([s.scene.objects[i].box for i in q.targets], im.grid)
                row["recall"] = float(mask[target].float().mean()) if bool(target.any()) else math.nan
                row["cells"] = mask.numel()
        rows.append(row)
    return summarize(rows)


def _mean(xs):
    xs = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def summarize(rows: list[dict]) -> dict:
    by = defaultdict(list)
    for r in rows:
        by[r["qtype"]].append(r)
    by["all"] = rows

    def stats(rs):
        return {
            "n": len(rs),
            "baseline_acc": _mean([float(r["baseline_ok"]) for r in rs]),
            "glimpse_acc": _mean([float(r["glimpse_ok"]) for r in rs]),
            "baseline_acc_1obj": _mean([float(r["baseline_ok"]) for r in rs if r["objects"] == 1]),
            "baseline_acc_multi": _mean([float(r["baseline_ok"]) for r in rs if r["objects"] > 1]),
            "pruned": 1.0 - _mean([r["kept"] for r in rs]),
            "vip_recall": _mean([r["recall"] for r in rs]),
            "baseline_ms": 1000 * statistics.median([r["baseline_s"] for r in rs]),
            "glimpse_ms": 1000 * statistics.median([r["glimpse_s"] for r in rs]),
        }

    return {k: stats(v) for k, v in sorted(by.items(), key=lambda kv: (kv[0] == "all", kv[0]))}


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def table(summary: dict) -> str:
    head = ("| type | n | baseline acc | glimpse acc | baseline acc, 1-object scenes | baseline acc, 2-5 objects "
            "| tokens pruned | VIP recall | baseline ms | glimpse ms |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for k, s in summary.items():
        cells = [s["baseline_acc"], s["glimpse_acc"], s["baseline_acc_1obj"], s["baseline_acc_multi"], s["pruned"], s["vip_recall"]]
        lines.append(f"| {k} | {s['n']} | " + " | ".join(_pct(c) for c in cells) + f" | {s['baseline_ms']:.0f} | {s['glimpse_ms']:.0f} |")
    return "\n".join(lines)


def run_heldout(base: str, glimpse: str, n: int, qtypes=QTYPES, n_objects=(1, 5)) -> dict:
    torch.set_num_threads(1)
    engine = GlimpseEngine.from_pretrained(base, glimpse, device="cpu", dtype="float32")
    return evaluate(engine, heldout(n, qtypes, n_objects))


def oracle_k_sweep(base_dir: str, samples: list[Sample], ks: tuple[int, ...], spec=None) -> dict:
    """Accuracy when the target cells (the VIP's training target) are kept and everything else is
    pruned after layer K, for each K: how late the frozen base still tolerates pruning, which is
    what the choice of ``reduce_layer`` trades against speed. The VIP is bypassed (mask source)."""
    from dataclasses import replace

    from ..loading import load_base
    from ..tiny import tiny_glimpse_config
    from ..vip import GlimpseModules
    from .model import TOY_SPEC

    spec = spec or TOY_SPEC
    base = load_base(base_dir, device="cpu", dtype="float32")
    gen = GenerationSettings(max_new_tokens=3)
    out = {}
    for k in ks:
        gcfg = replace(tiny_glimpse_config(spec, base.model.config), reduce_layer=k, selected_layers=[k])
        modules = GlimpseModules(gcfg)
        modules.init_random(seed=0)
        engine = GlimpseEngine(base, modules)
        ok, kept = [], []
        for s in samples:
            boxes = [s.scene.objects[i].box for i in s.question.targets]

            def oracle(inputs, probs, boxes=boxes):
                masks = [box_cells(boxes, g) for g in inputs.grids]
                return [m if m.any() else torch.zeros_like(m).index_fill_(0, torch.tensor([0]), True) for m in masks]

            r = engine.run([s.scene.render()], s.question.text, RunSettings("glimpse", generation=gen), mask_source=oracle)
            ok.append(r.answer.strip() == s.question.answer)
            kept.append(float(r.images[0].keep_mask.float().mean()))
        out[k] = {"acc": sum(ok) / len(ok), "kept": sum(kept) / len(kept)}
    return out
