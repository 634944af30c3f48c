"""Session fixtures: tiny random Qwen2.5-VL models built in code (CPU, float32, seeded)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny model written by make-tiny: ``tiny_dir / "base"`` and ``tiny_dir / "glimpse"``."""
    from glimpse_demo.tiny import make_tiny

    out = tmp_path_factory.mktemp("tiny")
    make_tiny(out)
    return out


@pytest.fixture(scope="session")
def engine(tiny_dir):
    from glimpse_demo.engine import GlimpseEngine

    return GlimpseEngine.from_pretrained(str(tiny_dir / "base"), str(tiny_dir / "glimpse"), device="cpu")


@pytest.fixture(scope="session")
def scene():
    from glimpse_demo.tiny import calibration_image

    return calibration_image((500, 380), seed=7)
