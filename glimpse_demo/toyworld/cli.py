"""``python -m glimpse_demo.toyworld train-base | export-base | train-glimpse | evaluate``.

The defaults reproduce the shipped model in assets/toy/ from seed 0 (runs resume from their folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

TOY_BASE, TOY_GLIMPSE = "assets/toy/base", "assets/toy/glimpse"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m glimpse_demo.toyworld", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("train-base", help="train the toy Qwen2.5-VL from scratch (resumes from --run)")
    b.add_argument("--run", default="tmp/toy-base")
    b.add_argument("--steps", type=int, default=2400)
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--minutes", type=float, default=120.0, help="stop (resumably) after this much training time")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--export", default=TOY_BASE, help="where to write the from_pretrained folder ('' = don't)")
    e = sub.add_parser("export-base", help="write a run's latest checkpoint as a from_pretrained folder")
    e.add_argument("--run", default="tmp/toy-base")
    e.add_argument("--out", default=TOY_BASE)
    g = sub.add_parser("train-glimpse", help="train GlimpsePrune modules for the toy base (base frozen)")
    g.add_argument("--base", default=TOY_BASE)
    g.add_argument("--out", default=TOY_GLIMPSE)
    g.add_argument("--run", default="tmp/toy-glimpse")
    g.add_argument("--steps", type=int, default=1500)
    g.add_argument("--batch", type=int, default=8)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--minutes", type=float, default=30.0, help="stop early after this much training time")
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("evaluate", help="held-out accuracy, pruning, VIP recall and latency, per question type")
    v.add_argument("--base", default=TOY_BASE)
    v.add_argument("--glimpse", default=TOY_GLIMPSE)
    v.add_argument("-n", type=int, default=500)
    v.add_argument("--json", default="", help="also write the summary here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.cmd == "train-base":
        from .train_base import BaseTrainConfig, export_base, train_base

        cfg = BaseTrainConfig(out=args.run, steps=args.steps, batch=args.batch, max_minutes=args.minutes,
                              threads=args.threads, seed=args.seed)
        run = train_base(cfg)
        if args.export:
            export_base(run, args.export)
    elif args.cmd == "export-base":
        from .train_base import export_base

        print(export_base(args.run, args.out))
    elif args.cmd == "train-glimpse":
        from ..training import GlimpseTrainConfig
        from .train_glimpse import train_glimpse

        cfg = GlimpseTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=max(1, args.steps // 15), seed=args.seed)
        print(json.dumps(train_glimpse(args.base, args.out, args.run, cfg, max_minutes=args.minutes, threads=args.threads)))
    elif args.cmd == "evaluate":
        from .evaluate import run_heldout, table

        summary = run_heldout(args.base, args.glimpse, args.n)
        print(table(summary))
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0
