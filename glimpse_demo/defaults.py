"""Where the built-in default model lives: the toy model shipped in assets/ when present, else a
tiny random model generated offline on first use (seeded, a few seconds)."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TOY_BASE = ASSETS / "toy" / "base"
TOY_GLIMPSE = ASSETS / "toy" / "glimpse"


def cache_dir() -> Path:
    root = os.environ.get("GLIMPSE_DEMO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "glimpse-demo")
    return Path(root)


def default_model() -> tuple[str, str, str]:
    """(base model dir, modules dir, kind) where kind is "toy" or "tiny-random"."""
    if (TOY_BASE / "config.json").is_file() and (TOY_GLIMPSE / "config.json").is_file():
        return str(TOY_BASE), str(TOY_GLIMPSE), "toy"
    out = cache_dir() / "tiny"
    if not ((out / "base" / "config.json").is_file() and (out / "glimpse" / "config.json").is_file()):
        from .tiny import make_tiny

        make_tiny(out)
    return str(out / "base"), str(out / "glimpse"), "tiny-random"
