"""Chat prompt + images -> model inputs, built from the tokenizer and the PIL image processor.

We expand the image placeholders and set ``mm_token_type_ids`` ourselves: without them
Qwen2.5-VL silently falls back to 1-D positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError
from .images import fit_to_budget, open_image

MAX_QUESTION_CHARS = 4000

# Qwen2.5-VL's conversation format, for tokenizers that ship without a template.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

IMAGE_PAD = "<|image_pad|>"


@dataclass
class PromptInputs:
    input_ids: torch.Tensor  # [1, S]
    mm_token_type_ids: torch.Tensor  # [1, S], 1 at image tokens
    pixel_values: torch.Tensor  # [sum(t*h*w), C*T*P*P]
    image_grid_thw: torch.Tensor  # [n_images, 3], in patches
    image_sizes: list[tuple[int, int]]  # (width, height) after the processor's resize
    merge_size: int
    patch_size: int

    @property
    def grids(self) -> list[tuple[int, int]]:
        m = self.merge_size
        return [(int(h) // m, int(w) // m) for _, h, w in self.image_grid_thw.tolist()]

    @property
    def image_token_count(self) -> int:
        return int(self.mm_token_type_ids.sum())

    @property
    def text_token_count(self) -> int:
        return self.input_ids.shape[1] - self.image_token_count


def clean_question(question: str | None, tokenizer) -> str:
    if question is None or not question.strip():
        raise InputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}")
    # special tokens typed by a user must not become control tokens (an extra <|image_pad|> breaks the prompt)
    for tok in sorted(set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {})), key=len, reverse=True):
        if tok and tok.startswith("<|"):
            question = question.replace(tok, "")
    question = question.strip()
    if not question:
        raise InputError("the question is empty once special tokens are removed")
    return question


def pixel_budget(image_processor) -> tuple[int, int]:
    """(smallest side, most pixels) an image is fitted to before the processor sees it."""
    size = image_processor.size
    get = size.get if hasattr(size, "get") else lambda k: getattr(size, k, None)
    return int(image_processor.patch_size) * int(image_processor.merge_size), int(get("longest_edge") or get("max_pixels"))


def build_inputs(tokenizer, image_processor, chat_template: str, images: list, question: str) -> PromptInputs:
    if not images:
        raise InputError("no image was given")
    question = clean_question(question, tokenizer)
    patch = int(image_processor.patch_size)
    merge = int(image_processor.merge_size)
    min_side, max_pixels = pixel_budget(image_processor)
    pil = [fit_to_budget(open_image(im), min_side, max_pixels) for im in images]
    vis = image_processor(images=pil, return_tensors="pt")
    grid_thw = vis["image_grid_thw"]
    messages = [{"role": "user", "content": [{"type": "image"} for _ in pil] + [{"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False, add_generation_prompt=True)
    if text.count(IMAGE_PAD) != len(pil):
        raise InputError("the chat template did not place one image placeholder per image")
    parts = text.split(IMAGE_PAD)
    counts = (grid_thw.prod(-1) // (merge * merge)).tolist()
    text = parts[0] + "".join(IMAGE_PAD * int(n) + p for n, p in zip(counts, parts[1:]))
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    mm = (ids == image_id).long()
    if int(mm.sum()) != sum(counts):
        raise InputError("the tokenizer split the image placeholders; is this a Qwen2.5-VL tokenizer?")
    sizes = [(int(w) * patch, int(h) * patch) for _, h, w in grid_thw.tolist()]
    return PromptInputs(ids, mm, vis["pixel_values"], grid_thw, sizes, merge, patch)
