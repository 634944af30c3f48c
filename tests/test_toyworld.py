"""The toy world: a deterministic generator, a word-level tokenizer, and the shipped toy model."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse_demo.defaults import TOY_BASE, TOY_GLIMPSE
from glimpse_demo.toyworld.world import HELDOUT_BASE, QTYPES, render, sample


def test_generator_is_deterministic():
    a, b = sample(123), sample(123)
    assert a.scene == b.scene and a.question == b.question
    img_a, lab_a = render(a.scene)
    img_b, lab_b = render(b.scene)
    assert np.array_equal(np.asarray(img_a), np.asarray(img_b)) and np.array_equal(lab_a, lab_b)
    assert sample(124).scene != a.scene


def test_heldout_seeds_are_far_from_training_seeds():
    from glimpse_demo.toyworld.train_glimpse import GLIMPSE_SEED_BASE

    assert GLIMPSE_SEED_BASE < HELDOUT_BASE
    assert GLIMPSE_SEED_BASE > 16 * 100_000  # the base trainer's seeds: batch * steps stays below this


@pytest.mark.parametrize("qtype", QTYPES)
def test_questions_are_consistent_with_their_scene(qtype):
    for seed in range(30):
        s = sample(seed, (qtype,))
        q, objs = s.question, s.scene.objects
        assert q.qtype == qtype and len(q.answer.split()) == 1
        if qtype == "color":
            assert [objs[i].color for i in q.targets] == [q.answer]
            assert sum(o.shape == q.keywords[0] for o in objs) == 1
        elif qtype == "count":
            assert int(q.answer) == len(q.targets) == sum(o.shape == q.keywords[0] for o in objs)
        elif qtype == "exist":
            color, shape = q.keywords
            assert (q.answer == "yes") == any(o.shape == shape and o.color == color for o in objs)
        elif qtype == "position":
            assert objs[q.targets[0]].quadrant == q.answer


def test_masks_match_objects_and_objects_do_not_overlap():
    s = sample(7, n_objects=(4, 5))
    _, labels = render(s.scene)
    for i, o in enumerate(s.scene.objects):
        ys, xs = np.nonzero(labels == i + 1)
        assert len(xs) > 0
        w, h = s.scene.width, s.scene.height
        assert xs.min() >= int(o.box[0] * w) - 1 and xs.max() <= o.box[2] * w + 1
        assert ys.min() >= int(o.box[1] * h) - 1 and ys.max() <= o.box[3] * h + 1


def test_word_tokenizer_keeps_qwen_specials_and_one_token_answers():
    from glimpse_demo.toyworld.model import build_word_tokenizer

    tok = build_word_tokenizer()
    assert tok.convert_tokens_to_ids("<|image_pad|>") != tok.unk_token_id
    for word in ("top-left", "purple", "star", "3", "yes"):
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.decode(ids) == word
    assert tok.convert_ids_to_tokens(tok("What color is the star?", add_special_tokens=False)["input_ids"]) == [
        "what", "color", "is", "the", "star", "?"]


shipped = pytest.mark.skipif(not (TOY_BASE / "config.json").is_file(), reason="no shipped toy model in assets/toy")


@shipped
def test_default_model_is_the_toy_model():
    from glimpse_demo.defaults import default_model

    assert default_model()[2] == "toy"


@shipped
def test_shipped_model_reaches_its_targets_on_a_heldout_sample():
    import json

    from glimpse_demo.engine import GlimpseEngine
    from glimpse_demo.toyworld.evaluate import evaluate
    from glimpse_demo.toyworld.world import heldout

    targets = json.loads((TOY_BASE.parent / "targets.json").read_text())
    engine = GlimpseEngine.from_pretrained(str(TOY_BASE), str(TOY_GLIMPSE), device="cpu")
    summary = evaluate(engine, heldout(targets["n"], tuple(targets["qtypes"])))
    got = summary["all"]
    assert got["baseline_acc"] >= targets["baseline_acc"]
    assert got["glimpse_acc"] >= targets["glimpse_acc"]
    assert got["pruned"] >= targets["pruned"]
    assert got["vip_recall"] >= targets["vip_recall"]
