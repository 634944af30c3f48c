"""Load a Qwen2.5-VL base model with its tokenizer and image processor (hub id or local folder)."""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

import torch

from .checkpoints import resolve_folder
from .errors import CheckpointError, DeviceError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class BaseModel:
    model: object  # Qwen2_5_VLForConditionalGeneration
    tokenizer: object
    image_processor: object
    chat_template: str
    source: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def pick_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA device is available here")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise DeviceError(f"unknown device {device!r}") from e


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def pick_attn_implementation(requested: str | None, device: torch.device) -> str:
    if requested:
        return requested
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _read_chat_template(folder, tokenizer) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    for name in ("chat_template.jinja", "chat_template.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            text = open(path, encoding="utf-8").read()
            if name.endswith(".json"):
                import json

                text = json.loads(text)["chat_template"]
            return text
    from .prompting import QWEN_CHAT_TEMPLATE

    return QWEN_CHAT_TEMPLATE


def load_base(
    id_or_dir: str,
    device: str | None = None,
    dtype: str | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    attn_implementation: str | None = None,
) -> BaseModel:
    """from_pretrained on a hub id or a local folder; image processor on the PIL backend (no torchvision)."""
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    if (load_in_4bit or load_in_8bit) and dev.type != "cuda":
        raise DeviceError("4-bit/8-bit loading needs CUDA (bitsandbytes); this run is on " + dev.type)
    folder = resolve_folder(
        id_or_dir, ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer*", "merges.txt", "vocab.json"]
    )
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} has no config.json: not a model folder")
    kwargs: dict = {"dtype": torch_dtype, "attn_implementation": pick_attn_implementation(attn_implementation, dev)}
    if load_in_4bit or load_in_8bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise DeviceError("4-bit/8-bit loading needs the bitsandbytes package: pip install bitsandbytes")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit, bnb_4bit_compute_dtype=torch_dtype
        )
        kwargs["device_map"] = {"": dev.index or 0}
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(folder), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"could not load a Qwen2.5-VL model from {folder}: {e}") from e
    if model.config.model_type != "qwen2_5_vl":
        raise CheckpointError(f"{folder} holds a {model.config.model_type!r} model, expected qwen2_5_vl")
    if "quantization_config" not in kwargs:
        model.to(dev)
    model.eval().requires_grad_(False)
    log.info("loaded %s on %s (%s, %s)", folder, dev, torch_dtype, kwargs["attn_implementation"])
    return BaseModel(model, tokenizer, image_processor, _read_chat_template(str(folder), tokenizer), str(id_or_dir))
