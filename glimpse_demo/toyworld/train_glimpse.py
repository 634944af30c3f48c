"""Train the toy model's GlimpsePrune modules with the general trainer (:mod:`glimpse_demo.training`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..checkpoints import save_modules
from ..engine import GlimpseEngine
from ..loading import load_base
from ..tiny import tiny_glimpse_config
from dataclasses import replace

from ..training import Example, GlimpseTrainConfig, calibrate_threshold, make_optimizer, train_modules, trainable
from ..vip import GlimpseModules
from .model import TOY_SPEC
from .world import QTYPES, Sample, sample

# Module-training seeds: their own range, away from the base's training seeds and the held-out split;
# the threshold is calibrated on yet another range.
GLIMPSE_SEED_BASE = 5_000_000
CALIBRATION_SEED_BASE = 7_000_000


def to_example(s: Sample) -> Example:
    q = s.question
    return Example(s.scene.render(), q.text, q.answer, tuple(s.scene.objects[i].box for i in q.targets))


def train_glimpse(base_dir: str, out_dir: str, run_dir: str, cfg: GlimpseTrainConfig, spec=TOY_SPEC,
                  max_minutes: float = 20.0, threads: int = 1, calibrate: int = 150, recall: float = 0.95) -> dict:
    torch.set_num_threads(threads)
    base = load_base(base_dir, device="cpu", dtype="float32")
    gcfg = tiny_glimpse_config(spec, base.model.config)
    modules = GlimpseModules(gcfg)
    modules.init_random(seed=cfg.seed)
    engine = GlimpseEngine(base, modules)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "modules.pt"
    params = trainable(engine)
    opt = make_optimizer(params, cfg)
    start, curve = 0, []
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        modules.load_state_dict(state["modules"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        curve = json.loads((run / "curve.json").read_text())
    t0 = time.time()
    prev = curve[-1]["minutes"] if curve else 0.0

    def batches(step: int) -> list[Example]:
        return [to_example(sample(GLIMPSE_SEED_BASE + step * cfg.batch + i, QTYPES, (1, 5))) for i in range(cfg.batch)]

    def on_step(step: int, stats: dict) -> None:
        row = {"step": step, "minutes": round(prev + (time.time() - t0) / 60, 2), **{k: round(v, 4) for k, v in stats.items()}}
        curve.append(row)
        print(json.dumps(row), flush=True)
        if step % 20 == 0 or step == cfg.steps:
            torch.save({"modules": modules.state_dict(), "opt": opt.state_dict(), "step": step}, run / "modules.pt.tmp")
            (run / "modules.pt.tmp").replace(ckpt)
            (run / "curve.json").write_text(json.dumps(curve))

    train_modules(engine, batches, cfg, start_step=start, opt=opt, on_step=on_step, max_seconds=max_minutes * 60 - prev * 60)
    (run / "curve.json").write_text(json.dumps(curve))
    info = {"steps": curve[-1]["step"] if curve else 0, "minutes": curve[-1]["minutes"] if curve else 0.0}
    if calibrate:
        engine.modules.eval().requires_grad_(False)
        cal = calibrate_threshold(engine, [to_example(sample(CALIBRATION_SEED_BASE + i)) for i in range(calibrate)], recall)
        modules.cfg = replace(modules.cfg, reduce_threshold=cal["chosen"]["threshold"])
        engine.gp = modules.cfg
        (run / "calibration.json").write_text(json.dumps(cal, indent=1))
        info["calibration"] = cal["chosen"]
    save_modules(out_dir, modules, base.model.config, fmt="pt")
    return info
