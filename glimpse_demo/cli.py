"""Command line: ``python -m glimpse_demo {infer,make-tiny,...}``.

User mistakes print one line to stderr and exit 2; results go to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from .errors import GlimpseDemoError

# name -> (add_arguments, run); other modules register subcommands here
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str):
    def register(fns):
        add, run = fns
        COMMANDS[name] = (add, run, help)
        return fns

    return register


def _infer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-model", required=False, help="Qwen2.5-VL hub id or local folder (default: built-in model)")
    p.add_argument("--glimpse-modules", required=False, help="GlimpsePrune modules hub id or local folder")
    p.add_argument("--image", action="append", required=True, help="image path; repeat for several images")
    p.add_argument("--question", required=True)
    p.add_argument("--mode", choices=["glimpse", "baseline"], default="glimpse")
    p.add_argument("--threshold", type=float, default=None, help="keep tokens with probability > this (default: modules' config, 0.5)")
    p.add_argument("--max-remain-ratio", type=float, default=None)
    p.add_argument("--min-remain-num", type=int, default=None)
    p.add_argument("--anchors", default=None, help="comma-separated corners always kept: tl,tr,bl,br")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--greedy", action="store_true", help="greedy decoding (default unless --temperature is given)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--load-in-4bit", action="store_true")
    p.add_argument("--load-in-8bit", action="store_true")
    p.add_argument("--attn-implementation", default=None, help="sdpa (default), eager or flash_attention_2")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save-overlay", default=None, help="write the kept-token overlay of the first image to this PNG")


def settings_from_args(a: argparse.Namespace):
    sampling = a.temperature is not None and not a.greedy
    anchors = tuple(x for x in a.anchors.split(",") if x) if a.anchors is not None else None
    try:
        return _settings(a, sampling, anchors)
    except ValueError as e:
        raise GlimpseDemoError(str(e)) from e


def _settings(a, sampling, anchors):
    from .settings import GenerationSettings, PruneSettings, RunSettings

    return RunSettings(
        mode=a.mode,
        prune=PruneSettings(a.threshold, a.max_remain_ratio, a.min_remain_num, anchors),
        generation=GenerationSettings(
            max_new_tokens=a.max_new_tokens,
            greedy=not sampling,
            temperature=a.temperature if sampling else 1.0,
            top_p=a.top_p,
            seed=a.seed,
        ),
    )


def _infer(a: argparse.Namespace) -> int:
    from .engine import GlimpseEngine
    from .images import open_image

    settings = settings_from_args(a)  # bad settings fail before any loading
    base, modules = a.base_model, a.glimpse_modules
    if not base:
        from .defaults import default_model

        base, default_modules, _ = default_model()
        modules = modules or default_modules
    if a.mode == "glimpse" and not modules:
        raise GlimpseDemoError("--mode glimpse needs --glimpse-modules")
    images = [open_image(p) for p in a.image]
    engine = GlimpseEngine.from_pretrained(
        base, modules, device=a.device, dtype=a.dtype, load_in_4bit=a.load_in_4bit,
        load_in_8bit=a.load_in_8bit, attn_implementation=a.attn_implementation,
    )
    result = engine.run(images, a.question, settings)
    if a.save_overlay:
        from .viz import kept_grid_overlay

        kept_grid_overlay(images[0], result.images[0]).save(a.save_overlay)
    if a.json:
        print(json.dumps(result.to_dict()))
    else:
        print(summary(result))
    return 0


def summary(r) -> str:
    t, m = r.timings, r.memory
    lines = [
        f"answer: {r.answer}",
        f"mode: {r.mode}   visual tokens kept: {r.kept_tokens}/{r.total_tokens} ({100 * r.kept_fraction:.1f}%)",
        f"vision {t.vision_s * 1e3:.1f} ms | prefill {t.prefill_s * 1e3:.1f} ms | first token {t.ttft_s * 1e3:.1f} ms | "
        f"decode {t.decode_tokens_per_s:.1f} tok/s | total {t.total_s * 1e3:.1f} ms",
        f"KV cache {m.kv_bytes_after_prefill / 2**20:.3f} MiB after prefill, {m.kv_bytes_end / 2**20:.3f} MiB at end | "
        f"peak {m.peak_bytes / 2**20:.1f} MiB ({m.peak_kind})",
    ]
    return "\n".join(lines)


def _make_tiny_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir")
    p.add_argument("--patch-size", type=int, default=14)
    p.add_argument("--merge-size", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["pt", "safetensors"], default="pt")


def _make_tiny(a: argparse.Namespace) -> int:
    from .tiny import make_tiny, tiny_spec

    info = make_tiny(a.out_dir, tiny_spec(patch_size=a.patch_size, merge_size=a.merge_size, seed=a.seed), fmt=a.format)
    print(json.dumps(info, indent=2, default=list))
    return 0


command("infer", "answer a question about image(s) in glimpse or baseline mode")((_infer_args, _infer))
command("make-tiny", "write a tiny random Qwen2.5-VL + tokenizer + processor + GlimpsePrune modules")((_make_tiny_args, _make_tiny))


def _load_plugins() -> None:
    """Subcommands defined in other modules register themselves on import."""
    import importlib

    for mod in ("glimpse_demo.bench", "glimpse_demo.toyworld.cli"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and not mod.startswith(e.name):
                raise


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _load_plugins()
    parser = argparse.ArgumentParser(prog="python -m glimpse_demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add, _run, help_) in COMMANDS.items():
        add(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except GlimpseDemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
