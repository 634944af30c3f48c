"""The toy base model: a word-level tokenizer with Qwen's special tokens, and the model's shape.

The model is the real transformers ``Qwen2_5_VLForConditionalGeneration`` built from a small
config (see :mod:`glimpse_demo.tiny`); only its size is chosen here.
"""

from __future__ import annotations

from dataclasses import replace

from ..prompting import QWEN_CHAT_TEMPLATE
from ..tiny import SPECIAL_TOKENS, TinySpec
from .world import COLOR_NAMES, NUMBERS, QUADRANTS, SHAPES

UNK = "[unk]"

# Every word the world's prompts and answers use, plus the chat template's own words.
WORDS = sorted(
    set(SHAPES) | set(COLOR_NAMES) | set(QUADRANTS) | set(NUMBERS)
    | {"yes", "no", "what", "color", "is", "the", "shape", "object", "where", "there", "a", "how", "many", "are",
       "?", ".", ",", "system", "user", "assistant", "you", "helpful"}
)

# Sized so that base training fits about an hour on two CPU cores and a query takes a few tens of ms.
TOY_SPEC = TinySpec(
    hidden=128,
    layers=4,
    heads=4,
    kv_heads=2,
    intermediate=384,
    vision_hidden=96,
    vision_depth=4,
    vision_heads=4,
    patch_size=14,
    merge_size=2,
    max_pixels=280 * 280,
    reduce_layer=2,
    selected_layers=(1, 2),
    selected_visual_layers=(3, 1),
    fuse_size=64,
    cond_size=64,
    fuse_heads=4,
    seed=0,
)


def build_word_tokenizer(words: list[str] = WORDS, chat_template: str = QWEN_CHAT_TEMPLATE):
    """A lowercase word-level tokenizer: Qwen's special tokens, then ``words``, then ``[unk]``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in list(words) + [UNK]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    # words (hyphens kept, so "top-left" is one token) and single punctuation marks
    words_and_marks = pre_tokenizers.Split(Regex(r"[\w-]+|[^\w\s]"), behavior="isolated", invert=False)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), words_and_marks])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=UNK,
        chat_template=chat_template,
    )


def toy_spec(**overrides) -> TinySpec:
    return replace(TOY_SPEC, **overrides)
